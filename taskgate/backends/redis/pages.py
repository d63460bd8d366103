"""``page_invocations`` on Redis: pages of the ``task:<id>`` indexes, newest first.

Each task's index is a stream whose entry ids are registration times (``<micros>-<n>``, see
``index_entry`` in lib_core.lua); a page of every task merges them (there is no index of all
invocations: one entry less to store and write per invocation; the tasks are few, and the
``counts`` hash names them). A page reads them with ``XREVRANGE`` from its cursor,
``"<micros>-<n> <id>"`` of the last entry examined: the next page starts at that entry id
(inclusive) and skips the entries of that entry id it has seen (two tasks' indexes may hold
the same entry id; equal ones come in reverse order of their invocation ids), so pages neither
repeat nor skip, and a new registration (a higher entry id) never shifts them. The merge orders
entries the same way (entry id, then invocation id, both descending), so one cursor serves
every index. Filters:

- ``task_id`` picks the task's index: exact, nothing examined in vain;
- ``id_prefix`` is checked on the ids the range read returns anyway (no extra read);
- ``status`` has no index: each chunk of the range comes with the ``status`` field of every
  record in it (page_chunk.lua: one ``HGET`` per entry, server side), never whole records.

A chunk is one round trip (``page_chunk.lua``: the range of every index of the page, and the
statuses when filtering by status; the first chunk is shared among them, and an index that
runs out of its share before the page ends reads its next chunk alone, twice as large each time
up to a whole chunk); the records of the page one more (``HGETALL`` each, pipelined, without
history). Without ``status`` or ``id_prefix`` a page is one chunk of ``limit + 1`` entries;
with them, at most ``PAGE_SCAN_MAX`` entries are examined per page (chunks of ``CHUNK``): a
page that stops there is short, with ``scanned_all=False`` and a cursor that goes on. (A
pipeline of HGETs from here cost ~30 us of client work per entry, 60 ms for a page of 2000 on a
busy host; the script costs the server ~0.3 us per entry.) Ties are skipped here, not in Lua:
Lua compares strings with the server's locale collation, ids must compare as bytes, as
Redis orders them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING

from taskgate.backends import paging
from taskgate.backends.redis.records import decode_record
from taskgate.backends.redis.replies import as_text, count_field
from taskgate.record import InvocationPage, InvocationRecord
from taskgate.status import InvocationStatus

if TYPE_CHECKING:
    from taskgate.backends.redis.connection import RedisConnector

# Index entries read per round trip while filtering (each with its record's status).
CHUNK = 500

_Position = tuple[int, int]
"""An index entry id, ``<micros>-<n>``, as the numbers it orders by."""
_Entry = tuple[str, _Position, bytes | None]
"""An index entry: invocation id, entry id, and its status when the page filters by status."""


def page(
    db: RedisConnector,
    prefix: str,
    *,
    task_id: str | None,
    status: InvocationStatus | None,
    id_prefix: str | None,
    limit: int,
    cursor: str | None,
) -> InvocationPage:
    """One page of the app's invocations under ``prefix`` (see the module docstring)."""
    limit = max(1, limit)
    exact = status is None and not id_prefix
    bound = limit + 1 if exact else paging.scan_max()
    chunk = bound if exact else min(CHUNK, bound)
    entries = newest_first(db, index_keys(db, prefix, task_id), cursor, chunk, status is not None)
    wanted = None if status is None else status.value.encode()
    has_prefix = paging.prefix_filter(id_prefix)

    def matches(entry: _Entry) -> bool:
        return (wanted is None or entry[2] == wanted) and has_prefix(entry[0])

    # Exact, the bound (limit + 1) is never reached first: the extra entry says "more".
    found, last, scanned_all = paging.walk(entries, matches, limit, bound)
    records = _records(db, prefix, [entry[0] for entry in found])
    next_cursor = None if last is None else f"{_entry_text(last[1])} {last[0]}"
    return InvocationPage(records, next_cursor, scanned_all)


def index_keys(db: RedisConnector, prefix: str, task_id: str | None) -> list[str]:
    """The indexes (under the prefix) that index the invocations of ``task_id`` (None: of every
    task, as the ``counts`` hash names them: ``<task_id>\\x1f<status>``)."""
    if task_id is not None:
        return ["task:" + task_id]
    fields = db.command("HKEYS", prefix + "counts")
    return sorted({"task:" + count_field(field)[0] for field in fields})


def newest_first(
    db: RedisConnector, keys: list[str], cursor: str | None, chunk: int, with_status: bool
) -> Iterator[_Entry]:
    """The entries of the indexes ``keys`` after ``cursor``, newest first (by entry id, then
    invocation id), read ``chunk`` at a time from each; the first chunks in one round trip."""
    start: tuple[_Position | None, bytes] = (None, b"")
    if cursor is not None:  # refused (InvalidCursorError) whether or not there are entries
        position, after_id = paging.read_cursor(cursor, paging.entry_and_id)
        start = (position, after_id.encode())
    if not keys:
        return iter(())
    # The first read of each index shares one chunk: a read of a whole chunk from each of many
    # tasks' indexes would hold the server for all of them at once (200 tasks, a page by
    # status: 100,000 status lookups in one script). An index read out reads more, twice as
    # many each time up to a chunk: one task with most entries costs a few round trips more.
    size = -(-chunk // len(keys))
    top = "+" if start[0] is None else _entry_text(start[0])
    firsts = db.run("page_chunk", top, size, "1" if with_status else "", *keys)
    streams = [
        _entries(db, key, start, (size, chunk), with_status, first)
        for key, first in zip(keys, firsts, strict=True)
    ]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda entry: (entry[1], entry[0]), reverse=True)


def _entries(
    db: RedisConnector,
    key: str,
    start: tuple[_Position | None, bytes],
    sizes: tuple[int, int],
    with_status: bool,
    first: list[bytes],
) -> Iterator[_Entry]:
    """The entries of the index ``key`` (under the prefix) after ``start`` (entry id and
    invocation id of a cursor), newest first; ``first`` is the first chunk, read with
    ``sizes[0]`` entries, each further one twice as many up to ``sizes[1]``.

    Each chunk goes on from the last entry read, as the next page goes on from its cursor:
    from that entry id (inclusive), skipping the entries of that entry id at or above its
    invocation id (within one index there is at most one). An offset would count from a top
    that moves: a registration between two chunks would repeat an entry in the page, a
    deletion skip one.
    """
    score, last_id = start
    size, chunk = sizes
    stride = 3 if with_status else 2
    seen = 0  # entries of the top score the next read returns again (skipped here)
    reply = first
    while True:
        wanted = size + seen
        fresh = False
        for i in range(0, len(reply), stride):
            member, value = reply[i], _position(reply[i + 1])
            # Entries of the top score at or above the last id came before.
            if score is not None and value == score and member >= last_id:
                continue
            fresh = True
            yield as_text(member), value, reply[i + 2] if with_status else None
        if len(reply) < wanted * stride:
            return
        if fresh:
            last_member, last_value = reply[-stride], _position(reply[-stride + 1])
            seen = sum(1 for i in range(1, len(reply), stride) if reply[i] == reply[-stride + 1])
            score, last_id = last_value, last_member
        else:  # a whole chunk of entries already seen (many of one score): read further
            seen = wanted
        size = min(chunk, 2 * size)
        top = "+" if score is None else _entry_text(score)
        flag = "1" if with_status else ""
        [reply] = db.run("page_chunk", top, size + seen, flag, key)


def _position(entry: bytes) -> _Position:
    """An entry id as XREVRANGE replies it, ``b"<micros>-<n>"``."""
    micros, _, n = entry.partition(b"-")
    return int(micros), int(n)


def _entry_text(position: _Position) -> str:
    return f"{position[0]}-{position[1]}"


def _records(db: RedisConnector, prefix: str, ids: list[str]) -> list[InvocationRecord]:
    """The records of ``ids`` without history, in one round trip; expired ones left out."""
    if not ids:
        return []
    with db.translated():
        pipe = db.client.pipeline(transaction=False)
        for invocation_id in ids:
            pipe.hgetall(prefix + "inv:" + invocation_id)
        replies = pipe.execute()
    return [
        decode_record(invocation_id, fields, history=False)
        for invocation_id, fields in zip(ids, replies, strict=True)
        if fields
    ]
