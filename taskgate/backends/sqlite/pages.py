"""``page_invocations`` on SQLite: keyset pages over the indexes the schema already has.

The cursor is the ``seq`` (registration order) of the last invocation a page examined; the next
page reads ``seq < cursor``, so a page costs the same at the end of a store of any size as at
its start (no OFFSET), and invocations registered meanwhile never shift it. Which index walks:

- task or status alone: an exact index read, ``limit + 1`` rows (the extra one says a next page
  exists): ``invocations_by_task`` / ``invocations_by_status`` (both end in ``seq``);
- an id prefix alone: the seqs of its matches from the ``(app_id, invocation_id)`` unique index
  (index only, no row read), sorted here, when there are at most ``PAGE_SCAN_MAX`` of them
  (a prefix of k hex digits matches one id in 16^k); more, it is checked on each row of a
  bounded rowid walk (short pages, ``scanned_all`` False, as with two filters). Never an
  ORDER BY seq over the matches: SQLite would read and sort them all;
- none: ``queries.newest_seqs``: the rowid (``seq DESC``) walks ``4 * (limit + 1)`` rows of
  every app; when they hold fewer of this app's (a small app beside a big one in one file), the
  newest of each of its tasks from ``invocations_by_task`` are merged. Exact either way, and
  bounded by the page and the app's tasks, never by the other apps' rows;
- two or more: the most selective index of the first filter (status, then task) walks, the
  other filters are checked on each row, and at most ``PAGE_SCAN_MAX`` rows are examined (a
  short page with ``scanned_all=False`` goes on from the last row examined). An index on
  (task, status) would make these exact but would cost every status change of every
  invocation one more index update, for a monitor filter: not worth it.

Rows come without history (one read for the page, none per record).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from taskgate.backends import paging
from taskgate.backends.sqlite import queries as q
from taskgate.record import InvocationPage
from taskgate.status import InvocationStatus

_BY_TASK = (
    "SELECT {columns} FROM invocations INDEXED BY invocations_by_task "
    "WHERE app_id = ? AND task_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
)
_BY_STATUS = (
    "SELECT {columns} FROM invocations INDEXED BY invocations_by_status "
    "WHERE app_id = ? AND status = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
)
# The rowid, every app's rows (a short id prefix): app_id is checked on each row, so the rows
# of other apps in the file count towards the bound. (Filtered by app in SQL, LIMIT would
# bound the matches, not the rows read.) Not indexed: the planner would sort by an index.
_ALL = (
    "SELECT seq, task_id, invocation_id, app_id FROM invocations NOT INDEXED "
    "WHERE seq < ? ORDER BY seq DESC LIMIT ?"
)
# Only the unique (app_id, invocation_id) index, which holds the seq (rowid): no row read.
_SEQS_BY_ID_PREFIX = (
    "SELECT seq FROM invocations WHERE app_id = ? AND invocation_id >= ? "
    "AND invocation_id < ? LIMIT ?"
)
_BY_SEQ = "SELECT * FROM invocations WHERE seq IN ({marks})"


def page(
    conn: sqlite3.Connection,
    app_id: str,
    task_id: str | None,
    status: InvocationStatus | None,
    id_prefix: str | None,
    limit: int,
    cursor: str | None,
) -> InvocationPage:
    """One page of ``app_id``'s invocations, newest first (see the module docstring)."""
    before = paging.SEQUENCE_END
    if cursor is not None:
        before = paging.read_cursor(cursor, paging.sequence)
    limit = max(1, limit)
    bound = paging.scan_max()
    filters = (task_id is not None) + (status is not None) + bool(id_prefix)
    if filters == 1 and task_id is not None:
        return _exact_page(conn, _BY_TASK, (app_id, task_id, before, limit + 1), limit)
    if filters == 1 and status is not None:
        return _exact_page(conn, _BY_STATUS, (app_id, status.value, before, limit + 1), limit)
    has_prefix = paging.prefix_filter(id_prefix)
    if filters == 0:
        return _page_of(conn, q.newest_seqs(conn, app_id, before, limit + 1), limit)
    if filters == 1:  # an id prefix
        assert id_prefix
        end = id_prefix + "\U0010ffff"  # see queries.find_ids: no LIKE wildcards to escape
        matched = conn.execute(_SEQS_BY_ID_PREFIX, (app_id, id_prefix, end, bound + 1))
        seqs = [row[0] for row in matched]
        if len(seqs) <= bound:  # every match: the page is exact
            newest = sorted((seq for seq in seqs if seq < before), reverse=True)
            return _page_of(conn, newest[: limit + 1], limit)
        # A short prefix (one in 16 ids per hex digit): walk the rowid instead, bounded.
        return _walked_page(
            conn,
            _ALL,
            (before, bound),
            lambda row: row[3] == app_id and has_prefix(row[2]),
            limit,
            bound,
        )
    # Two or more: the status index, or the task's, walks; the rest is checked on each row.
    columns = "seq, task_id, invocation_id"
    if status is not None:
        sql, params = _BY_STATUS.format(columns=columns), (app_id, status.value, before, bound)
    else:
        assert task_id is not None, "two filters: status, or task and id prefix"
        sql, params = _BY_TASK.format(columns=columns), (app_id, task_id, before, bound)
    return _walked_page(
        conn,
        sql,
        params,
        lambda row: (task_id is None or row[1] == task_id) and has_prefix(row[2]),
        limit,
        bound,
    )


def _exact_page(
    conn: sqlite3.Connection, sql: str, params: tuple[object, ...], limit: int
) -> InvocationPage:
    """A page one index answers exactly: ``limit + 1`` rows (the extra one says "more")."""
    rows = conn.execute(sql.format(columns="*"), params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = str(rows[-1]["seq"]) if more else None
    return InvocationPage([q.row_to_record(row, []) for row in rows], next_cursor)


def _page_of(conn: sqlite3.Connection, seqs: list[int], limit: int) -> InvocationPage:
    """The page of the rows of ``seqs`` (newest first; one more than ``limit``: a next page)."""
    rows = _rows_by_seq(conn, seqs)
    next_cursor = str(rows[limit - 1]["seq"]) if len(rows) > limit else None
    return InvocationPage([q.row_to_record(row, []) for row in rows[:limit]], next_cursor)


def _walked_page(
    conn: sqlite3.Connection,
    sql: str,
    params: tuple[object, ...],
    matches: Callable[[Any], bool],
    limit: int,
    bound: int,
) -> InvocationPage:
    """A page of the rows ``sql`` reads (at most ``bound``, newest first) that match."""
    rows: Iterator[Any] = iter(conn.execute(sql, params))
    found, last, scanned_all = paging.walk(rows, matches, limit, bound)
    records = [q.row_to_record(row, []) for row in _rows_by_seq(conn, [row[0] for row in found])]
    next_cursor = None if last is None else str(last[0])
    return InvocationPage(records, next_cursor, scanned_all)


def _rows_by_seq(conn: sqlite3.Connection, seqs: list[int]) -> list[sqlite3.Row]:
    """The rows of ``seqs`` (at most a page and one), newest first."""
    if not seqs:
        return []
    rows = conn.execute(_BY_SEQ.format(marks=",".join("?" * len(seqs))), seqs).fetchall()
    # Sorted here: ORDER BY on an IN list makes SQLite build a temp B-tree.
    return sorted(rows, key=lambda row: -row["seq"])
