"""SQLite schema v6: a fresh registration (REGISTERED, never run) is left out of the status index
``invocations_by_status_task`` and found through its ready-queue row instead. Counts and pages by
status and task stay exact through every transition: checked here against a scan of the rows."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.backends.sqlite.queries import INDEXED
from taskgate.record import ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S

OPTIONS = BackendOptions("app", 60.0, 3, b"lost")
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def backend(path: Path) -> Iterator[SqliteBackend]:
    opened = SqliteBackend(path, OPTIONS)
    try:
        yield opened
    finally:
        opened.close()


def rows(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)  # a reader of its own: sees what the backend committed
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def record(invocation_id: str, task_id: str = "tests.a", **fields: object) -> InvocationRecord:
    plan = fields.pop("plan", ConcurrencyPlan())
    return InvocationRecord(invocation_id, task_id, b"args", plan, **fields)  # type: ignore[arg-type]


def assert_reads_match_the_rows(backend: SqliteBackend, path: Path) -> None:
    """stats() counts and every filter's page equal what a scan of ``invocations`` says."""
    truth = rows(path, "SELECT task_id, status, COUNT(*) FROM invocations GROUP BY 1, 2")
    assert backend.stats().by_task_and_status == {(t, S(s)): n for t, s, n in truth}
    newest = "SELECT invocation_id FROM invocations WHERE {} ORDER BY seq DESC"
    filters = [(None, None), *((None, s) for s in S), ("tests.a", None), ("tests.b", None)]
    filters += [(task, s) for task in ("tests.a", "tests.b") for s in S]
    for task_id, status in filters:
        where = " AND ".join(
            [*(["task_id = ?"] if task_id else []), *(["status = ?"] if status else []), "1"]
        )
        params = [p for p in (task_id, status and status.value) if p]
        expected = [r[0] for r in rows(path, newest.format(where), *params)]
        page = backend.page_invocations(task_id=task_id, status=status, limit=100)
        assert [r.invocation_id for r in page.records] == expected, (task_id, status)
        listed = backend.list_invocations(task_id=task_id, status=status, limit=100)
        assert [r.invocation_id for r in listed] == expected, (task_id, status)


def test_a_registration_writes_no_status_index_entry_until_it_is_claimed(
    backend: SqliteBackend, path: Path
) -> None:
    backend.register(record("one"))
    indexed = (
        "SELECT status FROM invocations INDEXED BY invocations_by_status_task "
        f"WHERE app_id = 'app' AND {INDEXED}"
    )
    assert rows(path, indexed) == []
    seq = rows(path, "SELECT seq FROM invocations WHERE invocation_id = 'one'")[0][0]
    assert rows(path, "SELECT invocation_id, task_id, seq FROM queue") == [("one", "tests.a", seq)]
    [claim] = backend.claim("runner", 1, 30.0, 0)
    assert rows(path, indexed) == [("running",)]
    assert rows(path, "SELECT * FROM queue") == []
    assert backend.finish("one", "runner", claim.attempt, DONE)
    assert rows(path, indexed) == [("success",)]


def test_counts_and_pages_stay_exact_through_every_transition(
    backend: SqliteBackend, path: Path
) -> None:
    keyed = ConcurrencyPlan(running_key="k", running_limit=1)
    backend.register_many(
        [
            record("a1"),
            record("a2"),
            record("a3"),
            record("later", scheduled_for=time.time() + 3600),
            record("k1", "tests.b", plan=keyed),
        ]
    )
    assert_reads_match_the_rows(backend, path)
    claimed = {c.invocation_id: c for c in backend.claim("runner", 2, 30.0, 0)}
    assert set(claimed) == {"a1", "a2"}
    assert_reads_match_the_rows(backend, path)
    # A retry goes back to the queue as RETRY; a cancel takes a fresh one out of it.
    retry = Outcome(OutcomeKind.RETRY, b"again")
    assert backend.finish("a1", "runner", claimed["a1"].attempt, retry)
    assert backend.cancel("a3").value == "cancelled"
    assert_reads_match_the_rows(backend, path)
    # k1 runs; k2 (priority 5) and k3 park behind it. Handed back, k1 is REGISTERED again
    # (attempt 1) but parked: the slot went to k2, first in line by priority.
    claimed |= {c.invocation_id: c for c in backend.claim("runner", 1, 30.0, 0)}
    assert "k1" in claimed
    backend.register_many(
        [record("k2", "tests.b", plan=keyed, priority=5), record("k3", "tests.b", plan=keyed)]
    )
    assert backend.claim("runner", 5, 30.0, 0) != []  # a1's retry runs; k2, k3 park
    assert_reads_match_the_rows(backend, path)
    assert backend.release("k1", "runner", claimed["k1"].attempt)
    assert backend.get("k1").status is S.REGISTERED  # type: ignore[union-attr]
    assert_reads_match_the_rows(backend, path)
    # Recovery puts every running one back as REGISTERED, first in line.
    assert backend.recover_leases(now=time.time() + 3600)
    assert_reads_match_the_rows(backend, path)
    while claims := backend.claim("runner-2", 10, 30.0, 0):
        for claim in claims:
            assert backend.finish(claim.invocation_id, "runner-2", claim.attempt, DONE)
        assert_reads_match_the_rows(backend, path)
    backend.purge()
    assert_reads_match_the_rows(backend, path)


def test_pages_of_fresh_registrations_merge_every_queue_and_priority_in_call_order(
    backend: SqliteBackend, path: Path
) -> None:
    # Fresh rows are found by walking each (lane, priority) partition of the queue backwards:
    # interleave queues, priorities and tasks, and page through them with a small limit.
    for n in range(24):
        queue = "default" if n % 3 else f"q{n % 2}"
        task = "tests.a" if n % 4 else "tests.b"
        backend.register(record(f"r{n:02d}", task, priority=n % 5 - 2, queue=queue))
    assert_reads_match_the_rows(backend, path)
    truth = rows(path, "SELECT queue, COUNT(*) FROM invocations GROUP BY queue")
    assert backend.stats().queue_depth == dict(truth)
    for task_id in (None, "tests.b"):
        seen, cursor = [], None
        while True:
            page = backend.page_invocations(
                task_id=task_id, status=S.REGISTERED, limit=3, cursor=cursor
            )
            seen += [r.invocation_id for r in page.records]
            if (cursor := page.next_cursor) is None:
                break
        where = "" if task_id is None else f" WHERE task_id = '{task_id}'"
        expected = rows(path, f"SELECT invocation_id FROM invocations{where} ORDER BY seq DESC")
        assert seen == [r[0] for r in expected]
