"""``page_invocations`` on Redis: pages of the ``index`` / ``task:<id>`` zsets, newest first.

Both zsets score an id by its registration time. A page reads them with ``ZREVRANGEBYSCORE``
from its cursor, ``"<score> <id>"`` of the last entry examined: the next page starts at that
score (inclusive) and skips the entries of that score it has seen (equal scores come in
reverse order of their ids), so pages neither repeat nor skip, and a new registration (a
higher score) never shifts them. Filters:

- ``task_id`` picks the task's zset: exact, nothing examined in vain;
- ``id_prefix`` is checked on the ids the range read returns anyway (no extra read);
- ``status`` has no index: each chunk of the range comes with the ``status`` field of every
  record in it (page_chunk.lua: one ``HGET`` per entry, server side), never whole records.

A chunk is one round trip (``page_chunk.lua``: the range, and the statuses when filtering by
status); the records of the page one more (``HGETALL`` each, pipelined, without history).
Without ``status`` or ``id_prefix`` a page is one chunk of ``limit + 1`` entries; with them, at
most ``PAGE_SCAN_MAX`` entries are examined per page (chunks of ``CHUNK``): a page that stops
there is short, with ``scanned_all=False`` and a cursor that goes on. (A pipeline of HGETs from
here cost ~30 us of client work per entry, 60 ms for a page of 2000 on a busy host; the script
costs the server ~0.3 us per entry.) Ties are skipped here, not in Lua: Lua compares strings
with the server's locale collation, ids must compare as bytes, as Redis orders them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from taskgate.backends import paging
from taskgate.backends.redis.records import decode_record
from taskgate.backends.redis.replies import as_text
from taskgate.record import InvocationPage, InvocationRecord
from taskgate.status import InvocationStatus

if TYPE_CHECKING:
    from taskgate.backends.redis.connection import RedisConnector

# Index entries read per round trip while filtering (each with its record's status).
CHUNK = 500

_Entry = tuple[str, float, bytes | None]
"""An index entry: id, score, and its status when the page filters by status."""


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
    key = "index" if task_id is None else "task:" + task_id
    exact = status is None and not id_prefix
    bound = limit + 1 if exact else paging.scan_max()
    chunk = bound if exact else min(CHUNK, bound)
    entries = _entries(db, key, cursor, chunk, status is not None)
    wanted = None if status is None else status.value.encode()
    has_prefix = paging.prefix_filter(id_prefix)

    def matches(entry: _Entry) -> bool:
        return (wanted is None or entry[2] == wanted) and has_prefix(entry[0])

    # Exact, the bound (limit + 1) is never reached first: the extra entry says "more".
    found, last, scanned_all = paging.walk(entries, matches, limit, bound)
    records = _records(db, prefix, [entry[0] for entry in found])
    next_cursor = None if last is None else f"{last[1]!r} {last[0]}"
    return InvocationPage(records, next_cursor, scanned_all)


def _entries(
    db: RedisConnector, key: str, cursor: str | None, chunk: int, with_status: bool
) -> Iterator[_Entry]:
    """The entries of the zset ``key`` (under the prefix) after ``cursor``, newest first, read
    ``chunk`` at a time."""
    top, seen_id = "+inf", b""
    score: float | None = None
    if cursor is not None:
        score, after_id = paging.read_cursor(cursor, paging.time_and_id)
        seen_id = after_id.encode()
        top = repr(score)
    offset = 0
    while True:
        reply = db.run("page_chunk", key, top, offset, chunk, "1" if with_status else "")
        stride = 3 if with_status else 2
        count = len(reply) // stride
        offset += count
        for i in range(0, len(reply), stride):
            member, value = reply[i], float(reply[i + 1])
            # Entries of the cursor's score at or above its id came on an earlier page.
            if score is not None and value == score and member >= seen_id:
                continue
            yield as_text(member), value, reply[i + 2] if with_status else None
        if count < chunk:
            return


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
