"""``page_invocations`` on SQLite: keyset pages over the indexes the schema already has.

The cursor is the ``seq`` (registration order) of the last invocation a page examined; the next
page reads ``seq < cursor``, so a page costs the same at the end of a store of any size as at
its start (no OFFSET), and invocations registered meanwhile never shift it. Which index walks:

- task, status or both: exact, from ``invocations_by_status_task`` and the queue's fresh
  registrations (``newest.newest_of``): the newest ``limit + 1`` of each of its (status, task)
  groups that match, merged (the extra one says a next page exists);
- an id prefix alone: the seqs of its matches from the ``(app_id, invocation_id)`` unique index
  (index only, no row read), sorted here, when there are at most ``PAGE_SCAN_MAX`` of them
  (a prefix of k characters matches about one id in 62^k); more, it is checked on each row of a
  bounded rowid walk (short pages, ``scanned_all`` False). Never an ORDER BY seq over the
  matches: SQLite would read and sort them all;
- none: ``newest.newest_seqs``: the rowid (``seq DESC``) walks ``4 * (limit + 1)`` rows of
  every app; when they hold fewer of this app's (a small app beside a big one in one file), the
  app's index groups and fresh registrations are merged. Exact either way, and bounded by the
  page and the app's groups, never by the other apps' rows;
- an id prefix with a task or a status: the newest ``PAGE_SCAN_MAX`` of those (as above) are
  walked, the prefix checked on each; a short page with ``scanned_all=False`` goes on from the
  last one examined.

Rows come without history (one read for the page, none per record).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from taskgate.backends import paging
from taskgate.backends.sqlite import queries as q
from taskgate.backends.sqlite.newest import newest_of, newest_seqs, rows_by_seq
from taskgate.record import InvocationPage
from taskgate.status import InvocationStatus

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
_IDS_BY_SEQ = "SELECT seq, task_id, invocation_id FROM invocations WHERE seq IN ({marks})"


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
    if not id_prefix and filters:  # task, status or both: exact from their index groups
        return _page_of(conn, newest_of(conn, app_id, task_id, status, before, limit + 1), limit)
    has_prefix = paging.prefix_filter(id_prefix)
    if filters == 0:
        return _page_of(conn, newest_seqs(conn, app_id, before, limit + 1), limit)
    if filters == 1:  # an id prefix
        assert id_prefix
        end = id_prefix + "\U0010ffff"  # see queries.find_ids: no LIKE wildcards to escape
        matched = conn.execute(_SEQS_BY_ID_PREFIX, (app_id, id_prefix, end, bound + 1))
        seqs = [row[0] for row in matched]
        if len(seqs) <= bound:  # every match: the page is exact
            newest = sorted((seq for seq in seqs if seq < before), reverse=True)
            return _page_of(conn, newest[: limit + 1], limit)
        # A short prefix (one in 62 ids per character): walk the rowid instead, bounded.
        return _walked_page(
            conn,
            iter(conn.execute(_ALL, (before, bound))),
            lambda row: row[3] == app_id and has_prefix(row[2]),
            limit,
            bound,
        )
    # An id prefix and a task or a status: the newest ``bound`` of those walk, newest first,
    # their ids checked.
    seqs = newest_of(conn, app_id, task_id, status, before, bound)
    return _walked_page(conn, _ids_of(conn, seqs), lambda row: has_prefix(row[2]), limit, bound)


def _page_of(conn: sqlite3.Connection, seqs: list[int], limit: int) -> InvocationPage:
    """The page of the rows of ``seqs`` (newest first; one more than ``limit``: a next page)."""
    rows = rows_by_seq(conn, seqs)
    next_cursor = str(rows[limit - 1]["seq"]) if len(rows) > limit else None
    return InvocationPage([q.row_to_record(row, []) for row in rows[:limit]], next_cursor)


def _walked_page(
    conn: sqlite3.Connection,
    rows: Iterator[Any],
    matches: Callable[[Any], bool],
    limit: int,
    bound: int,
) -> InvocationPage:
    """A page of ``rows`` ((seq, task, id...) newest first; at most ``bound`` read) that match."""
    found, last, scanned_all = paging.walk(rows, matches, limit, bound)
    records = [q.row_to_record(row, []) for row in rows_by_seq(conn, [row[0] for row in found])]
    next_cursor = None if last is None else str(last[0])
    return InvocationPage(records, next_cursor, scanned_all)


def _ids_of(conn: sqlite3.Connection, seqs: list[int]) -> Iterator[tuple[int, str, str]]:
    """(seq, task, id) of ``seqs`` (newest first), read IN_BATCH at a time as walked."""
    for start in range(0, len(seqs), q.IN_BATCH):
        batch = seqs[start : start + q.IN_BATCH]
        rows = conn.execute(_IDS_BY_SEQ.format(marks=",".join("?" * len(batch))), batch)
        yield from sorted(rows, key=lambda row: -row[0])
