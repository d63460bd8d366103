"""The reads of a backend that tools make: the CLI, the monitor, metrics, scripts.

None is on a runner's path and none takes part in the atomic contract of
:mod:`taskgate.backends.base` (whose :class:`~taskgate.backends.base.Backend` inherits them):
each is a read whose cost stays bounded however many invocations the store holds, except
where its docstring says otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from taskgate.record import (
    BackendStats,
    BlockedBy,
    InvocationPage,
    InvocationRecord,
    RunnerInfo,
)
from taskgate.status import InvocationStatus


class ToolReads(ABC):
    """What the CLI and the monitor read (and what runners announce for them to read)."""

    @abstractmethod
    def blocked_by(self, invocation_id: str) -> BlockedBy | None:
        """For a ``CONCURRENCY_CONTROLLED`` invocation: the running key or budget it waits on,
        that key's slot holders, and (a rate block) when the rate next admits it."""

    @abstractmethod
    def list_invocations(
        self, task_id: str | None, status: InvocationStatus | None, limit: int
    ) -> list[InvocationRecord]:
        """Up to ``limit`` invocations, newest first, optionally filtered."""

    @abstractmethod
    def find_ids(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of this app's invocations that start with ``prefix``, sorted.

        A read (what ``taskgate inspect`` needs to accept a short id). ``prefix`` is literal:
        wildcard characters of the store (``*``, ``%``, ``_``...) match only themselves. Scans
        on stores without an ordered index of ids (Redis: the database's whole keyspace, every
        app's keys): for tools, not the hot path.
        """

    @abstractmethod
    def page_invocations(
        self,
        *,
        task_id: str | None = None,
        status: InvocationStatus | None = None,
        id_prefix: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> InvocationPage:
        """One page of this app's invocations, newest first, for the monitor and scripts.

        Filters combine (``id_prefix`` is literal, as in :meth:`find_ids`). ``cursor`` is the
        ``next_cursor`` of the previous page (opaque, store-specific); None starts at the
        newest. A read that stays fast however many invocations the store holds: it never
        loads more than ``limit`` records, and on a store that cannot filter by an index (Redis
        by status) it examines at most :data:`~taskgate.backends.base.PAGE_SCAN_MAX` index
        entries, returning a short page with ``scanned_all=False`` and a cursor to go on.
        Records come without history.

        Raises:
            InvalidCursorError: ``cursor`` is not a ``next_cursor`` this backend returned.
        """

    @abstractmethod
    def announce_runner(self, info: RunnerInfo, ttl_seconds: float) -> None:
        """Store ``info`` as runner ``info.runner_id``'s description, replacing the last one,
        kept until ``ttl_seconds`` from now (runners announce with every heartbeat, so a dead
        runner's description disappears on its own). One write; never on a hot path."""

    @abstractmethod
    def runner_infos(self) -> list[RunnerInfo]:
        """The descriptions of every runner whose last announcement has not expired, sorted by
        runner id. A read of at most one small record per live runner. A description that
        cannot be read is skipped and logged (:mod:`taskgate.backends.described`), never raised:
        one bad runner must not hide the others."""

    @abstractmethod
    def stats(self) -> BackendStats:
        """Counts by task and status, parked invocations per key (running keys and budget keys
        alike), live runners, ready invocations per queue, last periodic tick per task."""

    def parked_counts(self) -> dict[str, int]:
        """``stats().parked_by_key`` alone: parked invocations per key (running keys and budget
        keys alike). A read for the monitor's limits page; backends whose counts by task and
        status cost a scan (SQLite) answer it without them."""
        return self.stats().parked_by_key
