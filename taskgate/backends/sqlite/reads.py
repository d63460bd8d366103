"""Reads of the SQLite backend that assemble a report from several tables (each runs in the
caller's one read transaction, so it is a consistent snapshot)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from taskgate.backends.sqlite import budget_queries as bq
from taskgate.backends.sqlite import cancels
from taskgate.backends.sqlite import queries as q
from taskgate.record import BackendStats, BlockedBy, InvocationRecord
from taskgate.status import InvocationStatus

_S = InvocationStatus


def records_by_id(
    conn: sqlite3.Connection, app: str, invocation_ids: Sequence[str]
) -> dict[str, InvocationRecord]:
    """The records of those of ``invocation_ids`` that exist, by id, history left out."""
    found: dict[str, InvocationRecord] = {}
    for start in range(0, len(invocation_ids), q.IN_BATCH):
        page = list(invocation_ids[start : start + q.IN_BATCH])
        sql = q.SELECT_INVOCATIONS_IN.format(marks=",".join("?" * len(page)))
        for row in conn.execute(sql, (app, *page)):
            found[row["invocation_id"]] = q.row_to_record(row, [])
    return found


def blocked_by(conn: sqlite3.Connection, app: str, invocation_id: str) -> BlockedBy | None:
    """What a CONCURRENCY_CONTROLLED invocation waits for (see ``Backend.blocked_by``)."""
    row = conn.execute(bq.BLOCKED_ROW, (app, invocation_id)).fetchone()
    if row is None or row["status"] != _S.CONCURRENCY_CONTROLLED:
        return None
    if row["parked_on"] is not None:
        key, ready_at, sql = row["parked_on"], row["ready_at"], bq.HOLDERS
    elif row["running_key"] is not None:
        key, ready_at, sql = row["running_key"], None, q.SLOT_HOLDERS
    else:
        return None
    holders = () if ready_at is not None else conn.execute(sql, (app, key))
    return BlockedBy(key, tuple(h[0] for h in holders if h[0] != invocation_id), ready_at)


def stats(conn: sqlite3.Connection, app: str, now: float) -> BackendStats:
    """Counts by task and status, waiters per key, live runners, ready invocations per queue
    and the last periodic tick per task."""
    counts = counts_by_task_and_status(conn, app)
    parked = parked_counts(conn, app)
    runners = dict(conn.execute(q.LIVE_RUNNERS, (app, now)).fetchall())
    depth = dict(conn.execute(q.QUEUE_DEPTH, (app,)).fetchall())
    return BackendStats(counts, parked, runners, depth, cancels.ticks(conn, app))


def counts_by_task_and_status(conn: sqlite3.Connection, app: str) -> dict[tuple[str, _S], int]:
    """Invocations per task and status, reading the rows of the smaller statuses only.

    No index holds both task and status, and ``GROUP BY task_id, status`` read every row
    (130-250 ms at 200k). Here the counts per status and the totals per task come from
    ``invocations_by_status`` and ``invocations_by_task`` alone (index-only scans); the tasks
    of each status but the largest are read from their rows; the largest (the finished
    invocations of a busy store) per task is the task's total minus the rest: 50-70 ms at 200k
    with 10k waiting. Still linear, and a store where two statuses are large reads the rows of
    the smaller. An index on (task, status), or counts kept by triggers, would make it
    constant, but either costs every status change of every invocation (BENCHMARKS.md,
    monitor section), for a monitor read.
    """
    by_status = dict(conn.execute(q.COUNT_BY_STATUS, (app,)).fetchall())
    if not by_status:
        return {}
    largest = max(by_status, key=by_status.__getitem__)
    counts: dict[tuple[str, _S], int] = {}
    others: dict[str, int] = {}
    for status in by_status:
        if status != largest:
            for task_id, count in conn.execute(q.COUNT_TASKS_OF_STATUS, (app, status)):
                counts[task_id, _S(status)] = count
                others[task_id] = others.get(task_id, 0) + count
    for task_id, total in conn.execute(q.COUNT_BY_TASK, (app,)):
        if rest := total - others.get(task_id, 0):
            counts[task_id, _S(largest)] = rest
    return counts


def parked_counts(conn: sqlite3.Connection, app: str) -> dict[str, int]:
    """Parked invocations per running key and per budget (two grouped reads of the wait lists,
    which hold only waiting invocations: cheap at any store size)."""
    parked: dict[str, int] = dict(conn.execute(q.COUNT_PARKED_BY_KEY, (app,)).fetchall())
    for key, count in conn.execute(bq.COUNT_WAITERS_BY_BUDGET, (app,)):
        parked[key] = parked.get(key, 0) + count
    return parked
