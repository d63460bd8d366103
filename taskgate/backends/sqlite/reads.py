"""Reads of the SQLite backend that assemble a report from several tables (each runs in the
caller's one read transaction, so it is a consistent snapshot)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

from taskgate.backends.sqlite import budget_queries as bq
from taskgate.backends.sqlite import cancels, newest
from taskgate.backends.sqlite import queries as q
from taskgate.record import BackendStats, BlockedBy, FinalOutcome, InvocationRecord
from taskgate.status import InvocationStatus

_S = InvocationStatus
_FINAL = {status.value: status for status in InvocationStatus if status.is_final}


def _rows_by_id(
    conn: sqlite3.Connection, select_in: str, app: str, invocation_ids: Sequence[str]
) -> Iterator[sqlite3.Row]:
    """The rows ``select_in`` (a query of ``app``'s ids in ``({marks})``) finds for
    ``invocation_ids``, ``IN_BATCH`` ids per statement."""
    for start in range(0, len(invocation_ids), q.IN_BATCH):
        page = list(invocation_ids[start : start + q.IN_BATCH])
        yield from conn.execute(select_in.format(marks=",".join("?" * len(page))), (app, *page))


def records_by_id(
    conn: sqlite3.Connection, app: str, invocation_ids: Sequence[str]
) -> dict[str, InvocationRecord]:
    """The records of those of ``invocation_ids`` that exist, by id, history left out."""
    return {
        row["invocation_id"]: q.row_to_record(row, [])
        for row in _rows_by_id(conn, q.SELECT_INVOCATIONS_IN, app, invocation_ids)
    }


def final_outcomes(
    conn: sqlite3.Connection, app: str, invocation_ids: Sequence[str]
) -> dict[str, FinalOutcome]:
    """The outcomes of those of ``invocation_ids`` that are final, by id."""
    found: dict[str, FinalOutcome] = {}
    for invocation_id, status, result, error in _rows_by_id(
        conn, q.SELECT_OUTCOMES_IN, app, invocation_ids
    ):
        final = _FINAL.get(status)
        if final is not None:
            found[invocation_id] = FinalOutcome(final, result, error)
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
    counts, depth = newest.counts(conn, app)
    parked = parked_counts(conn, app)
    runners = dict(conn.execute(q.LIVE_RUNNERS, (app, now)).fetchall())
    return BackendStats(counts, parked, runners, depth, cancels.ticks(conn, app))


def parked_counts(conn: sqlite3.Connection, app: str) -> dict[str, int]:
    """Parked invocations per running key and per budget (two grouped reads of the wait lists,
    which hold only waiting invocations: cheap at any store size)."""
    parked: dict[str, int] = dict(conn.execute(q.COUNT_PARKED_BY_KEY, (app,)).fetchall())
    for key, count in conn.execute(bq.COUNT_WAITERS_BY_BUDGET, (app,)):
        parked[key] = parked.get(key, 0) + count
    return parked
