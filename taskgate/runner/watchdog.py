"""The timeout watchdog: one thread per runner that interrupts bodies at their deadline.

It sleeps on a condition until the earliest deadline of a heap (no polling), and there raises
:class:`~taskgate.errors.TaskTimeoutError` in the body through :class:`RunningBodies`
(at most once per run; a run that has ended is skipped). Arming costs one heap push; a run that
ends before its deadline leaves its entry behind until then, and the heap is compacted when most
entries are such leftovers, so it never grows with the number of runs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time

from taskgate.errors import TaskTimeoutError
from taskgate.logfields import log_fields
from taskgate.runner.interrupts import Body, RunningBodies

logger = logging.getLogger(__name__)

COMPACT_MIN = 64


class Watchdog:
    """Interrupts each armed body with ``TaskTimeoutError`` once its timeout has passed."""

    def __init__(self, bodies: RunningBodies, name: str = "taskgate-watchdog") -> None:
        self._bodies = bodies
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Body]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._compact_at = COMPACT_MIN
        self._name = name
        self._thread: threading.Thread | None = None

    def arm(self, body: Body, timeout: float) -> None:
        """Interrupt ``body`` ``timeout`` seconds from now, unless it has left by then."""
        deadline = time.monotonic() + timeout
        with self._condition:
            if self._thread is None:  # stopped: the runner is gone past its grace period
                return
            if len(self._heap) >= self._compact_at:  # amortized O(1) per arm
                self._heap = [entry for entry in self._heap if entry[2].active]
                heapq.heapify(self._heap)
                self._compact_at = max(COMPACT_MIN, 2 * len(self._heap))
            heapq.heappush(self._heap, (deadline, next(self._seq), body))
            if self._heap[0][2] is body:  # a new earliest deadline: the sleeper must know
                self._condition.notify()

    def start(self) -> None:
        """Start the thread (from the runner's thread, never a body's: see interrupts)."""
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the thread (bodies still running are no longer interrupted)."""
        with self._condition:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._condition.notify()
        if thread is not None:
            thread.join()
        with self._condition:
            self._stopping = False
            self._heap.clear()

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._stopping:
                    if not self._heap:
                        self._condition.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._condition.wait(wait)
                if self._stopping:
                    return
                _, _, body = heapq.heappop(self._heap)
            # Outside the condition: delivery takes the body's lock.
            if self._bodies.interrupt_body(body, TaskTimeoutError):
                logger.debug(  # the registry logs the interrupt, the executor the outcome
                    "invocation %s (attempt %s) ran past its timeout: TaskTimeoutError raised "
                    "in its body",
                    body.invocation_id,
                    body.attempt,
                    extra=log_fields(body.invocation_id, None, body.attempt),
                )
