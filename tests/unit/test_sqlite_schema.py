"""SQLite schema versions: a file made by an older taskgate is upgraded in place, once, even by
racing processes, and ends up equal to a new file; a newer file is refused."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite import schema
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.backends.sqlite.connection import SqliteConnector
from taskgate.backends.sqlite.schema import SCHEMA_VERSION
from taskgate.errors import BackendError, ConfigError
from taskgate.record import Budget, ConcurrencyPlan, InvocationRecord
from taskgate.status import InvocationStatus as S

# schema.sql as taskgate 0.x shipped it with user_version 1 (before limits).
V1_SCHEMA = (Path(__file__).parent / "data" / "sqlite_schema_v1.sql").read_text()
# schema.sql with user_version 2 (limits, delays; before queues and cancellation).
V2_SCHEMA = (Path(__file__).parent / "data" / "sqlite_schema_v2.sql").read_text()
# schema.sql with user_version 3 (queues, cancellation; before trace contexts and runner_info).
V3_SCHEMA = (Path(__file__).parent / "data" / "sqlite_schema_v3.sql").read_text()
# schema.sql with user_version 4 (trace contexts, runner_info; a history table, AUTOINCREMENT).
V4_SCHEMA = (Path(__file__).parent / "data" / "sqlite_schema_v4.sql").read_text()
# schema.sql with user_version 5 (history in the rows; a status index of every row).
V5_SCHEMA = (Path(__file__).parent / "data" / "sqlite_schema_v5.sql").read_text()
OPTIONS = BackendOptions("app", 60.0, 3, b"lost")


def make_v1_file(path: Path) -> None:
    """A version-1 file holding one waiting invocation, as an older taskgate left it."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.execute(
        "INSERT INTO invocations (app_id, invocation_id, task_id, arguments, running_key, "
        "running_limit, drop_when_blocked, max_retries, status, created_at) "
        "VALUES ('app', 'old-1', 'tests.old', x'00', 'tests.old', 1, 0, 0, 'registered', 1.0)"
    )
    conn.execute("INSERT INTO queue (app_id, position, invocation_id) VALUES ('app', 1, 'old-1')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def make_v2_file(path: Path) -> None:
    """A version-2 file: a running holder of key k, a waiter parked on it, two ready calls (the
    later one of priority 3), as taskgate before queues left them."""
    conn = sqlite3.connect(path)
    conn.executescript(V2_SCHEMA)
    for invocation_id, status, priority in (
        ("run-1", "running", 0),
        ("park-1", "concurrency_controlled", 0),
        ("ready-1", "registered", 0),
        ("ready-2", "registered", 3),
    ):
        running_key = "k" if invocation_id in ("run-1", "park-1") else None
        conn.execute(
            "INSERT INTO invocations (app_id, invocation_id, task_id, arguments, running_key, "
            "running_limit, drop_when_blocked, max_retries, status, attempt, runner_id, "
            "created_at, priority) VALUES ('app', ?, 'tests.old', x'00', ?, 1, 0, 0, ?, ?, ?, "
            "1.0, ?)",
            (
                invocation_id,
                running_key,
                status,
                1 if status == "running" else 0,
                "old-runner" if status == "running" else None,
                priority,
            ),
        )
    conn.execute("INSERT INTO slots VALUES ('app', 'k', 'run-1')")
    conn.execute("INSERT INTO parked VALUES ('app', 'k', 1, 'park-1')")
    conn.execute("INSERT INTO queue VALUES ('app', 1, 'ready-1')")
    conn.execute("INSERT INTO queue VALUES ('app', 2, 'ready-2')")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


def make_v3_file(path: Path) -> None:
    """A version-3 file: a finished invocation and a ready one, as taskgate before the monitor
    left them."""
    conn = sqlite3.connect(path)
    conn.executescript(V3_SCHEMA)
    for invocation_id, status in (("done-1", "success"), ("ready-1", "registered")):
        conn.execute(
            "INSERT INTO invocations (app_id, invocation_id, task_id, arguments, running_limit, "
            "drop_when_blocked, max_retries, status, created_at) "
            "VALUES ('app', ?, 'tests.old', x'00', 1, 0, 0, ?, 1.0)",
            (invocation_id, status),
        )
    conn.execute("INSERT INTO queue VALUES ('app', 0, 1, 'default', 'ready-1')")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()


# A v4 file's history rows: (invocation, status, timestamp, runner id), inserted in this order
# (the step order), the two invocations' steps interleaved. Timestamps need all 17 digits.
V4_HISTORY = [
    ("done-1", "registered", 1733562000.1234567, None),
    ("ready-1", "registered", 1733562000.2345678, None),
    ("done-1", "running", 1733562001.0000001, 'host "a", pid 1'),
    ("done-1", "success", 1733562002.9999999, 'host "a", pid 1'),
]


def make_v4_file(path: Path) -> None:
    """A version-4 file: a finished invocation with its history, a ready one, and the seq of a
    deleted newest row in sqlite_sequence, as taskgate before v5 left them."""
    conn = sqlite3.connect(path)
    conn.executescript(V4_SCHEMA)
    for seq, invocation_id, status in ((1, "done-1", "success"), (2, "ready-1", "registered")):
        conn.execute(
            "INSERT INTO invocations (seq, app_id, invocation_id, task_id, arguments, "
            "running_limit, drop_when_blocked, max_retries, status, created_at) "
            "VALUES (?, 'app', ?, 'tests.old', x'00', 1, 0, 0, ?, 1.0)",
            (seq, invocation_id, status),
        )
    conn.executemany(
        "INSERT INTO history (app_id, invocation_id, status, timestamp, runner_id) "
        "VALUES ('app', ?, ?, ?, ?)",
        V4_HISTORY,
    )
    conn.execute("INSERT INTO queue VALUES ('app', 0, 0, 1, 'default', 'ready-1')")
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()


def make_v5_file(path: Path) -> None:
    """A version-5 file: a fresh registration, one handed back (REGISTERED, attempt 1) first in
    the queue, a running one and a finished one, as taskgate before v6 left them."""
    conn = sqlite3.connect(path)
    conn.executescript(V5_SCHEMA)
    for seq, invocation_id, status, attempt in (
        (1, "done-1", "success", 1),
        (2, "back-1", "registered", 1),
        (3, "run-1", "running", 1),
        (4, "fresh-1", "registered", 0),
    ):
        conn.execute(
            "INSERT INTO invocations (seq, app_id, invocation_id, task_id, arguments, "
            "running_limit, drop_when_blocked, max_retries, status, attempt, runner_id, "
            "created_at, history) VALUES (?, 'app', ?, 'tests.old', x'00', 1, 0, 0, ?, ?, ?, "
            "1.0, '')",
            (seq, invocation_id, status, attempt, "old-runner" if status == "running" else None),
        )
    conn.execute("INSERT INTO queue VALUES ('app', 0, 0, -1, 'default', 'back-1')")
    conn.execute("INSERT INTO queue VALUES ('app', 0, 0, 1, 'default', 'fresh-1')")
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()


def layout(path: Path) -> dict[str, object]:
    """Every table's columns and every index's columns and text (a partial index's WHERE is
    part of what it means)."""
    conn = sqlite3.connect(path)
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
        found: dict[str, object] = {}
        for kind, name, table, sql in objects:
            if kind == "table":
                found[name] = conn.execute(f"PRAGMA table_xinfo({name})").fetchall()
            else:
                columns = conn.execute(f"PRAGMA index_xinfo({name})").fetchall()
                found[name] = (table, columns, sql)
        found["user_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
        return found
    finally:
        conn.close()


def assert_same_as_a_new_file(path: Path, tmp_path: Path) -> None:
    """The upgraded file at ``path`` has the layout of a file this taskgate creates."""
    fresh = tmp_path / "fresh.db"
    connector = SqliteConnector(fresh)
    connector.connection()
    connector.close()
    assert layout(path) == layout(fresh)
    assert layout(path)["user_version"] == SCHEMA_VERSION


def test_a_version_1_file_is_upgraded_and_keeps_its_work(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path)
    backend = SqliteBackend(path, OPTIONS)
    try:
        old = backend.get("old-1")
        assert old is not None and old.plan.budgets == () and old.priority == 0
        limited = InvocationRecord(
            "new-1",
            "tests.new",
            b"",
            ConcurrencyPlan(budgets=(Budget("limit a", "a", concurrency=1),)),
            priority=2,
        )
        backend.register(limited)
        claims = backend.claim("runner", 10, 30.0, 0)
        # Priorities order the ready queue (schema v3): the later call of priority 2 goes first.
        assert [c.invocation_id for c in claims] == ["new-1", "old-1"]
        stored = backend.get("new-1")
        assert stored is not None and stored.status is S.RUNNING and stored.priority == 2
        assert [u.key for u in backend.budget_usage()] == ["limit a"]
    finally:
        backend.close()
    assert_same_as_a_new_file(path, tmp_path)


def test_a_version_2_file_is_upgraded_and_keeps_its_queue_and_parked_waiters(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    make_v2_file(path)
    backend = SqliteBackend(path, OPTIONS)
    try:
        old = backend.get("ready-1")
        assert old is not None and old.queue == "default" and not old.cancel_requested
        assert backend.stats().queue_depth == {"default": 2}
        claims = backend.claim("runner", 10, 30.0, 0, queues=frozenset({"default"}))
        assert [c.invocation_id for c in claims] == ["ready-2", "ready-1"]
        assert backend.cancel("run-1").value == "requested"
        assert backend.release("run-1", "old-runner", 1)
        assert backend.get("run-1").status is S.CANCELLED  # type: ignore[union-attr]
        assert [c.invocation_id for c in backend.claim("runner", 10, 30.0, 0)] == ["park-1"]
    finally:
        backend.close()
    assert_same_as_a_new_file(path, tmp_path)


def test_a_version_3_file_is_upgraded_with_trace_contexts_and_runner_descriptions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v3.db"
    make_v3_file(path)
    backend = SqliteBackend(path, OPTIONS)
    try:
        old = backend.get("ready-1")
        assert old is not None and old.trace_context is None
        traced = InvocationRecord(
            "new-1", "tests.new", b"", ConcurrencyPlan(), trace_context="00-ab-cd-01"
        )
        backend.register(traced)
        assert backend.get("new-1").trace_context == "00-ab-cd-01"  # type: ignore[union-attr]
        page = backend.page_invocations(limit=2)
        assert [r.invocation_id for r in page.records] == ["new-1", "ready-1"]
        assert backend.page_invocations(cursor=page.next_cursor).records[0].status is S.SUCCESS
        assert backend.runner_infos() == []
        assert [c.invocation_id for c in backend.claim("runner", 10, 30.0, 0)] == [
            "ready-1",
            "new-1",
        ]
    finally:
        backend.close()
    assert_same_as_a_new_file(path, tmp_path)


def test_a_version_4_file_is_upgraded_with_its_history_in_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    make_v4_file(path)
    backend = SqliteBackend(path, OPTIONS)
    try:
        for invocation_id in ("done-1", "ready-1"):
            record = backend.get(invocation_id)
            assert record is not None
            expected = [(s, t, r) for i, s, t, r in V4_HISTORY if i == invocation_id]
            assert [(h.status.value, h.timestamp, h.runner_id) for h in record.history] == (
                expected
            )
        backend.register(InvocationRecord("new-1", "tests.new", b"", ConcurrencyPlan()))
        page = backend.page_invocations(limit=3)
        assert [r.invocation_id for r in page.records] == ["new-1", "ready-1", "done-1"]
        claims = backend.claim("runner", 10, 30.0, 0)
        assert [c.invocation_id for c in claims] == ["ready-1", "new-1"]
        ready = backend.get("ready-1")
        assert ready is not None
        assert [h.status for h in ready.history] == [S.REGISTERED, S.RUNNING]
        assert ready.history[1].runner_id == "runner"
    finally:
        backend.close()
    assert_same_as_a_new_file(path, tmp_path)
    assert "history" not in layout(path)


def test_a_version_5_file_is_upgraded_with_fresh_registrations_found_through_the_queue(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v5.db"
    make_v5_file(path)
    backend = SqliteBackend(path, OPTIONS)
    try:
        assert backend.stats().by_task_and_status == {
            ("tests.old", S.SUCCESS): 1,
            ("tests.old", S.REGISTERED): 2,
            ("tests.old", S.RUNNING): 1,
        }
        page = backend.page_invocations(status=S.REGISTERED)
        assert [r.invocation_id for r in page.records] == ["fresh-1", "back-1"]
        backend.register(InvocationRecord("new-1", "tests.old", b"", ConcurrencyPlan()))
        page = backend.page_invocations(task_id="tests.old", status=S.REGISTERED)
        assert [r.invocation_id for r in page.records] == ["new-1", "fresh-1", "back-1"]
        claims = backend.claim("runner", 10, 30.0, 0)
        assert [c.invocation_id for c in claims] == ["back-1", "fresh-1", "new-1"]
        assert backend.stats().by_task_and_status == {
            ("tests.old", S.SUCCESS): 1,
            ("tests.old", S.RUNNING): 4,
        }
    finally:
        backend.close()
    # Only the fresh registration's queue row carried its task and seq.
    assert_same_as_a_new_file(path, tmp_path)
    assert SCHEMA_VERSION == 6


def test_a_version_5_file_gets_the_task_and_seq_of_fresh_registrations_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v5.db"
    make_v5_file(path)
    connector = SqliteConnector(path)
    connector.connection()
    connector.close()
    conn = sqlite3.connect(path)
    try:
        queued = conn.execute("SELECT invocation_id, task_id, seq FROM queue ORDER BY position")
        assert queued.fetchall() == [("back-1", None, None), ("fresh-1", "tests.old", 4)]
    finally:
        conn.close()


def test_racing_openers_upgrade_a_version_1_file_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_it() -> None:
        connector = SqliteConnector(path)  # one connector each: separate SQLite connections
        start.wait()
        try:
            connector.connection()
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)
        finally:
            connector.close()

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert layout(path)["user_version"] == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(invocations)")]
    conn.close()
    assert columns.count("budgets") == 1


def test_a_file_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="newer than this taskgate understands"):
        SqliteConnector(path).connection()


def test_an_upgrade_that_fails_midway_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v4.db"
    make_v4_file(path)
    before = layout(path)
    # The rows moved into the new table and the old tables dropped, then a statement fails.
    failing = (*schema.REBUILD, "INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(schema, "REBUILD", failing)
    with pytest.raises(BackendError):
        SqliteConnector(path).connection()
    assert layout(path) == before  # one transaction: nothing of the upgrade stayed
    monkeypatch.undo()
    backend = SqliteBackend(path, OPTIONS)
    try:
        record = backend.get("done-1")
        assert record is not None
        assert len(record.history) == len([h for h in V4_HISTORY if h[0] == "done-1"])
    finally:
        backend.close()
