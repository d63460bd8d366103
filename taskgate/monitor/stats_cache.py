"""One ``stats()`` read shared by the overview and ``/metrics``.

Both need ``Backend.stats()``, and every open tab refreshes its page every 2 seconds:
without sharing, three tabs and a Prometheus scrape make four reads where one would do. On
SQLite that read counts the app's rows (linear in the invocations stored), so it is worth
sharing. The answer is kept :data:`TTL_SECONDS`; the figures a page shows are at most that much
older than the page.

Thread safety: Starlette runs the reads in its thread pool, so :meth:`StatsCache.get` may be
called by several threads at once. One lock is held while the store is read: one read in
flight at a time, and the threads that arrive meanwhile wait for it and take its answer rather
than each starting their own. A read that raises is not kept: the error goes to its caller and
the next caller reads again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from taskgate.backends.base import Backend
from taskgate.record import BackendStats

TTL_SECONDS = 1.0


class StatsCache:
    """``backend.stats()``, read at most once per ``ttl`` seconds (see the module doc).

    Args:
        backend: The store to read.
        ttl: How long an answer is reused, in seconds (0 reads at every call).
        clock: A monotonic clock (tests replace it).
    """

    def __init__(
        self,
        backend: Backend,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._stats: BackendStats | None = None
        self._read_at = 0.0

    def get(self) -> BackendStats:
        """The store's stats, read now or at most ``ttl`` seconds ago.

        Raises:
            BackendError: the read failed (nothing is kept; the next call reads again).
        """
        with self._lock:
            # Checked under the lock: a thread that waited for another's read takes its answer.
            if self._stats is not None and self.clock() - self._read_at < self.ttl:
                return self._stats
            stats = self.backend.stats()
            self._stats, self._read_at = stats, self.clock()
            return stats
