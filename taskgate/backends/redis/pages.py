"""``page_invocations`` on Redis: pages of the ``index`` / ``task:<id>`` zsets, newest first.

Both zsets score an id by its registration time. A page reads them with ``ZREVRANGEBYSCORE``
from its cursor, ``"<score> <id>"`` of the last entry examined: the next page starts at that
score (inclusive) and skips the entries of that score it has seen (equal scores come in
reverse order of their ids), so pages neither repeat nor skip, and a new registration (a
higher score) never shifts them. Filters:

- ``task_id`` picks the task's zset: exact, nothing examined in vain;
- ``id_prefix`` is checked on the ids the range read returns anyway (no extra read);
- ``status`` has no index: a pipeline of ``HGET inv:<id> status`` per chunk of the range
  reads one short field per entry, never whole records.

Without ``status`` or ``id_prefix`` a page is two round trips (the range, the records). With
them, at most ``PAGE_SCAN_MAX`` entries are examined per page (chunks of ``CHUNK``); a page
that stops there is short, with ``scanned_all=False`` and a cursor that goes on. Records come
without history (one ``HGETALL`` each, pipelined).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from taskgate.backends import paging
from taskgate.backends.redis.records import decode_record
from taskgate.backends.redis.replies import as_text
from taskgate.record import InvocationPage, InvocationRecord
from taskgate.status import InvocationStatus

if TYPE_CHECKING:
    from taskgate.backends.redis.connection import RedisConnector

# Index entries read per range read while filtering (a pipeline of as many HGETs follows).
CHUNK = 250

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
    key = prefix + ("index" if task_id is None else "task:" + task_id)
    exact = status is None and not id_prefix
    bound = limit + 1 if exact else paging.scan_max()
    chunk = bound if exact else min(CHUNK, bound)
    entries = _entries(db, prefix, key, cursor, chunk, status is not None)
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
    db: RedisConnector, prefix: str, key: str, cursor: str | None, chunk: int, with_status: bool
) -> Iterator[_Entry]:
    """The entries of ``key`` after ``cursor``, newest first, read ``chunk`` at a time."""
    top, seen_id = "+inf", b""
    score: float | None = None
    if cursor is not None:
        score_text, _, after_id = cursor.partition(" ")
        score, seen_id = float(score_text), after_id.encode()
        top = repr(score)
    offset = 0
    while True:
        with db.translated():
            pairs = cast(
                "list[tuple[bytes, float]]",
                db.client.zrevrangebyscore(
                    key, top, "-inf", start=offset, num=chunk, withscores=True
                ),
            )
        offset += len(pairs)
        kept = [
            (member, value)
            for member, value in pairs
            # Entries of the cursor's score at or above its id came on an earlier page.
            if score is None or value != score or member < seen_id
        ]
        statuses = _statuses(db, prefix, [m for m, _ in kept]) if with_status else None
        for i, (member, value) in enumerate(kept):
            yield as_text(member), value, None if statuses is None else statuses[i]
        if len(pairs) < chunk:
            return


def _statuses(db: RedisConnector, prefix: str, members: list[bytes]) -> list[bytes | None]:
    """The status field of each record, in one round trip (None: expired since)."""
    if not members:
        return []
    with db.translated():
        pipe = db.client.pipeline(transaction=False)
        for member in members:
            pipe.hget(prefix + "inv:" + as_text(member), "status")
        replies: list[bytes | None] = pipe.execute()
    return replies


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
