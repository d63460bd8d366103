"""Stand-ins: a runner thread whose body waits for another invocation is replaced meanwhile.

A body that blocks on another invocation's result (``invocation.result``,
``get_result``, ``group.results``) holds its runner thread; with ``threads=1`` the invocation it
waits for would never run on that runner. While such a wait lasts, the runner starts a
*stand-in* thread, which takes turns at the same :class:`~taskgate.runner.gate.ClaimGate` as the
workers and runs other work; once the wait ends, the stand-in stops after its current
invocation (one it is waiting for a turn or a claim for is not started).

Bounds: each waiting thread gets at most one stand-in, and at most ``limit`` (the runner's
``threads``) stand-ins that are not themselves waiting exist at once: the runner never runs more
than about ``threads`` bodies that are not waiting. A stand-in whose own body waits gets a
stand-in of its own, so nested calls N levels deep complete even with ``threads=1``. A wait
that finds ``limit`` stand-ins busy just waits (the work it waits for runs once a thread frees).

The waiting invocation keeps its own slots (running key, limits) while it waits: a child that
needs one of its parent's slots waits for the parent, which waits for the child (a deadlock
the body must avoid, as with any lock it holds while waiting).

The hook is :func:`taskgate.context.blocking_wait`: threads of other code pay one thread-local
read per wait, and nothing else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

StandInLoop = Callable[[threading.Event], None]
"""Runs a stand-in on the current thread until the event is set (then after its current run)."""


class StandIns:
    """Starts and stops one runner's stand-in threads (thread-safe)."""

    def __init__(self, limit: int, loop: StandInLoop, wake: Callable[[], None]) -> None:
        self._limit = limit
        self._loop = loop
        self._wake = wake  # wakes stand-ins waiting for a turn, so a stopped one leaves
        self._lock = threading.Lock()
        self._active = 0  # stand-ins not waiting themselves
        self._closed = False
        self._local = threading.local()
        self._threads: list[threading.Thread] = []
        self.started = 0
        """How many stand-ins were started (for tests and logs)."""
        self.peak_active = 0
        """The most stand-ins that were active (not waiting) at once."""

    @property
    def active(self) -> int:
        return self._active

    def close(self) -> None:
        """Start no more stand-ins (the runner is stopping; its gate is closing)."""
        with self._lock:
            self._closed = True

    def threads(self) -> list[threading.Thread]:
        """The stand-in threads still alive."""
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return list(self._threads)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """The wait hook: the calling runner thread blocks for the ``with`` block."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        if depth:  # a wait inside a wait (a group's results): the first one covers it
            try:
                yield
            finally:
                self._local.depth = depth
            return
        is_stand_in = getattr(self._local, "stand_in", False)
        stop = self._start(is_stand_in)
        try:
            yield
        finally:
            self._local.depth = depth
            with self._lock:
                if is_stand_in:
                    self._active += 1
            if stop is not None:
                stop.set()
                self._wake()

    def _start(self, is_stand_in: bool) -> threading.Event | None:
        """Start a stand-in for the calling thread, within the bound; its stop event."""
        with self._lock:
            if is_stand_in:
                self._active -= 1  # a waiting stand-in does not count against the bound
            if self._closed or self._active >= self._limit:
                logger.debug("no stand-in for a waiting body: %s already run", self._active)
                return None
            self._active += 1
            self.peak_active = max(self.peak_active, self._active)
            self.started += 1
            stop = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(stop,), name=f"taskgate-standin-{self.started}", daemon=True
            )
            self._threads.append(thread)
        thread.start()
        return stop

    def _run(self, stop: threading.Event) -> None:
        self._local.stand_in = True
        try:
            self._loop(stop)
        finally:
            with self._lock:
                self._active -= 1
