"""The async invocations of one runner: one event loop on its own thread, shared by them all.

A worker thread that claims an ``async def`` invocation hands it to :class:`AsyncInvocations`
and goes back to claiming: many async invocations then await side by side on one loop, and
none holds a worker thread while it waits. The loop thread starts at the first async claim (a
runner without async tasks never has one). At most ``async_in_flight`` of them are in flight
(claimed and not yet reported) per runner: at the cap, the worker that submitted one waits for
one to end before it claims again, so a runner never holds leases on more work than it runs.

Outcomes are reported by a reporter thread once the body has stopped (the backend call blocks;
the loop never does). The runner tracks async claims like thread claims (its heartbeat renews
their leases); on stop it waits for them within the grace period, then :meth:`abandon` cancels
the rest, whose outcomes are then never reported, and the runner hands them back.

An async body shares the loop with every other async invocation of its runner: it must not
block it (``time.sleep``, blocking I/O, ``invocation.result`` of another invocation; await
``asyncio.sleep``, ``asyncio.to_thread(...)`` and ``await invocation.async_result()`` instead).
A body that blocks holds up the others (and cannot be interrupted until it awaits again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from taskgate.errors import TaskgateError
from taskgate.logfields import claim_fields
from taskgate.record import Claim, Outcome, OutcomeKind
from taskgate.runner.async_exec import execute_async

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.runner.interrupts import RunningBodies
    from taskgate.runner.metrics import Accumulator, RunMetrics

logger = logging.getLogger(__name__)

Report = Callable[[Claim, Outcome], None]
"""Hands one outcome to the backend (blocking; retries while the backend is away)."""


class AsyncInvocations:
    """Runs claimed ``async def`` invocations on one event loop thread (thread-safe).

    Args:
        app: The app the claims belong to.
        runner_id: For thread names and log lines.
        report: Called on the reporter thread with each run's outcome.
        cap: How many may be in flight at once (setting ``async_in_flight``).
        bodies: Where each body registers while it runs, to be interruptible.
        metrics: Where runs are counted (the loop thread's accumulator) and shown running.
    """

    def __init__(
        self,
        app: App,
        runner_id: str,
        report: Report,
        cap: int,
        bodies: RunningBodies | None = None,
        metrics: RunMetrics | None = None,
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._runner_id = runner_id
        self._report = report
        self._cap = cap
        self._bodies = bodies
        self._lock = threading.Condition()
        self._in_flight: set[tuple[str, int]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._reports: queue.SimpleQueue[tuple[Claim, Outcome] | None] = queue.SimpleQueue()
        self._reporter: threading.Thread | None = None
        self._counts: Accumulator | None = None  # the loop thread's (see _serve)

    def takes(self, claim: Claim) -> bool:
        """Whether ``claim`` is an async invocation (then run it here; the caller runs the rest).

        A task that cannot be resolved is not taken: the sync executor fails it as usual.
        """
        try:
            return self._app._resolve_task(claim.task_id).is_async
        except TaskgateError:
            return False

    def submit(self, claim: Claim) -> None:
        """Start awaiting ``claim`` on the loop; returns at once (see :meth:`wait_for_room`)."""
        loop = self._ensure_started()
        with self._lock:
            self._in_flight.add((claim.invocation_id, claim.attempt))
        asyncio.run_coroutine_threadsafe(self._run(claim), loop)

    def wait_for_room(self, stopping: threading.Event) -> None:
        """Block while ``cap`` invocations are in flight (until one ends, or ``stopping``
        is set and :meth:`wake` called)."""
        with self._lock:
            while len(self._in_flight) >= self._cap and not stopping.is_set():
                self._lock.wait()

    def wake(self) -> None:
        """Make :meth:`wait_for_room` look at its ``stopping`` event again (a stop request)."""
        with self._lock:
            self._lock.notify_all()

    @property
    def in_flight(self) -> int:
        """Async invocations submitted and not yet reported (or abandoned)."""
        with self._lock:
            return len(self._in_flight)

    def wait_idle(self, deadline: float) -> bool:
        """Wait until none is in flight or monotonic ``deadline``; True when none is left."""
        with self._lock:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True

    def running(self) -> set[tuple[str, int]]:
        """The ``(invocation_id, attempt)`` claims submitted and not reported (or ended by
        :meth:`abandon`) yet."""
        with self._lock:
            return set(self._in_flight)

    def abandon(self) -> None:
        """Cancel every run still in flight; a cancelled run never reports.

        What a stopping runner does once its grace period is over. The cancellation reaches the
        bodies on the loop a moment later: the runner waits for them (:meth:`wait_idle`) and
        hands back only what is no longer :meth:`running`, never a body that still runs.
        """
        with self._lock:
            loop = self._loop
            left = len(self._in_flight)
        if loop is not None and left:
            logger.warning(
                "runner %s cancelling %s async invocation(s) still running at the end of the "
                "grace period; they are handed back",
                self._runner_id,
                left,
            )
            with contextlib.suppress(RuntimeError):  # the loop already stopped
                loop.call_soon_threadsafe(_cancel_all, loop)

    def close(self) -> None:
        """Stop the loop thread and the reporter thread (after :meth:`abandon` or when idle)."""
        with self._lock:
            loop, thread, reporter = self._loop, self._loop_thread, self._reporter
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join()
        if reporter is not None:
            self._reports.put(None)
            reporter.join()

    # --- inside -------------------------------------------------------------------------------

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._loop = loop
                self._loop_thread = threading.Thread(
                    target=self._serve,
                    args=(loop,),
                    name=f"taskgate-async-loop-{self._runner_id}",
                    daemon=True,
                )
                self._reporter = threading.Thread(
                    target=self._report_outcomes,
                    name=f"taskgate-async-reporter-{self._runner_id}",
                    daemon=True,
                )
                self._loop_thread.start()
                self._reporter.start()
                logger.debug("runner %s started its event loop thread", self._runner_id)
            return self._loop

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        # Written by this thread only (every run's coroutine runs here): no lock per run.
        self._counts = None if self._metrics is None else self._metrics.accumulator()
        try:
            loop.run_forever()
            _cancel_all(loop)  # whatever a close left (nothing after a graceful stop)
            pending = asyncio.all_tasks(loop)
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    async def _run(self, claim: Claim) -> None:
        counts = self._counts
        started = time.monotonic()
        if counts is not None:
            counts.running[claim.invocation_id] = (claim, started)
        try:
            outcome = await execute_async(self._app, claim, self._bodies, runner_id=self._runner_id)
        except asyncio.CancelledError:  # abandoned: the runner hands the invocation back
            self._done(claim)
            return
        except Exception as exc:  # execute_async turns everything into outcomes: a bug of ours
            logger.exception(
                "invocation %s of %s: async run failed unexpectedly; failing it",
                claim.invocation_id,
                claim.task_id,
                extra=claim_fields(claim, self._runner_id),
            )
            # Reported, not dropped: a claim nobody reports would stay RUNNING, its lease
            # renewed, until the runner stops.
            outcome = Outcome(OutcomeKind.FAILED, self._app.serializer.dumps_error(exc))
        finally:
            if counts is not None:
                counts.running.pop(claim.invocation_id, None)
            if self._bodies is not None:
                # A cancel request that came after the body ended must not wait for a body.
                self._bodies.forget(claim.invocation_id)
        if counts is not None:  # counted before it is reported: a result seen is counted
            counts.finish(claim.task_id, outcome.kind, started)
        self._reports.put((claim, outcome))

    def _report_outcomes(self) -> None:
        while (item := self._reports.get()) is not None:
            claim, outcome = item
            try:
                # Even after abandon(): the body ended on its own, so its outcome stands (the
                # runner hands back only claims that are no longer in flight).
                self._report(claim, outcome)
            except Exception:  # the reporter must survive any one report
                logger.exception(
                    "runner %s could not report invocation %s; lease recovery will run it again",
                    self._runner_id,
                    claim.invocation_id,
                    extra=claim_fields(claim, self._runner_id),
                )
            finally:
                self._done(claim)

    def _done(self, claim: Claim) -> None:
        with self._lock:
            self._in_flight.discard((claim.invocation_id, claim.attempt))
            self._lock.notify_all()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()
