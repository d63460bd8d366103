"""SQLite schema versions: a file made by an older taskgate is upgraded in place, once, even by
racing processes, and ends up equal to a new file; a newer file is refused."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.backends.sqlite.connection import SqliteConnector
from taskgate.backends.sqlite.schema import SCHEMA_VERSION
from taskgate.errors import ConfigError
from taskgate.record import Budget, ConcurrencyPlan, InvocationRecord
from taskgate.status import InvocationStatus as S

# schema.sql as taskgate 0.x shipped it with user_version 1 (before limits).
V1_SCHEMA = (Path(__file__).parent / "data" / "sqlite_schema_v1.sql").read_text()
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


def layout(path: Path) -> dict[str, object]:
    """Every table's columns and every index's columns: what the schema means, not its text."""
    conn = sqlite3.connect(path)
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
        found: dict[str, object] = {}
        for kind, name, table in objects:
            if kind == "table":
                found[name] = conn.execute(f"PRAGMA table_xinfo({name})").fetchall()
            else:
                found[name] = (table, conn.execute(f"PRAGMA index_xinfo({name})").fetchall())
        found["user_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
        return found
    finally:
        conn.close()


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
    fresh = tmp_path / "fresh.db"
    SqliteConnector(fresh).connection()
    assert layout(path) == layout(fresh)
    assert layout(path)["user_version"] == SCHEMA_VERSION


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
