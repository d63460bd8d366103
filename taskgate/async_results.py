"""``await invocation.async_result()``: waiting for a result without blocking the event loop.

Backends wait for results with blocking calls (a condition, a socket read). The wait therefore
runs on a thread of a dedicated pool, never on the loop's default executor: that one has
``min(32, CPUs + 4)`` threads, and many async tasks of a runner awaiting children at once would
queue up behind it (nested waits of a depth beyond its size would deadlock). The pool's threads
are started on demand, up to :data:`MAX_WAITER_THREADS` (each blocked wait holds one); idle
ones are reused.

Each wait is cut into steps of at most :data:`WAIT_STEP_SECONDS`: an awaiting coroutine that is
cancelled (a timeout, a cancel request, the runner stopping) frees its thread within one step,
instead of leaving it blocked until the result comes. A result already known (read ahead, or
final before) is returned without any thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from taskgate.errors import ResultTimeoutError

if TYPE_CHECKING:
    from taskgate.invocation import Invocation

R = TypeVar("R")

MAX_WAITER_THREADS = 512
"""Result waits blocked at once per process; more await a free thread (no deadlock unless
that many nested waits form one chain)."""

WAIT_STEP_SECONDS = 2.0

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _waiters() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_WAITER_THREADS, thread_name_prefix="taskgate-result")
        return _pool


async def wait_result(invocation: Invocation[R], timeout: float | None) -> R:
    """:meth:`Invocation.get_result` for asyncio callers; raises as that does.

    Raises:
        ResultTimeoutError: ``timeout`` seconds passed first (the invocation is untouched).
    """
    final = invocation._final
    if final is not None:
        return invocation._outcome(final)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = WAIT_STEP_SECONDS if remaining is None else min(WAIT_STEP_SECONDS, remaining)
        try:
            return await loop.run_in_executor(_waiters(), invocation.get_result, step)
        except ResultTimeoutError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeoutError(
                    invocation.invocation_id, timeout or 0.0, exc.status
                ) from None
