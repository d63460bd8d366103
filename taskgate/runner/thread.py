"""ThreadRunner: a pool of worker threads in the current process; works with every backend."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

from taskgate import context
from taskgate.backoff import Backoff
from taskgate.errors import BackendError, BackendUnavailableError, ConfigError, TaskgateError
from taskgate.record import Claim, Outcome
from taskgate.runner.async_loop import AsyncInvocations
from taskgate.runner.base import Runner
from taskgate.runner.body_control import BodyControl
from taskgate.runner.gate import ClaimGate
from taskgate.runner.heartbeat import Heartbeat, LeaseListener
from taskgate.runner.interrupts import InterruptListener
from taskgate.runner.metrics import RunMetrics
from taskgate.runner.outage import Outage
from taskgate.runner.periodic import PeriodicScheduler, periodic_tasks
from taskgate.runner.standins import StandIns

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.backends.base import Backend

logger = logging.getLogger(__name__)

# A blocked claim returns after this long even without work or a wake-up, so a stop request
# that races with the start of a claim is seen within this bound.
CLAIM_TIMEOUT_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 5.0
# After the grace period, how long a stopping runner waits for cancelled async bodies to end.
ABANDONED_WAIT_SECONDS = 1.0
DEFAULT_THREADS = 8


class ThreadRunner(Runner):
    """Runs invocations on ``threads`` worker threads (setting ``threads``, default 8).

    Workers take turns at a :class:`ClaimGate`: one idle worker at a time blocks in the
    backend's ``claim``, for itself and every other idle worker. A worker that finishes a task
    while the gate is free reports it and claims its next work in one ``finish_and_claim``
    call. Parked invocations never hold a thread, and no thread polls.

    A :class:`BackendUnavailableError` is retried with back-off (logged once per outage); any
    other :class:`BackendError` or a :class:`ConfigError` (refused credentials, a replaced store, a
    path that cannot hold the store) is fatal: the runner
    logs it, stops claiming, winds down as on a stop request, and :meth:`run` raises it.
    """

    def __init__(self, app: App, threads: int | None = None) -> None:
        super().__init__(app)
        self._threads = threads
        self._in_flight: dict[str, int] = {}
        self._reporting: set[tuple[str, int]] = set()
        self._in_flight_lock = threading.Lock()
        self._gate = ClaimGate()  # replaced by a fresh one for every run
        self.lease_listener: LeaseListener | None = None
        """Told of each renewal; a ProcessRunner worker sets it to report to its supervisor."""
        self._outage = Outage(self.runner_id)
        self._fatal: BackendError | ConfigError | None = None
        self._fatal_lock = threading.Lock()
        # Interrupts (timeouts, cancels) and stand-ins for waiting bodies: see _start_extras.
        self.interrupt_listener: InterruptListener | None = None
        """Told of interrupted bodies (a ProcessRunner worker's report to its supervisor)."""
        self._control: BodyControl | None = None
        self._standins: StandIns | None = None
        # Async invocations share one event loop (async_loop.py); the queues served.
        self._async = AsyncInvocations(app, self.runner_id, self._report_async, 1)
        self._queues: frozenset[str] | None = None
        self.kind = "thread"
        """What its description calls it (:class:`~taskgate.record.RunnerInfo`): ``"thread"``,
        or ``"process-worker"`` in a ProcessRunner's worker process."""
        self.metrics = RunMetrics()
        """What this run counts: outcomes, durations and throughput (replaced at each start)."""

    @property
    def threads(self) -> int:
        """Worker threads: the constructor's, else setting ``threads`` (read at start), else 8."""
        return self._threads or self.app.conf.threads or DEFAULT_THREADS

    def _run(self) -> None:
        backend = self.app.backend
        self._gate = gate = ClaimGate()
        with self._in_flight_lock:
            self._in_flight.clear()
            self._reporting.clear()
        self._outage = Outage(self.runner_id)
        self._fatal = None
        self._queues = self.app.conf.served_queues
        self.metrics = metrics = RunMetrics()
        started_at = time.time()
        heartbeat = Heartbeat(
            backend,
            self.runner_id,
            self.app.conf.lease_seconds,
            self._claims_in_flight,
            self._lost,
            self.lease_listener,
            outage=self._outage,
            on_fatal=self._fail,
            describe=lambda: metrics.describe(
                self.runner_id, self.kind, self.threads, self._queues, started_at
            ),
        )
        workers = [
            threading.Thread(
                target=self._work, args=(backend, gate), name=f"taskgate-worker-{i}", daemon=True
            )
            for i in range(self.threads)
        ]
        heartbeat.start()
        control, standins = self._start_extras(backend, gate)
        self._async = AsyncInvocations(
            self.app,
            self.runner_id,
            self._report_async,
            self.app.conf.async_in_flight,
            control.bodies,
            metrics,
        )
        for worker in workers:
            worker.start()
        scheduler = self._start_periodic()
        while not self._stop_requested.is_set():
            self._sleep_until_poked()
        standins.close()
        gate.close()  # also when the stop came before this run's gate existed
        logger.info("runner %s stopping: no new claims", self.runner_id)
        if scheduler is not None:
            scheduler.stop()
        self._drain(backend, [*workers, *standins.threads()])
        self._async.close()
        control.stop()
        heartbeat.stop()
        with contextlib.suppress(TaskgateError):  # only cosmetic: the entry expires anyway
            backend.forget_runner(self.runner_id)
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, exc: BackendError | ConfigError) -> None:
        """Stop because of a backend error retrying cannot fix (or a store that cannot be
        opened where the settings say); :meth:`run` raises the first."""
        with self._fatal_lock:
            first = self._fatal is None
            if first:
                self._fatal = exc
        if not first:
            logger.debug("runner %s: backend error while stopping: %s", self.runner_id, exc)
            return
        logger.error("runner %s stopping: %s", self.runner_id, exc)
        self.stop_runner_loop()

    def _wake(self) -> None:
        super()._wake()
        self._gate.close()
        self.app.backend.wake_claimers()
        self._async.wake()  # a worker waiting for room on the event loop sees the stop

    # --- interrupts and stand-ins (API.md section 9) -----------------------------------------

    def _start_extras(self, backend: Backend, gate: ClaimGate) -> tuple[BodyControl, StandIns]:
        """This run's interrupt control (started) and stand-ins for bodies that wait."""
        self._control = control = BodyControl(self.app, self.runner_id, self.interrupt_listener)
        self._standins = standins = StandIns(
            self.threads, lambda leave: self._work(backend, gate, leave), gate.wake_all
        )
        control.start()
        return control, standins

    # --- the worker loop -----------------------------------------------------------------------

    def _work(
        self, backend: Backend, gate: ClaimGate, leave: threading.Event | None = None
    ) -> None:
        """A worker's loop; a stand-in's (``leave`` set: stop after the current invocation)."""
        control = self._control  # this run's: set before its workers and stand-ins start
        assert control is not None and self._standins is not None
        context.set_wait_hook(self._standins.waiting)
        context.set_shield_hook(control.bodies.shield)
        backoff = Backoff(0.05, BACKOFF_MAX_SECONDS)
        counts = self.metrics.accumulator()  # this thread's own: no lock per run
        try:
            claim = self._next_claim(backend, gate, backoff, leave)
            while claim is not None:
                # An async invocation is awaited on the event loop and this thread goes on.
                if self._async.takes(claim):
                    self._async.submit(claim)
                    self._async.wait_for_room(self._stop_requested)
                    if leave is not None and leave.is_set():  # a stand-in whose wait ended
                        return
                    claim = self._next_claim(backend, gate, backoff, leave)
                    continue
                started = counts.begin(claim)
                outcome = control.execute(claim)
                counts.finish(claim.task_id, outcome.kind, started)
                if leave is not None and leave.is_set():  # a stand-in whose wait ended
                    self._report(backend, claim, outcome)
                    self._forget([(claim.invocation_id, claim.attempt)])
                    return
                claim = self._finish_and_next(backend, gate, claim, outcome, backoff, leave)
        # Not BackendUnavailableError: that is retried where raised. A ConfigError here is a
        # store that cannot be opened where the settings say (a path that cannot hold a file).
        except (BackendError, ConfigError) as exc:
            # A claim whose outcome was not reported stays in flight: the stop hands it back.
            self._fail(exc)
        finally:
            if leave is not None:  # a stand-in ends: its counts join the runner's totals
                self.metrics.retire(counts)

    def _next_claim(
        self, backend: Backend, gate: ClaimGate, backoff: Backoff, leave: threading.Event | None
    ) -> Claim | None:
        """The next invocation for this worker, or None once its run (or stand-in) is stopping."""
        while True:
            turn = gate.wait_turn(leave)
            if not isinstance(turn, int):
                return turn
            claims: list[Claim] = []
            try:
                claims = self._claim(backend, turn, backoff)
            finally:
                mine = gate.open(claims)
            if mine is not None:
                return mine

    def _finish_and_next(
        self,
        backend: Backend,
        gate: ClaimGate,
        claim: Claim,
        outcome: Outcome,
        backoff: Backoff,
        leave: threading.Event | None,
    ) -> Claim | None:
        """Report a run's outcome and return this worker's next invocation.

        When the gate is free, both happen in one backend call; otherwise (or when the backend
        is unreachable) the outcome is reported on its own and the worker waits its turn.
        """
        with self._in_flight_lock:
            self._reporting.add((claim.invocation_id, claim.attempt))
        wanted = gate.try_turn()
        if wanted is not None:
            claims: list[Claim] = []
            try:
                _, claims = backend.finish_and_claim(
                    claim.invocation_id,
                    self.runner_id,
                    claim.attempt,
                    outcome,
                    max_count=wanted,
                    lease_seconds=self.app.conf.lease_seconds,
                    queues=self._queues,
                )
                self._track(claims)
                self._outage.succeeded()
                reported = True
                if not claims:  # the queue was empty just now: wait for work before looking
                    claims = self._claim(backend, wanted, backoff, wait_first=True)
            except BackendUnavailableError as exc:
                self._outage.failed(exc, f"report of invocation {claim.invocation_id}")
                reported = False
            finally:
                mine = gate.open(claims)
            if reported:
                self._forget([(claim.invocation_id, claim.attempt)])
                return mine if mine is not None else self._next_claim(backend, gate, backoff, leave)
        self._report(backend, claim, outcome)
        self._forget([(claim.invocation_id, claim.attempt)])
        return self._next_claim(backend, gate, backoff, leave)

    def _claim(
        self, backend: Backend, wanted: int, backoff: Backoff, *, wait_first: bool = False
    ) -> list[Claim]:
        """Claim up to ``wanted``; while the backend is down, back off (others stay queued)."""
        try:
            claims = backend.claim(
                self.runner_id,
                wanted,
                self.app.conf.lease_seconds,
                CLAIM_TIMEOUT_SECONDS,
                wait_first=wait_first,
                queues=self._queues,
            )
        except BackendUnavailableError as exc:
            self._outage.failed(exc, "claim")
            self._stop_requested.wait(backoff.next())
            return []
        backoff.reset()
        self._outage.succeeded()
        self._track(claims)
        return claims

    def _track(self, claims: list[Claim]) -> None:
        """Count claims as in flight (renewed by the heartbeat, handed back on stop)."""
        with self._in_flight_lock:
            for claim in claims:
                self._in_flight[claim.invocation_id] = claim.attempt

    def _report(self, backend: Backend, claim: Claim, outcome: Outcome) -> None:
        """Hand the outcome to the backend, retrying while it is unreachable (unless forced)."""
        backoff = Backoff(0.05, BACKOFF_MAX_SECONDS)
        while True:
            try:
                backend.finish(claim.invocation_id, self.runner_id, claim.attempt, outcome)
                self._outage.succeeded()
                return
            except BackendUnavailableError as exc:
                if self._force_stop.is_set():
                    logger.error(
                        "runner %s dropped the outcome of invocation %s of %s on a forced "
                        "stop (%s); lease recovery will run it again",
                        self.runner_id,
                        claim.invocation_id,
                        claim.task_id,
                        exc,
                    )
                    return
                self._outage.failed(exc, f"report of invocation {claim.invocation_id}")
                time.sleep(backoff.next())

    def _drain(self, backend: Backend, workers: list[threading.Thread]) -> None:
        """Wait for running tasks up to the grace period, then hand the rest back."""
        deadline = time.monotonic() + self.app.conf.shutdown_grace_seconds
        while any(w.is_alive() for w in workers) and not self._force_stop.is_set():
            if time.monotonic() >= deadline:
                break
            # Repeated wake-ups catch a worker that entered claim() just after the stop request.
            backend.wake_claimers()
            for worker in workers:
                worker.join(timeout=0.05)
            self._handle_signals()  # a second signal forces the stop
        while not self._force_stop.is_set() and not self._async.wait_idle(
            min(deadline, time.monotonic() + 0.1)
        ):
            if time.monotonic() >= deadline:
                break
            self._handle_signals()
        self._async.abandon()  # what is still awaited is cancelled and never reports
        if not self._force_stop.is_set():  # the cancellation reaches the bodies a moment later
            self._async.wait_idle(time.monotonic() + ABANDONED_WAIT_SECONDS)
        if self._force_stop.is_set():
            self.left_running = len(self._claims_in_flight())
            return
        self.left_running = 0
        still_running = self._async.running()
        for invocation_id, attempt in self._claims_in_flight():
            if (invocation_id, attempt) in still_running:
                # Its body ignored the cancellation: handing it back would let another runner
                # start it while this one still runs (U1). Lease recovery takes it once the
                # process exits.
                self.left_running += 1
                logger.warning(
                    "runner %s left async invocation %s running: its body did not stop when "
                    "cancelled; lease recovery will take it back",
                    self.runner_id,
                    invocation_id,
                    extra={"invocation_id": invocation_id},
                )
                continue
            try:
                released = backend.release(invocation_id, self.runner_id, attempt)
            except TaskgateError as exc:
                logger.warning(
                    "runner %s could not hand invocation %s back (%s); lease recovery will",
                    self.runner_id,
                    invocation_id,
                    exc,
                    extra={"invocation_id": invocation_id},
                )
                continue
            # Not this runner's any more (handed back, or fenced off): no lease of it to renew,
            # so a supervisor watching renewals has nothing to wait for.
            self._forget([(invocation_id, attempt)])
            if released:
                logger.warning(
                    "runner %s handed invocation %s back to the queue: it was not finished when "
                    "the runner stopped (grace period %s s)",
                    self.runner_id,
                    invocation_id,
                    self.app.conf.shutdown_grace_seconds,
                    extra={"invocation_id": invocation_id},
                )

    def _report_async(self, claim: Claim, outcome: Outcome) -> None:
        """Report an async invocation's outcome (on the async reporter thread)."""
        with self._in_flight_lock:
            self._reporting.add((claim.invocation_id, claim.attempt))
        self._report(self.app.backend, claim, outcome)
        self._forget([(claim.invocation_id, claim.attempt)])

    def _start_periodic(self) -> PeriodicScheduler | None:
        """Start the periodic scheduler when the app has periodic tasks in the queues served."""
        tasks = periodic_tasks(self.app, self._queues)
        if not tasks:
            return None
        scheduler = PeriodicScheduler(self.app, self.runner_id, tasks, on_fatal=self._fail)
        scheduler.start()
        return scheduler

    def _claims_in_flight(self) -> list[tuple[str, int]]:
        with self._in_flight_lock:
            return list(self._in_flight.items())

    def _forget(self, claims: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Stop tracking these ``(invocation_id, attempt)`` claims; returns those it was.

        The attempt matters: a worker that reports a retry may claim the same invocation
        again in the same call, and that new attempt must stay tracked (renewed).
        """
        forgotten = []
        with self._in_flight_lock:
            for invocation_id, attempt in claims:
                self._reporting.discard((invocation_id, attempt))
                if self._in_flight.get(invocation_id) == attempt:
                    del self._in_flight[invocation_id]
                    forgotten.append((invocation_id, attempt))
        return forgotten

    def _lost(self, claims: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Claims the heartbeat could not renew: stop renewing them; returns the real losses.

        A claim whose outcome a worker is reporting right now is not lost, merely finished
        (the report says if it was still owned), so it stays for the worker to forget.
        """
        with self._in_flight_lock:
            lost = [claim for claim in claims if claim not in self._reporting]
        return self._forget(lost)
