"""Reads of the Redis backend: records, listings, pages, runners, stats, limits' overrides and
budgets' usage. None changes the store (a read of a record never takes its lease or its
slots); each is one round trip, or one per page of :data:`LIST_PAGE` records."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from taskgate.backends.described import read_descriptions
from taskgate.backends.redis import pages
from taskgate.backends.redis.connection import RedisConnector
from taskgate.backends.redis.records import (
    FINAL_STATUSES,
    decode_override,
    decode_record,
    decode_usage,
)
from taskgate.backends.redis.replies import as_text, field_pairs
from taskgate.backends.redis.stats import read_stats
from taskgate.record import (
    BackendStats,
    BlockedBy,
    BudgetUsage,
    FinalOutcome,
    InvocationPage,
    InvocationRecord,
    LimitOverride,
    RunnerInfo,
)
from taskgate.status import InvocationStatus

LIST_PAGE = 200
# Keys SCAN looks at per round trip when finding ids by prefix.
SCAN_COUNT = 1000
# Characters of a Redis glob pattern that must be escaped to match themselves.
_GLOB_SPECIAL = re.compile(r"[\\*?\[\]]")


class RedisReads:
    """Backend reads on ``_db`` under key prefix ``_prefix`` (set by :class:`RedisBackend`)."""

    _db: RedisConnector
    _prefix: str
    _run: Callable[..., Any]
    _command: Callable[..., Any]

    def get(self, invocation_id: str) -> InvocationRecord | None:
        return self._records([invocation_id], history=True)[0]

    def blocked_by(self, invocation_id: str) -> BlockedBy | None:
        reply = self._run("blocked_by", invocation_id)
        if not reply:
            return None
        ready_at = float(reply[1]) if reply[1] else None
        return BlockedBy(as_text(reply[0]), tuple(as_text(item) for item in reply[2:]), ready_at)

    def list_invocations(
        self, task_id: str | None, status: InvocationStatus | None, limit: int
    ) -> list[InvocationRecord]:
        entries = pages.newest_first(
            self._db, pages.index_keys(self._db, self._prefix, task_id), None, LIST_PAGE, False
        )
        found: list[InvocationRecord] = []
        while len(found) < limit:
            ids = [entry[0] for entry in itertools.islice(entries, LIST_PAGE)]
            if not ids:
                break
            for record in self._records(ids, history=True):
                # None: expired between the index read and this one.
                if record is not None and (status is None or record.status is status):
                    found.append(record)
        return found[:limit]

    def find_ids(self, prefix: str, limit: int) -> list[str]:
        # The records' keys, matched by the server (the task indexes are streams, which no
        # command filters by member): a SCAN walks the database's whole keyspace, SCAN_COUNT
        # keys a round trip, and may return a key twice.
        records = self._prefix + "inv:"
        pattern = _GLOB_SPECIAL.sub(r"\\\g<0>", records + prefix) + "*"
        found: set[str] = set()
        cursor = 0
        while True:
            cursor, keys = self._command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            found.update(as_text(key)[len(records) :] for key in keys)
            cursor = int(cursor)
            if cursor == 0:
                break
        return sorted(found)[:limit]

    def page_invocations(
        self,
        *,
        task_id: str | None = None,
        status: InvocationStatus | None = None,
        id_prefix: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> InvocationPage:
        return pages.page(
            self._db,
            self._prefix,
            task_id=task_id,
            status=status,
            id_prefix=id_prefix,
            limit=limit,
            cursor=cursor,
        )

    def runner_infos(self) -> list[RunnerInfo]:
        described = read_descriptions(text for text in self._run("runner_infos") if text)
        return sorted(described, key=lambda info: info.runner_id)

    def stats(self) -> BackendStats:
        return read_stats(self._db, self._prefix)

    def limit_overrides(self) -> dict[str, LimitOverride]:
        stored = field_pairs(self._command("HGETALL", self._prefix + "overrides"))
        return {as_text(name): decode_override(as_text(text)) for name, text in stored.items()}

    def budget_usage(self, limit: str | None = None) -> list[BudgetUsage]:
        reply = self._run("budget_usage", *(() if limit is None else (limit,)))
        return sorted((decode_usage(entry) for entry in reply), key=lambda usage: usage.key)

    def get_many(self, invocation_ids: Sequence[str]) -> list[InvocationRecord | None]:
        return self._records(invocation_ids, history=False)

    def final_outcomes(self, invocation_ids: Sequence[str]) -> dict[str, FinalOutcome]:
        # Plain HMGETs of the three fields an outcome needs, in one round trip per page, the
        # statuses checked here: no script, and no field the caller would not read (a finished
        # record holds about ten; a read-ahead meets final records far more often than others).
        found: dict[str, FinalOutcome] = {}
        replies = self._per_record(invocation_ids, "HMGET", "s", "result", "error")
        for invocation_id, (status, result, error) in zip(invocation_ids, replies, strict=True):
            final = FINAL_STATUSES.get(status)  # None: missing, or not final yet
            if final is not None:
                found[invocation_id] = FinalOutcome(final, result or None, error or None)
        return found

    def _records(self, ids: Sequence[str], *, history: bool) -> list[InvocationRecord | None]:
        """The records of ``ids`` (None for missing ones), with history?, in one round trip per
        page of ``LIST_PAGE``."""
        return [
            decode_record(invocation_id, field_pairs(fields), history=history) if fields else None
            for invocation_id, fields in zip(ids, self._per_record(ids, "HGETALL"), strict=True)
        ]

    def _per_record(self, ids: Sequence[str], command: str, *args: str) -> list[Any]:
        """The replies of ``command inv:<id> *args`` for each of ``ids``, in order: one round
        trip per page of ``LIST_PAGE``."""
        key = self._prefix + "inv:"
        replies: list[Any] = []
        for start in range(0, len(ids), LIST_PAGE):
            page = ids[start : start + LIST_PAGE]
            replies.extend(self._db.commands([(command, key + i, *args) for i in page]))
        return replies
