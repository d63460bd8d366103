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
stand-in of its own, so nested calls N levels deep complete even with ``threads=1``. Stand-ins
that wait themselves pile up only as deep as waits nest (or as many parents as a stand-in picks
up before their children: the ready queue is first come, first served), so their total is
capped at :data:`MAX_DEPTH` per thread; a wait beyond the cap, or one that finds ``limit``
stand-ins busy, gets its stand-in once one ends (oldest wait first).

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

MAX_DEPTH = 16
"""Stand-ins per runner thread at most, waiting ones included (a cap on threads, not a goal)."""

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
        self._alive = 0  # every stand-in, waiting or not
        self._unserved: list[_Ticket] = []  # waits that found no stand-in yet, oldest first
        self._closed = False
        self._local = threading.local()
        self._threads: list[threading.Thread] = []
        self.started = 0
        """How many stand-ins were started (for tests and logs)."""
        self.peak_active = 0
        """The most stand-ins that were active (not waiting) at once."""
        self.peak_alive = 0
        """The most stand-ins that existed at once."""

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
        ticket = self._start(is_stand_in)
        try:
            yield
        finally:
            self._local.depth = depth
            with self._lock:
                if is_stand_in:
                    self._active += 1
                if ticket in self._unserved:
                    self._unserved.remove(ticket)
                stop = ticket.stop
            if stop is not None:
                stop.set()
                self._wake()

    def _start(self, is_stand_in: bool) -> _Ticket:
        """Start a stand-in for the calling thread, within the bounds; else queue the wait
        (a stand-in that ends starts one for it)."""
        ticket = _Ticket()
        with self._lock:
            if is_stand_in:
                self._active -= 1  # a waiting stand-in does not count against the bound
            thread = self._launch(ticket)
            if thread is None and not self._closed:
                self._unserved.append(ticket)
        if thread is not None:
            thread.start()
        return ticket

    def _launch(self, ticket: _Ticket) -> threading.Thread | None:
        """A stand-in thread (not started) serving ``ticket``, if the bounds allow (lock held)."""
        if self._closed or self._active >= self._limit:
            logger.debug("no stand-in for a waiting body yet: %s run work", self._active)
            return None
        if self._alive >= self._limit * MAX_DEPTH:
            logger.warning(
                "no stand-in for a waiting body yet: %s stand-ins exist already, most of them "
                "waiting themselves (waits nested too deep, or many parents waiting on "
                "children queued behind them)",
                self._alive,
            )
            return None
        self._active += 1
        self._alive += 1
        self.peak_active = max(self.peak_active, self._active)
        self.peak_alive = max(self.peak_alive, self._alive)
        self.started += 1
        ticket.stop = stop = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(stop,), name=f"taskgate-standin-{self.started}", daemon=True
        )
        self._threads.append(thread)
        return thread

    def _run(self, stop: threading.Event) -> None:
        self._local.stand_in = True
        try:
            self._loop(stop)
        finally:
            # Capacity freed: a wait that found none gets its stand-in now. Started from this
            # thread, which runs no body any more (so no interrupt can be aimed at it).
            thread = None
            with self._lock:
                self._active -= 1
                self._alive -= 1
                if self._unserved:
                    thread = self._launch(self._unserved[0])
                    if thread is not None:
                        self._unserved.pop(0)
            if thread is not None:
                thread.start()


class _Ticket:
    """One waiting thread's claim to a stand-in: ``stop`` is set once one serves it."""

    __slots__ = ("stop",)

    def __init__(self) -> None:
        self.stop: threading.Event | None = None
