"""ThreadRunner: a pool of worker threads in the current process; works with every backend."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from taskgate.backoff import Backoff
from taskgate.errors import BackendUnavailableError, TaskgateError
from taskgate.record import Claim, Outcome
from taskgate.runner.base import Runner
from taskgate.runner.executor import execute
from taskgate.runner.heartbeat import Heartbeat

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.backends.base import Backend

logger = logging.getLogger(__name__)

# A blocked claim returns after this long even without work or a wake-up, so a stop request
# that races with the start of a claim is seen within this bound.
CLAIM_TIMEOUT_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 5.0
DEFAULT_THREADS = 8


class ThreadRunner(Runner):
    """Runs invocations on ``threads`` worker threads (setting ``threads``, default 8).

    Workers take turns at a claim gate: one idle worker at a time blocks in the backend's
    ``claim`` (so the store sees one claimer per runner, not a herd), asking for one invocation
    for itself and one for every other idle worker; it hands the extras to them through a local
    queue and runs its own. Parked invocations never hold a thread, and no thread polls.
    """

    def __init__(self, app: App, threads: int | None = None) -> None:
        super().__init__(app)
        self._threads = threads
        self._in_flight: dict[str, int] = {}
        self._in_flight_lock = threading.Lock()
        self._gate = threading.Condition()
        self._gate_taken = False
        self._idle = 0
        self._handed_out: deque[Claim] = deque()

    @property
    def threads(self) -> int:
        """Worker threads: the constructor's, else setting ``threads`` (read at start), else 8."""
        return self._threads or self.app.conf.threads or DEFAULT_THREADS

    def _run(self) -> None:
        backend = self.app.backend
        heartbeat = Heartbeat(
            backend,
            self.runner_id,
            self.app.conf.lease_seconds,
            self._claims_in_flight,
            self._forget,
        )
        workers = [
            threading.Thread(
                target=self._work, args=(backend,), name=f"taskgate-worker-{i}", daemon=True
            )
            for i in range(self.threads)
        ]
        heartbeat.start()
        for worker in workers:
            worker.start()
        self._stop_requested.wait()
        logger.info("runner %s stopping: no new claims", self.runner_id)
        self._drain(backend, workers)
        heartbeat.stop()
        with contextlib.suppress(TaskgateError):  # only cosmetic: the entry expires anyway
            backend.forget_runner(self.runner_id)

    def _wake(self) -> None:
        with self._gate:
            self._gate.notify_all()
        self.app.backend.wake_claimers()

    def _work(self, backend: Backend) -> None:
        backoff = Backoff(0.05, BACKOFF_MAX_SECONDS)
        while (claim := self._next_claim(backend, backoff)) is not None:
            self._run_claim(backend, claim)

    def _next_claim(self, backend: Backend, backoff: Backoff) -> Claim | None:
        """The next invocation for this worker, or None once the runner is stopping."""
        while True:
            with self._gate:
                while not self._stop_requested.is_set():
                    if self._handed_out:
                        return self._handed_out.popleft()
                    if not self._gate_taken:
                        break
                    self._idle += 1
                    self._gate.wait()
                    self._idle -= 1
                else:
                    return None
                self._gate_taken = True
                wanted = self._idle + 1
            claims: list[Claim] = []
            try:
                claims = self._claim(backend, wanted, backoff)
            finally:
                with self._gate:
                    self._gate_taken = False
                    if self._stop_requested.is_set():
                        # Claimed in the instant the stop arrived: _drain hands these back.
                        self._handed_out.extend(claims)
                        claims = []
                    else:
                        self._handed_out.extend(claims[1:])
                    # Wake one idle worker per extra claim, and one more to take the gate.
                    self._gate.notify(len(claims))
            if claims:
                return claims[0]

    def _claim(self, backend: Backend, wanted: int, backoff: Backoff) -> list[Claim]:
        """Claim up to ``wanted``; while the backend is down, back off (others stay queued)."""
        try:
            claims = backend.claim(
                self.runner_id, wanted, self.app.conf.lease_seconds, CLAIM_TIMEOUT_SECONDS
            )
        except BackendUnavailableError as exc:
            delay = backoff.next()
            logger.warning(
                "runner %s cannot claim work (%s); retrying in %.2f s", self.runner_id, exc, delay
            )
            self._stop_requested.wait(delay)
            return []
        backoff.reset()
        with self._in_flight_lock:
            for claim in claims:
                self._in_flight[claim.invocation_id] = claim.attempt
        return claims

    def _run_claim(self, backend: Backend, claim: Claim) -> None:
        try:
            outcome = execute(self.app, claim)
            self._report(backend, claim, outcome)
        finally:
            self._forget([claim.invocation_id])

    def _report(self, backend: Backend, claim: Claim, outcome: Outcome) -> None:
        """Hand the outcome to the backend, retrying while it is unreachable (unless forced)."""
        backoff = Backoff(0.05, BACKOFF_MAX_SECONDS)
        while True:
            try:
                backend.finish(claim.invocation_id, self.runner_id, claim.attempt, outcome)
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
                delay = backoff.next()
                logger.warning(
                    "runner %s cannot report invocation %s of %s (%s); retrying in %.2f s",
                    self.runner_id,
                    claim.invocation_id,
                    claim.task_id,
                    exc,
                    delay,
                )
                time.sleep(delay)

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
        if self._force_stop.is_set():
            return
        for invocation_id, attempt in self._claims_in_flight():
            if backend.release(invocation_id, self.runner_id, attempt):
                logger.warning(
                    "runner %s handed invocation %s back to the queue: it was not finished when "
                    "the runner stopped (grace period %s s)",
                    self.runner_id,
                    invocation_id,
                    self.app.conf.shutdown_grace_seconds,
                    extra={"invocation_id": invocation_id},
                )

    def _claims_in_flight(self) -> list[tuple[str, int]]:
        with self._in_flight_lock:
            return list(self._in_flight.items())

    def _forget(self, invocation_ids: list[str]) -> None:
        with self._in_flight_lock:
            for invocation_id in invocation_ids:
                self._in_flight.pop(invocation_id, None)
