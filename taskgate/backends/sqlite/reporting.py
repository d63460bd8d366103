"""The read-only operations of the SQLite backend, each one read transaction (a consistent
snapshot, no write lock): records, pages and listings, reports of the monitor and of limits."""

from __future__ import annotations

import time
from collections.abc import Sequence

from taskgate.backends.sqlite import budget_queries as bq
from taskgate.backends.sqlite import descriptions, newest, pages, reads
from taskgate.backends.sqlite import queries as q
from taskgate.backends.sqlite.connection import SqliteConnector
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


class SqliteReads:
    """Backend reads on ``_db`` for app ``_app`` (set by :class:`SqliteBackend`)."""

    _db: SqliteConnector
    _app: str

    def get(self, invocation_id: str) -> InvocationRecord | None:
        return self._db.read(lambda conn: q.load_record(conn, self._app, invocation_id))

    def get_many(self, invocation_ids: Sequence[str]) -> list[InvocationRecord | None]:
        found = self._db.read(lambda conn: reads.records_by_id(conn, self._app, invocation_ids))
        return [found.get(invocation_id) for invocation_id in invocation_ids]

    def final_outcomes(self, invocation_ids: Sequence[str]) -> dict[str, FinalOutcome]:
        # Three columns of the rows, not whole records (a read-ahead reads many).
        return self._db.read(lambda conn: reads.final_outcomes(conn, self._app, invocation_ids))

    def blocked_by(self, invocation_id: str) -> BlockedBy | None:
        return self._db.read(lambda conn: reads.blocked_by(conn, self._app, invocation_id))

    def list_invocations(
        self, task_id: str | None, status: InvocationStatus | None, limit: int
    ) -> list[InvocationRecord]:
        app = self._app
        return self._db.read(lambda conn: newest.list_records(conn, app, task_id, status, limit))

    def find_ids(self, prefix: str, limit: int) -> list[str]:
        return self._db.read(lambda conn: q.find_ids(conn, self._app, prefix, limit))

    def page_invocations(
        self,
        *,
        task_id: str | None = None,
        status: InvocationStatus | None = None,
        id_prefix: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> InvocationPage:
        return self._db.read(
            lambda conn: pages.page(conn, self._app, task_id, status, id_prefix, limit, cursor)
        )

    def runner_infos(self) -> list[RunnerInfo]:
        return self._db.read(lambda conn: descriptions.live(conn, self._app, time.time()))

    def stats(self) -> BackendStats:
        return self._db.read(lambda conn: reads.stats(conn, self._app, time.time()))

    def parked_counts(self) -> dict[str, int]:
        return self._db.read(lambda conn: reads.parked_counts(conn, self._app))

    def limit_overrides(self) -> dict[str, LimitOverride]:
        return self._db.read(lambda conn: bq.load_overrides(conn, self._app))

    def budget_usage(self, limit: str | None = None) -> list[BudgetUsage]:
        return self._db.read(lambda conn: bq.budget_usage(conn, self._app, limit, time.time()))
