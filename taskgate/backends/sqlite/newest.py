"""Which invocations of an app a task and status filter matches, newest first, and how many of
each there are: read from ``invocations_by_status_task`` and the ready queue together.

The index is partial (schema v6): a fresh registration (REGISTERED, attempt 0) is left out of
it, so registering writes one b-tree fewer. Every such row has a ready-queue row that carries
its task and seq (``queue.task_id`` is set on those rows only), so the REGISTERED rows of a
task are that task's index group (invocations handed back or recovered, which ran before)
merged with its fresh registrations in the queue. The queue has no index by task or seq: its
fresh rows are scanned (and, for a page, sorted by a bounded sorter), which is linear in the
queue's length, as counting the index group was in the group's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from taskgate.backends import paging
from taskgate.backends.sqlite.queries import INDEXED, load_history, row_to_record
from taskgate.record import InvocationRecord
from taskgate.status import InvocationStatus

_S = InvocationStatus

# The counts of stats(): an index-only scan of the index in its order, then the fresh rows of
# the queue (whose REGISTERED count they add to).
COUNT_BY_STATUS_AND_TASK = (
    "SELECT status, task_id, COUNT(*) FROM invocations INDEXED BY invocations_by_status_task "
    f"WHERE app_id = ? AND {INDEXED} GROUP BY status, task_id"
)
COUNT_FRESH_BY_TASK = (
    "SELECT task_id, COUNT(*) FROM queue WHERE app_id = ? AND task_id IS NOT NULL GROUP BY task_id"
)
# The newest rows of the file, every app's (see newest_seqs).
NEWEST_ROWS = (
    "SELECT seq, app_id FROM invocations NOT INDEXED WHERE seq < ? ORDER BY seq DESC LIMIT ?"
)
# The groups of invocations_by_status_task, each one seek: the next (status, task) of the app,
# the next task of one status, the newest seqs of one group.
_BY_GROUP = (
    f"FROM invocations INDEXED BY invocations_by_status_task WHERE app_id = ?1 AND {INDEXED} AND "
)
NEXT_GROUP = (
    f"SELECT status, task_id {_BY_GROUP}(status, task_id) > (?2, ?3) "
    "ORDER BY status, task_id LIMIT 1"
)
NEXT_TASK_OF_STATUS = (
    f"SELECT task_id {_BY_GROUP}status = ?2 AND task_id > ?3 ORDER BY task_id LIMIT 1"
)
NEWEST_OF_GROUP = (
    f"SELECT seq {_BY_GROUP}status = ?2 AND task_id = ?3 AND seq < ?4 ORDER BY seq DESC LIMIT ?5"
)
# The newest fresh registrations, of every task or of one (?3 NULL: any).
NEWEST_FRESH = """
SELECT seq FROM queue WHERE app_id = ?1 AND task_id IS NOT NULL AND seq < ?2
    AND (?3 IS NULL OR task_id = ?3)
ORDER BY seq DESC LIMIT ?4
"""
SELECT_BY_SEQS = "SELECT * FROM invocations WHERE seq IN ({marks})"


def counts_by_task_and_status(conn: sqlite3.Connection, app: str) -> dict[tuple[str, _S], int]:
    """Invocations per task and status: one index-only scan of ``invocations_by_status_task``
    in its own order (no sort), plus one scan of the queue's fresh registrations. Linear in the
    app's invocations, as any count of them is without counters kept by every status change."""
    counts = {
        (task_id, _S(status)): count
        for status, task_id, count in conn.execute(COUNT_BY_STATUS_AND_TASK, (app,))
    }
    for task_id, count in conn.execute(COUNT_FRESH_BY_TASK, (app,)):
        key = (task_id, _S.REGISTERED)
        counts[key] = counts.get(key, 0) + count
    return counts


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
        seqs += [seq for (seq,) in conn.execute(NEWEST_FRESH, (app_id, before, task_id, count))]
    return sorted(seqs, reverse=True)[:count]


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
        group = ("", "")
        while (row := conn.execute(NEXT_GROUP, (app_id, *group)).fetchone()) is not None:
            group = (row[0], row[1])
            yield group
