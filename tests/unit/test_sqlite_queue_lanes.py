"""SQLite ready queue lanes (schema v4): queue 'default' in lane 0 of the primary key, other
queues in lane 1, indexed by queue_other_lanes. Every head a claim reads is a seek, never a
scan, and a v3 file's queue keeps its order and its queues."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite import queries as q
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.backends.sqlite.cancels import QUEUE_REMOVE
from taskgate.backends.sqlite.connection import SqliteConnector
from taskgate.record import ConcurrencyPlan, InvocationRecord

OPTIONS = BackendOptions("app", 60.0, 3, b"lost")
V3_SCHEMA = (Path(__file__).parent / "data" / "sqlite_schema_v3.sql").read_text()


def plan_of(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> str:
    rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return "\n".join(row[-1] for row in rows)


def test_every_queue_read_seeks_an_index(tmp_path: Path) -> None:
    conn = SqliteConnector(tmp_path / "plans.db").connection()
    heads = {
        "every queue": (q.QUEUE_POP_HEAD, ("app",)),
        "every queue, lane 1 empty": (q.QUEUE_POP_PLAIN_HEAD, ("app",)),
        "default named": (q.pop_head_sql(("default",)), ("app", "default")),
        "other named": (q.pop_head_sql(("other",)), ("app", "other")),
        "both named": (q.pop_head_sql(("default", "other")), ("app", "default", "other")),
    }
    for name, (sql, params) in heads.items():
        plan = plan_of(conn, sql, params)
        assert "SCAN queue" not in plan, (name, plan)
    assert "queue_other_lanes" in plan_of(conn, *heads["other named"])
    assert "queue_other_lanes" not in plan_of(conn, *heads["default named"])
    pushes = (
        (q.QUEUE_PUSH_BACK, ("app", "default", 0, "id", "tests.task", 1)),
        (q.QUEUE_PUSH_FRONT, ("app", "default", 0, "id")),
    )
    for sql, params in pushes:
        plan = plan_of(conn, sql, params)
        assert "SCAN queue" not in plan, plan
    for sql in (q.QUEUE_PUSH_FRONT_ID, q.QUEUE_PUSH_BACK_WAITING):
        assert "SCAN queue" not in plan_of(conn, sql, ("app", "id"))
    assert "SCAN queue" not in plan_of(conn, QUEUE_REMOVE, ("app", "other", 0, "id"))


def test_a_plain_call_writes_no_index_entry_beyond_the_key(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "plain.db", OPTIONS)
    try:
        backend.register(InvocationRecord("plain-1", "tests.t", b"", ConcurrencyPlan()))
        backend.register(
            InvocationRecord("other-1", "tests.t", b"", ConcurrencyPlan(), queue="other")
        )
    finally:
        backend.close()
    conn = sqlite3.connect(tmp_path / "plain.db")
    # The partial index holds the lane-1 row only.
    indexed = conn.execute(
        "SELECT invocation_id FROM queue INDEXED BY queue_other_lanes WHERE app_id = 'app' "
        "AND lane = 1 AND queue = 'other'"
    ).fetchall()
    assert indexed == [("other-1",)]
    assert conn.execute("SELECT invocation_id, lane FROM queue ORDER BY lane").fetchall() == [
        ("plain-1", 0),
        ("other-1", 1),
    ]
    conn.close()


def test_a_version_3_queue_keeps_its_order_and_queues(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path)
    conn.executescript(V3_SCHEMA)
    # (id, queue, priority, position): call order across queues by position per priority.
    rows = [
        ("d-1", "default", 0, 1),
        ("o-1", "other", 0, 2),
        ("d-2", "default", 0, 3),
        ("o-hi", "other", 5, 1),
    ]
    for invocation_id, queue, priority, position in rows:
        conn.execute(
            "INSERT INTO invocations (app_id, invocation_id, task_id, arguments, running_limit, "
            "drop_when_blocked, max_retries, status, created_at, priority, queue) "
            "VALUES ('app', ?, 'tests.old', x'00', 1, 0, 0, 'registered', 1.0, ?, ?)",
            (invocation_id, priority, queue),
        )
        conn.execute(
            "INSERT INTO queue VALUES ('app', ?, ?, ?, ?)",
            (-priority, position, queue, invocation_id),
        )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    backend = SqliteBackend(path, OPTIONS)
    try:
        assert backend.stats().queue_depth == {"default": 2, "other": 2}
        only_default = backend.claim("r", 1, 30.0, 0, queues=frozenset({"default"}))
        assert [c.invocation_id for c in only_default] == ["d-1"]
        rest = backend.claim("r", 10, 30.0, 0)
        assert [c.invocation_id for c in rest] == ["o-hi", "o-1", "d-2"]
    finally:
        backend.close()
