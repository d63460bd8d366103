"""Interrupting running bodies: the registry a runner's timeouts and cancel requests go through.

Each body registers how it is interrupted while it runs (a sync body: an exception raised in
its thread; an async body: its asyncio task cancelled). A cancel request or a timeout then
names the invocation and the exception to raise; the body stops, and only then does the runner
report the outcome, so its slots are never released while it still runs (guarantee U1).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

Interrupt = Callable[[type[BaseException]], None]
"""How to interrupt one running body: raise (or deliver) the given exception type in it."""


def raise_in_thread(thread_id: int) -> Interrupt:
    """An :data:`Interrupt` that raises the exception type inside thread ``thread_id``.

    CPython delivers it the next time that thread runs Python code: a body blocked in one long
    C call (``time.sleep(600)``, a socket read without timeout) sees it when the call returns.
    """

    def interrupt(error: type[BaseException]) -> None:
        delivered = ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), ctypes.py_object(error)
        )
        if delivered > 1:  # cannot happen for a live id; undo rather than hit several threads
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)

    return interrupt


class RunningBodies:
    """The bodies of one runner that can be interrupted now, by invocation id (thread-safe).

    A request for a body that has not registered yet (its claim is on the way to the worker)
    is kept, and delivered the moment it registers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[str, Interrupt] = {}
        self._pending: dict[str, type[BaseException]] = {}

    @contextmanager
    def running(self, invocation_id: str, interrupt: Interrupt) -> Iterator[None]:
        """Register the body of ``invocation_id`` for the duration of the ``with`` block."""
        with self._lock:
            self._bodies[invocation_id] = interrupt
            pending = self._pending.pop(invocation_id, None)
        if pending is not None:
            interrupt(pending)
        try:
            yield
        finally:
            with self._lock:
                if self._bodies.get(invocation_id) is interrupt:
                    del self._bodies[invocation_id]

    def interrupt(self, invocation_id: str, error: type[BaseException]) -> bool:
        """Interrupt the body of ``invocation_id`` with ``error``; True if it was running.

        When it is not running (yet), the request is kept for :meth:`running` (see
        :meth:`forget` for claims that end without running).
        """
        with self._lock:
            interrupt = self._bodies.get(invocation_id)
            if interrupt is None:
                self._pending[invocation_id] = error
                return False
        interrupt(error)
        return True

    def forget(self, invocation_id: str) -> None:
        """Drop a kept request: the claim of ``invocation_id`` ended without running its body."""
        with self._lock:
            self._pending.pop(invocation_id, None)
