"""``page_invocations`` on SQLite: keyset pages over the indexes the schema already has.

The cursor is the ``seq`` (registration order) of the last invocation a page examined; the next
page reads ``seq < cursor``, so a page costs the same at the end of a store of any size as at
its start (no OFFSET), and invocations registered meanwhile never shift it. Which index walks:

- one filter, or none: an exact index read, ``limit + 1`` rows (the extra one says a next page
  exists): ``invocations_by_task`` / ``invocations_by_status`` (both end in ``seq``), the
  rowid itself (``seq DESC``, app_id filtered on the row: one app per file is the usual case),
  or for ``id_prefix`` a range on the ``(app_id, invocation_id)`` unique index, whose few
  matches are sorted by ``seq`` (a prefix of k hex digits matches one id in 16^k);
- two or more: the most selective index of the first filter (status, then task) walks, the
  other filters are checked on each row, and at most ``PAGE_SCAN_MAX`` rows are examined (a
  short page with ``scanned_all=False`` goes on from the last row examined). An index on
  (task, status) would make these exact but would cost every status change of every
  invocation one more index update, for a monitor filter: not worth it.

Rows come without history (one read for the page, none per record).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

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
# Walking the rowid: the planner would otherwise sort every row of the app by the unique index.
_ALL = (
    "SELECT {columns} FROM invocations NOT INDEXED "
    "WHERE app_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
)
_BY_ID_PREFIX = (
    "SELECT * FROM invocations WHERE app_id = ? AND invocation_id >= ? "
    "AND invocation_id < ? AND seq < ? ORDER BY seq DESC LIMIT ?"
)
_BY_SEQ = "SELECT * FROM invocations WHERE seq IN ({marks}) ORDER BY seq DESC"
# Larger than any seq: the first page.
_NEWEST = 2**63 - 1


def page(
    conn: sqlite3.Connection,
    app_id: str,
    *,
    task_id: str | None,
    status: InvocationStatus | None,
    id_prefix: str | None,
    limit: int,
    cursor: str | None,
) -> InvocationPage:
    """One page of ``app_id``'s invocations, newest first (see the module docstring)."""
    before = _NEWEST if cursor is None else paging.read_cursor(cursor, int)
    limit = max(1, limit)
    filters = (task_id is not None) + (status is not None) + bool(id_prefix)
    if filters <= 1:
        params: tuple[object, ...]
        if task_id is not None:
            sql, params = _BY_TASK, (app_id, task_id, before, limit + 1)
        elif status is not None:
            sql, params = _BY_STATUS, (app_id, status.value, before, limit + 1)
        elif id_prefix:
            end = id_prefix + "\U0010ffff"  # see queries.find_ids: no LIKE wildcards to escape
            sql, params = _BY_ID_PREFIX, (app_id, id_prefix, end, before, limit + 1)
        else:
            sql, params = _ALL, (app_id, before, limit + 1)
        rows = conn.execute(sql.format(columns="*"), params).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1]["seq"]) if more else None
        return InvocationPage([q.row_to_record(row, []) for row in rows], next_cursor)
    return _walked_page(conn, app_id, task_id, status, id_prefix, limit, before)


def _walked_page(
    conn: sqlite3.Connection,
    app_id: str,
    task_id: str | None,
    status: InvocationStatus | None,
    id_prefix: str | None,
    limit: int,
    before: int,
) -> InvocationPage:
    """A page of several filters: one index walks, the rest are checked per row (bounded)."""
    bound = paging.scan_max()
    columns = "seq, task_id, invocation_id"
    if status is not None:
        sql = _BY_STATUS.format(columns=columns)
        params: tuple[object, ...] = (app_id, status.value, before, bound)
    else:
        assert task_id is not None, "two filters: status, or task and id prefix"
        sql = _BY_TASK.format(columns=columns)
        params = (app_id, task_id, before, bound)
    has_prefix = paging.prefix_filter(id_prefix)

    def matches(row: tuple[int, str, str]) -> bool:
        return (task_id is None or row[1] == task_id) and has_prefix(row[2])

    rows: Iterator[tuple[int, str, str]] = iter(conn.execute(sql, params))
    found, last, scanned_all = paging.walk(rows, matches, limit, bound)
    records = []
    if found:
        marks = ",".join("?" * len(found))
        for row in conn.execute(_BY_SEQ.format(marks=marks), [seq for seq, _, _ in found]):
            records.append(q.row_to_record(row, []))
    next_cursor = None if last is None else str(last[0])
    return InvocationPage(records, next_cursor, scanned_all)
