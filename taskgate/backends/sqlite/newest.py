"""Which invocations of an app a task and status filter matches, newest first, and how many of
each there are: read from ``invocations_by_status_task`` and the ready queue together.

The index is partial (schema v6): a fresh registration (REGISTERED, attempt 0) is left out of
it, so registering writes one b-tree fewer. Every such row has a ready-queue row that carries
its task and seq (``queue.task_id`` is set on those rows only), so the REGISTERED rows of a
task are that task's index group (invocations handed back or recovered, which ran before)
merged with its fresh registrations in the queue. The queue has no index by task or seq, and
needs none: a page walks each (lane, priority) partition of its primary key backwards, where
fresh rows stand in seq order (see NEWEST_FRESH_OF_PARTITION), and a count reads the fresh
rows once, linear in their number, as counting their index group was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from taskgate.backends import paging
from taskgate.backends.sqlite.queries import INDEXED, load_history, row_to_record
from taskgate.record import InvocationRecord
from taskgate.status import InvocationStatus

_S = InvocationStatus

# The counts of stats(): an index-only scan of the index in its order; the fresh rows of the
# queue per task (a sort of those rows: no index orders them by task); the depth of each queue,
# read in index order without a sort: lane 0 is queue 'default', queue_other_lanes orders lane 1
# by queue. (One GROUP BY queue, task_id over the whole queue sorted every row: twice as slow.)
COUNT_BY_STATUS_AND_TASK = (
    "SELECT status, task_id, COUNT(*) FROM invocations INDEXED BY invocations_by_status_task "
    f"WHERE app_id = ? AND {INDEXED} GROUP BY status, task_id"
)
COUNT_FRESH_BY_TASK = (
    "SELECT task_id, COUNT(*) FROM queue WHERE app_id = ? AND task_id IS NOT NULL GROUP BY task_id"
)
COUNT_QUEUE_DEPTH = """
SELECT 'default', COUNT(*) FROM queue WHERE app_id = ?1 AND lane = 0 HAVING COUNT(*) > 0
UNION ALL
SELECT queue, COUNT(*) FROM queue WHERE app_id = ?1 AND lane = 1 GROUP BY queue
"""
# The newest rows of the file, every app's (see newest_seqs).
NEWEST_ROWS = (
    "SELECT seq, app_id FROM invocations NOT INDEXED WHERE seq < ? ORDER BY seq DESC LIMIT ?"
)
# The groups of invocations_by_status_task, each one seek: the next task of one status, the
# newest seqs of one group. (A row value (status, task_id) > (?2, ?3) would seek on the status
# alone, then read the rest of its group.)
_BY_GROUP = (
    f"FROM invocations INDEXED BY invocations_by_status_task WHERE app_id = ?1 AND {INDEXED} AND "
)
NEXT_TASK_OF_STATUS = (
    f"SELECT task_id {_BY_GROUP}status = ?2 AND task_id > ?3 ORDER BY task_id LIMIT 1"
)
NEWEST_OF_GROUP = (
    f"SELECT seq {_BY_GROUP}status = ?2 AND task_id = ?3 AND seq < ?4 ORDER BY seq DESC LIMIT ?5"
)
# The queue's partitions, one seek each: the next priority of lane ?2 after ?3. (A row value
# (lane, neg_priority) > (?2, ?3) would seek on the lane alone, then read the rest of it.)
NEXT_PRIORITY = """
SELECT neg_priority FROM queue WHERE app_id = ?1 AND lane = ?2 AND neg_priority > ?3
ORDER BY neg_priority LIMIT 1
"""
# The newest fresh registrations of one partition, of every task or of one (?5 NULL: any). A
# fresh row goes to the tail of its partition (MAX + 1) in the transaction that takes its seq,
# so among fresh rows, position order is seq order: the primary key is walked backwards from
# the tail, no sort, until LIMIT rows match.
NEWEST_FRESH_OF_PARTITION = """
SELECT seq FROM queue WHERE app_id = ?1 AND lane = ?2 AND neg_priority = ?3
    AND task_id IS NOT NULL AND seq < ?4 AND (?5 IS NULL OR task_id = ?5)
ORDER BY position DESC LIMIT ?6
"""
SELECT_BY_SEQS = "SELECT * FROM invocations WHERE seq IN ({marks})"
_BELOW_EVERY_PRIORITY = -(2**63)  # neg_priority is an SQLite integer (64 bits)


def counts(conn: sqlite3.Connection, app: str) -> tuple[dict[tuple[str, _S], int], dict[str, int]]:
    """Invocations per task and status, and ready invocations per queue (see the statements
    above). Linear in the app's invocations, as any count of them is without counters kept by
    every status change."""
    by_task_and_status = {
        (task_id, _S(status)): count
        for status, task_id, count in conn.execute(COUNT_BY_STATUS_AND_TASK, (app,))
    }
    for task_id, count in conn.execute(COUNT_FRESH_BY_TASK, (app,)):
        key = (task_id, _S.REGISTERED)
        by_task_and_status[key] = by_task_and_status.get(key, 0) + count
    return by_task_and_status, dict(conn.execute(COUNT_QUEUE_DEPTH, (app,)).fetchall())


def list_records(
    conn: sqlite3.Connection,
    app_id: str,
    task_id: str | None,
    status: InvocationStatus | None,
    limit: int,
) -> list[InvocationRecord]:
    """Up to ``limit`` records, newest first, optionally filtered by task and status."""
    if task_id is None and status is None:
        seqs = newest_seqs(conn, app_id, paging.SEQUENCE_END, limit)
    else:
        seqs = newest_of(conn, app_id, task_id, status, paging.SEQUENCE_END, limit)
    return [row_to_record(row, load_history(row)) for row in rows_by_seq(conn, seqs)]


def rows_by_seq(conn: sqlite3.Connection, seqs: list[int]) -> list[sqlite3.Row]:
    """The rows of ``seqs`` (a page or a listing: bound parameters), newest first."""
    if not seqs:
        return []
    rows = conn.execute(SELECT_BY_SEQS.format(marks=",".join("?" * len(seqs))), seqs)
    # Sorted here: ORDER BY on an IN list makes SQLite build a temp B-tree.
    return sorted(rows, key=_newest)


def _newest(row: sqlite3.Row) -> int:
    return -int(row["seq"])


def newest_seqs(conn: sqlite3.Connection, app_id: str, before: int, count: int) -> list[int]:
    """The seqs of ``app_id``'s ``count`` newest invocations below ``before``, newest first.

    No index orders one app's rows by seq. The rowid orders every app's: its next
    ``4 * count`` rows answer when the app is alone in the file (the usual case: ``count``
    rows are read) or busy. Otherwise :func:`newest_of` merges the groups of the app's index
    entries and its fresh registrations: a small app beside a big one reads a few index entries
    per (status, task) and its own queue, never the big one's rows.
    """
    walked = 4 * count
    rows = conn.execute(NEWEST_ROWS, (before, walked)).fetchall()
    mine = [seq for seq, app in rows if app == app_id]
    if len(mine) >= count or len(rows) < walked:
        return mine[:count]
    return newest_of(conn, app_id, None, None, before, count)


def newest_of(
    conn: sqlite3.Connection,
    app_id: str,
    task_id: str | None,
    status: InvocationStatus | None,
    before: int,
    count: int,
) -> list[int]:
    """The seqs of ``app_id``'s ``count`` newest invocations below ``before`` of ``task_id``
    and ``status`` (None: any), newest first: exact.

    Each (status, task) group of the index is in seq order: the newest ``count`` of every
    group that matches are merged, with the newest ``count`` fresh registrations of the queue
    where REGISTERED matches. One seek per group, plus one to find each group: a task alone
    has one group per status (a seek each), a status one per task it holds.
    """
    seqs: list[int] = []
    for group_status, group_task in _groups(conn, app_id, task_id, status):
        params = (app_id, group_status, group_task, before, count)
        seqs += [seq for (seq,) in conn.execute(NEWEST_OF_GROUP, params)]
    if status in (None, _S.REGISTERED):
        seqs += _newest_fresh(conn, app_id, task_id, before, count)
    return sorted(seqs, reverse=True)[:count]


def _newest_fresh(
    conn: sqlite3.Connection, app_id: str, task_id: str | None, before: int, count: int
) -> list[int]:
    """The seqs of the ``count`` newest fresh registrations of each queue partition (a lane
    and a priority: a few) below ``before``, of ``task_id`` (None: any)."""
    seqs: list[int] = []
    for lane in (0, 1):
        neg_priority = _BELOW_EVERY_PRIORITY
        while row := conn.execute(NEXT_PRIORITY, (app_id, lane, neg_priority)).fetchone():
            neg_priority = row[0]
            params = (app_id, lane, neg_priority, before, task_id, count)
            seqs += [seq for (seq,) in conn.execute(NEWEST_FRESH_OF_PARTITION, params)]
    return seqs


def _groups(
    conn: sqlite3.Connection, app_id: str, task_id: str | None, status: InvocationStatus | None
) -> Iterator[tuple[str, str]]:
    """The (status, task) groups of invocations_by_status_task that match the filters."""
    if status is not None and task_id is not None:
        yield status.value, task_id
    elif task_id is not None:
        for each in InvocationStatus:
            yield each.value, task_id
    elif status is not None:
        task = ""  # task ids are never empty
        while row := conn.execute(NEXT_TASK_OF_STATUS, (app_id, status.value, task)).fetchone():
            task = row[0]
            yield status.value, task
    else:
        for each in InvocationStatus:
            yield from _groups(conn, app_id, None, each)
