"""ThreadRunner: a pool of worker threads in the current process; works with every backend."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from taskgate.errors import BackendUnavailableError
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

    Each worker claims one invocation at a time straight from the backend, blocking there when
    the queue is empty, so a parked invocation never holds a thread and no thread polls.
    """

    def __init__(self, app: App, threads: int | None = None) -> None:
        super().__init__(app)
        self.threads = threads or app.conf.threads or DEFAULT_THREADS
        self._in_flight: dict[str, int] = {}
        self._in_flight_lock = threading.Lock()

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

    def _wake(self) -> None:
        self.app.backend.wake_claimers()

    def _work(self, backend: Backend) -> None:
        lease = self.app.conf.lease_seconds
        failures = 0
        while not self._stop_requested.is_set():
            try:
                claims = backend.claim(self.runner_id, 1, lease, CLAIM_TIMEOUT_SECONDS)
            except BackendUnavailableError as exc:
                failures += 1
                delay = min(BACKOFF_MAX_SECONDS, 0.05 * 2**failures)
                logger.warning(
                    "runner %s cannot claim work (%s); retrying in %.2f s",
                    self.runner_id,
                    exc,
                    delay,
                )
                self._stop_requested.wait(delay)
                continue
            failures = 0
            if self._stop_requested.is_set():
                # Claimed in the instant the stop arrived: hand it back rather than start it.
                for claim in claims:
                    backend.release(claim.invocation_id, self.runner_id, claim.attempt)
                return
            for claim in claims:
                self._run_claim(backend, claim)

    def _run_claim(self, backend: Backend, claim: Claim) -> None:
        with self._in_flight_lock:
            self._in_flight[claim.invocation_id] = claim.attempt
        try:
            outcome = execute(self.app, claim)
            self._report(backend, claim, outcome)
        finally:
            self._forget([claim.invocation_id])

    def _report(self, backend: Backend, claim: Claim, outcome: Outcome) -> None:
        """Hand the outcome to the backend, retrying while it is unreachable (unless forced)."""
        failures = 0
        while True:
            try:
                backend.finish(claim.invocation_id, self.runner_id, claim.attempt, outcome)
                return
            except BackendUnavailableError as exc:
                failures += 1
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
                delay = min(BACKOFF_MAX_SECONDS, 0.05 * 2**failures)
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
                    "runner %s handed invocation %s back to the queue: it did not finish within "
                    "the %s s grace period",
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
