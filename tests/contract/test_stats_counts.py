"""``Backend.stats()`` counts by task and status follow every transition, expiry and purge on
every backend; on SQLite the rows of the largest status (the finished ones) are never read."""

from __future__ import annotations

import time
from collections.abc import Callable

from taskgate.backends.base import Backend
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.record import InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S

NewRecord = Callable[..., InvocationRecord]


def test_counts_by_task_and_status_follow_every_change(
    backend: Backend, new_record: NewRecord
) -> None:
    a = [new_record(task_id="tests.a") for _ in range(4)]
    b = [new_record(task_id="tests.b") for _ in range(2)]
    backend.register_many(a + b)
    assert backend.stats().by_task_and_status == {
        ("tests.a", S.REGISTERED): 4,
        ("tests.b", S.REGISTERED): 2,
    }
    claims = {c.invocation_id: c for c in backend.claim("runner", 5, 30.0, 0)}
    done, failed = Outcome(OutcomeKind.SUCCESS, b"ok"), Outcome(OutcomeKind.FAILED, b"no")
    assert backend.finish(a[0].invocation_id, "runner", claims[a[0].invocation_id].attempt, done)
    assert backend.finish(a[1].invocation_id, "runner", claims[a[1].invocation_id].attempt, failed)
    backend.release(a[2].invocation_id, "runner", claims[a[2].invocation_id].attempt)
    assert backend.stats().by_task_and_status == {
        ("tests.a", S.SUCCESS): 1,
        ("tests.a", S.FAILED): 1,
        ("tests.a", S.REGISTERED): 1,
        ("tests.a", S.RUNNING): 1,
        ("tests.b", S.RUNNING): 1,
        ("tests.b", S.REGISTERED): 1,
    }
    assert backend.expire_finals(100, now=time.time() + 10**9) == 2
    assert backend.stats().by_task_and_status == {
        ("tests.a", S.REGISTERED): 1,
        ("tests.a", S.RUNNING): 1,
        ("tests.b", S.RUNNING): 1,
        ("tests.b", S.REGISTERED): 1,
    }
    backend.purge()
    assert backend.stats().by_task_and_status == {}


def test_sqlite_counts_read_rows_only_of_the_smaller_statuses(
    backend: Backend, new_record: NewRecord
) -> None:
    """The overview and /metrics read stats() every refresh: its counts read indexes only,
    except the rows of the statuses other than the largest (finished ones are most of a
    store: counted from the indexes, never read row by row)."""
    if not isinstance(backend, SqliteBackend):
        return
    backend.register_many([new_record(task_id=f"tests.t{i % 3}") for i in range(30)])
    done = Outcome(OutcomeKind.SUCCESS, b"ok")
    for claim in backend.claim("runner", 25, 30.0, 0):
        assert backend.finish(claim.invocation_id, "runner", claim.attempt, done)
    conn = backend._db.connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        counts = backend.stats().by_task_and_status
    finally:
        conn.set_trace_callback(None)
    assert sum(counts.values()) == 30 and counts[("tests.t0", S.SUCCESS)] == 9
    for sql in statements:
        if not sql.lstrip().upper().startswith("SELECT") or " invocations " not in sql:
            continue
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        if "COVERING INDEX" not in plan:  # rows read: only those of a smaller status
            assert "status=?" in plan and "'success'" not in sql, (sql, plan)
