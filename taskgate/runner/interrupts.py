"""Interrupting running bodies: the registry a runner's timeouts and cancel requests go through.

Each body registers how it is interrupted while it runs (a sync body: an exception raised in
its thread; an async body: its asyncio task cancelled). A cancel request or a timeout then
names the invocation and the exception to raise; the body stops, and only then does the runner
report the outcome, so its slots are never released while it still runs (guarantee U1).

Asynchronous exceptions in a thread (``PyThreadState_SetAsyncExc``) have a classic hazard: one
set just as the body returns is raised later, in whatever the thread runs next (the runner's
own loop), and would kill the worker or leave its state half-updated. A :class:`Body` closes
that window:

- an exception is delivered at most once per body, under the body's own lock, and only while
  the body is *active* (between :meth:`RunningBodies.enter` and :meth:`RunningBodies.leave`);
- :meth:`RunningBodies.leave` clears the flag under the same lock and, if an exception was
  delivered, cancels it should it still be pending (``PyThreadState_SetAsyncExc(own, NULL)``);
  once ``leave`` has returned, nothing can be raised in the thread any more;
- the delivered exception may still fire inside ``leave`` itself (or just before it): the
  caller retries ``leave`` until it returns (as :func:`taskgate.runner.executor.execute`
  does), and treats the exception as the body's wherever it fired; :attr:`Body.delivered`
  decides the outcome.

The other hazard is an exception raised inside library code not written for it: a lock
acquired and not yet guarded by its ``try``, a database transaction half done. taskgate's own
calls from a body (task calls, result waits, reads, cancel) are *shielded*
(:func:`taskgate.context.shielding`): an interrupt that comes while the body is inside one is
deferred and raised, synchronously, when the call returns; one sent just before the call began
and not raised yet is raised at its start instead (a body's waits block at most
:data:`taskgate.context.WAIT_SLICE_SECONDS` at a time, so a waiting body sees it promptly).
Other libraries the body calls get no such protection.

CPython 3.11 gives a thread state being created the id of the thread creating it, for a moment:
an interrupt aimed at a body that is starting a thread may land in the new thread. taskgate
starts its own threads from runner threads, or shielded (stand-ins); a body that starts threads
of its own while it may be interrupted runs that (small) risk.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from taskgate.logfields import log_fields

logger = logging.getLogger(__name__)

# A cancel request for a body that has not started is kept this long at most (seconds), and
# the kept ones are swept once there are this many.
PENDING_SECONDS = 300.0
PENDING_SWEEP_AT = 64

Interrupt = Callable[[type[BaseException]], None]
"""How to interrupt one running body: raise (or deliver) the given exception type in it."""


class InterruptListener(Protocol):
    """Told when a body is interrupted and when an interrupted body stopped (a supervisor)."""

    def body_interrupted(
        self, invocation_id: str, attempt: int, error: type[BaseException]
    ) -> None:
        """``error`` is being delivered to the body running ``attempt`` of ``invocation_id``."""

    def body_stopped(self, invocation_id: str, attempt: int) -> None:
        """The interrupted body of ``attempt`` of ``invocation_id`` has stopped."""


_deliverable: dict[type[BaseException], type[BaseException]] = {}


class _Local(threading.local):
    body: Body | None = None
    """The Body active on this thread, if any."""


_local = _Local()


def deliverable(error: type[BaseException]) -> type[BaseException]:
    """A subclass of ``error`` that CPython can instantiate with no arguments.

    An asynchronous exception is raised by calling its type without arguments;
    ``InvocationCancelledError`` needs an id. The body catches it as ``error`` all the same;
    the runner stores a proper ``error`` instance as the outcome, never this one.
    """

    known = _deliverable.get(error)
    if known is not None:
        return known

    def init(self: BaseException, *args: object) -> None:
        BaseException.__init__(self, *(args or (f"the run was interrupted ({error.__name__})",)))
        # CPython builds an asynchronous exception when it is raised: the body has seen it.
        body = _local.body
        if body is not None:
            body.has_fired = True

    made = type(error.__name__, (error,), {"__init__": init, "__module__": __name__})
    return _deliverable.setdefault(error, made)


def raise_in_thread(thread_id: int) -> Interrupt:
    """An :data:`Interrupt` that raises the exception type inside thread ``thread_id``.

    CPython delivers it the next time that thread runs Python code: a body blocked in one long
    C call (``time.sleep(600)``, a socket read without timeout) sees it when the call returns.
    (Thread bodies of :class:`RunningBodies` do the same without building this closure.)
    """

    def interrupt(error: type[BaseException]) -> None:
        _raise_in_thread(thread_id, error)

    return interrupt


def _raise_in_thread(thread_id: int, error: type[BaseException]) -> None:
    delivered = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(deliverable(error))
    )
    if delivered > 1:  # cannot happen for a live id; undo rather than hit several threads
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


def _clear_pending(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


class Body:
    """One run of one body, as the registry sees it (state changes under its own ``lock`` once
    other threads can see it: :meth:`RunningBodies.enter` publishes it).

    The lock is the body's, not the registry's: runner threads entering and leaving bodies
    never contend for one lock (under the GIL, eight workers sharing a hot lock fall into a
    convoy that cuts their throughput several times over for whole seconds).
    """

    __slots__ = (
        "_interrupt",
        "active",
        "attempt",
        "deferred",
        "delivered",
        "has_fired",
        "invocation_id",
        "lock",
        "shield_depth",
        "thread_id",
        "told_stopped",
    )

    def __init__(
        self, invocation_id: str, attempt: int, interrupt: Interrupt | None, thread_id: int | None
    ) -> None:
        self.invocation_id = invocation_id
        self.attempt = attempt
        self._interrupt = interrupt
        """How to interrupt it; None for a thread body: an exception raised in ``thread_id``."""
        self.thread_id = thread_id
        """The thread an asynchronous exception was aimed at (None: not a thread body)."""
        self.active = False
        self.delivered: type[BaseException] | None = None
        """The exception type delivered to the body (at most one), else None."""
        self.told_stopped = False
        self.shield_depth = 0  # inside taskgate's own calls: interrupts wait (see the module doc)
        self.deferred = False  # delivered while shielded: to raise when the shield ends
        self.has_fired = False  # the exception was raised in the thread (set by its __init__)
        self.lock = threading.Lock()

    def fired(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the exception delivered to this body."""
        return self.delivered is not None and isinstance(exc, self.delivered)


class RunningBodies:
    """The bodies of one runner that can be interrupted now, by invocation id (thread-safe).

    A request for a body that has not registered yet (its claim is on the way to the worker)
    is kept, and delivered the moment it registers.
    """

    def __init__(self, listener: InterruptListener | None = None) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[str, Body] = {}
        # Requests kept for bodies not started yet, with when they came (monotonic seconds).
        self._pending: dict[str, tuple[type[BaseException], float]] = {}
        self.listener = listener

    def thread_body(self, invocation_id: str, attempt: int) -> Body:
        """A body for the calling thread, not active yet (:meth:`enter` it in the ``try``)."""
        return Body(invocation_id, attempt, None, threading.get_ident())

    def enter(self, body: Body) -> None:
        """Make ``body`` interruptible; a request kept for its invocation is delivered now.

        Active first, findable second: a request that finds the body can deliver to it. A
        request kept before the body was findable is taken here; one kept after it looks again
        (see :meth:`interrupt`), so none is missed (and none delivered twice: at most once).
        ``body`` must be new (from :meth:`thread_body`, or :meth:`running`'s): until this
        publishes it, no other thread can see it, so marking it active needs no lock.
        """
        if body.thread_id is not None:
            _local.body = body
        body.active = True  # not findable, not armed yet: this thread's alone (see above)
        self._bodies[body.invocation_id] = body  # one dict step: atomic, and publishes it
        if self._pending:
            with self._lock:
                kept = self._pending.pop(body.invocation_id, None)
            if kept is not None:
                self.interrupt_body(body, kept[0])

    def leave(self, body: Body) -> None:
        """Make ``body`` uninterruptible for good; idempotent.

        When it returns, no exception delivered to the body can be raised any more. The
        delivered exception may fire inside this call: retry it until it returns (as
        :mod:`taskgate.runner.executor` does), treating that exception as the body's.
        """
        with body.lock:
            delivered = body.delivered
            if body.active:
                body.active = False
                if delivered is not None and body.thread_id == threading.get_ident():
                    _clear_pending(body.thread_id)
            # Decided under the lock: this section may be cut short by the delivered exception
            # (then retried), but nothing can fire after it.
            tell = False
            if delivered is not None and not body.told_stopped:
                tell = body.told_stopped = True
        bodies = self._bodies
        other = bodies.pop(body.invocation_id, None)
        if other is not None and other is not body:  # another run's entry: put it back
            bodies.setdefault(body.invocation_id, other)
        if _local.body is body:
            _local.body = None
        if tell and self.listener is not None:
            self.listener.body_stopped(body.invocation_id, body.attempt)

    def shield(self) -> Shield:
        """A context manager that defers interrupts of this thread's body while it lasts."""
        return Shield(self)

    def _shield_enter(self) -> Body | None:
        body = _local.body
        if body is None:
            return None
        with body.lock:
            if not body.active:
                return None
            sent = body.delivered is not None and not body.deferred
            if not (sent and not body.has_fired):
                body.shield_depth += 1
                return body
            # Sent a moment ago and not raised yet: raise it here, before any of taskgate's own
            # code runs, rather than somewhere inside it.
            assert body.thread_id is not None and body.delivered is not None
            _clear_pending(body.thread_id)
            error = body.delivered
        raise deliverable(error)()

    def _shield_exit(self, body: Body) -> None:
        with body.lock:
            body.shield_depth -= 1
            due = body.deferred and body.shield_depth == 0 and body.active
            if due:
                body.deferred = False
            error = body.delivered
        if due:
            assert error is not None
            raise deliverable(error)()

    @contextmanager
    def running(self, invocation_id: str, interrupt: Interrupt, attempt: int = 0) -> Iterator[Body]:
        """Register a body interrupted by ``interrupt`` (an async body's) for the ``with`` block.

        Not for thread bodies, which need :meth:`enter` and a retried :meth:`leave`.
        """
        body = Body(invocation_id, attempt, interrupt, None)
        self.enter(body)
        try:
            yield body
        finally:
            self.leave(body)

    def interrupt(self, invocation_id: str, error: type[BaseException]) -> bool:
        """Interrupt the body of ``invocation_id`` with ``error``; True if it was running.

        When it is not running (yet), the request is kept for :meth:`enter` (see :meth:`forget`
        for claims that end without running). A body is interrupted at most once.
        """
        body = self._bodies.get(invocation_id)
        if body is None:
            with self._lock:
                self._keep(invocation_id, error, time.monotonic())
            body = self._bodies.get(invocation_id)  # it entered meanwhile: deliver it here
            if body is None:
                return False
            with self._lock:
                self._pending.pop(invocation_id, None)
        self.interrupt_body(body, error)
        return True

    def interrupt_body(self, body: Body, error: type[BaseException]) -> bool:
        """Interrupt this very run (a timeout's), if it is still active; True if delivered."""
        with body.lock:
            delivered = self._deliver(body, error)
        if delivered:
            _log_delivered(body, error)
        return delivered

    def _keep(self, invocation_id: str, error: type[BaseException], now: float) -> None:
        """Keep a request for a body not started yet (the registry's lock is held).

        A request whose body never comes (it ended just before the request was read) is
        dropped after :data:`PENDING_SECONDS`, so late requests cannot pile up."""
        if len(self._pending) >= PENDING_SWEEP_AT:
            cutoff = now - PENDING_SECONDS
            for stale in [i for i, (_, since) in self._pending.items() if since < cutoff]:
                del self._pending[stale]
        self._pending[invocation_id] = (error, now)

    def forget(self, invocation_id: str) -> None:
        """Drop a kept request: the claim of ``invocation_id`` ended without running its body."""
        # Unlocked first look: a request that comes after it comes after this call anyway.
        if self._pending:
            with self._lock:
                self._pending.pop(invocation_id, None)

    def _deliver(self, body: Body, error: type[BaseException]) -> bool:
        """Deliver ``error`` to an active body not interrupted yet (``body.lock`` is held).

        Nothing here logs: a body interrupted inside a logging handler may leave that
        handler's lock held, and a logging call made under this lock would then block the
        body's leave. Callers log with :func:`_log_delivered` once the lock is free.

        The listener hears of it first: once delivered, the body may stop (and tell
        :meth:`leave`'s ``body_stopped``) before this thread runs again.
        """
        if not body.active or body.delivered is not None:
            return False
        body.delivered = error
        body.deferred = body.shield_depth > 0
        if self.listener is not None:
            self.listener.body_interrupted(body.invocation_id, body.attempt, error)
        if not body.deferred:
            if body._interrupt is not None:
                body._interrupt(error)
            else:
                assert body.thread_id is not None, "a body without an interrupt is a thread's"
                _raise_in_thread(body.thread_id, error)
        return True


def _log_delivered(body: Body, error: type[BaseException]) -> None:
    logger.info(
        "invocation %s interrupted with %s (attempt %s)",
        body.invocation_id,
        error.__name__,
        body.attempt,
        extra=log_fields(body.invocation_id, None, body.attempt),
    )


class Shield:
    """Defers interrupts of the calling thread's body for the ``with`` block (re-entrant)."""

    __slots__ = ("_bodies", "_body")

    def __init__(self, bodies: RunningBodies) -> None:
        self._bodies = bodies
        self._body: Body | None = None

    def __enter__(self) -> None:
        self._body = self._bodies._shield_enter()

    def __exit__(self, *exc_info: object) -> None:
        if self._body is not None:
            self._bodies._shield_exit(self._body)
