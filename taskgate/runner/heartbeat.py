"""The heartbeat: renews the leases of running work, recovers the work of dead runners and
deletes expired results."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from taskgate.backends.base import Backend
from taskgate.errors import BackendError, BackendUnavailableError, ConfigError, TaskgateError
from taskgate.record import RunnerInfo
from taskgate.runner.outage import Outage

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Expired results are deleted at least this often (when the result TTL is shorter than half
# the lease), and never more often than this floor, however short the TTL.
MIN_EXPIRY_INTERVAL_SECONDS = 0.1


class LeaseListener(Protocol):
    """Told when the runner's leases are known fresh (a ProcessRunner worker's supervisor)."""

    def renewed(self, held: int, as_of: float) -> None:
        """Every one of the ``held`` claims has a lease renewed after monotonic time ``as_of``."""

    def stopped(self, held: int) -> None:
        """The heartbeat stopped while the runner still held ``held`` claims."""


class Heartbeat:
    """A daemon thread that renews leases every ``lease/3`` and calls ``recover`` every ``lease/2``.

    Renewing at a third of the lease leaves two chances to renew before a lease can expire;
    recovering at half the lease bounds how long a dead runner's work waits to about 1.5 leases.
    Expired results are deleted every ``min(lease/2, result TTL)`` in chunks of at most
    ``lease/6`` (:meth:`Backend.expire_for`), and right after the next renewal check again
    while a backlog remains: they never pile up, whatever the finish rate, and a backlog of any
    size never holds up a renewal by more than one chunk.

    With ``describe``, each renewal that succeeded is followed by an announcement of the
    runner's description (:meth:`Backend.announce_runner`, kept for one lease): after the
    renewal, so it never delays one, and a failure of it is only logged (a description is for
    operators; the work goes on).

    A :class:`BackendUnavailableError` is counted on ``outage`` (the next beat tries again); any
    other :class:`BackendError`, or a :class:`ConfigError` (refused credentials, a replaced store, a
    path that cannot hold the store) goes to ``on_fatal``.
    """

    def __init__(
        self,
        backend: Backend,
        runner_id: str,
        lease_seconds: float,
        claims: Callable[[], Sequence[tuple[str, int]]],
        on_lost: Callable[[list[tuple[str, int]]], list[tuple[str, int]]],
        listener: LeaseListener | None = None,
        *,
        outage: Outage | None = None,
        on_fatal: Callable[[BackendError | ConfigError], None] | None = None,
        describe: Callable[[], RunnerInfo] | None = None,
    ) -> None:
        self._backend = backend
        self._describe = describe
        self._announce_failing = False
        self._listener = listener
        self._runner_id = runner_id
        self._lease_seconds = lease_seconds
        self._claims = claims
        self._on_lost = on_lost
        self._outage = outage or Outage(runner_id)
        self._on_fatal = on_fatal or self._log_fatal
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"taskgate-heartbeat-{runner_id}", daemon=True
        )

    def start(self) -> None:
        """Announce the runner with a first renewal, here and now, then beat in the background."""
        if self._guarded(self._beat):
            self._announce()
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and wait for the thread to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._listener is not None:
            self._listener.stopped(len(self._claims()))

    def _loop(self) -> None:
        beat_every = self._lease_seconds / 3
        recover_every = self._lease_seconds / 2
        expire_every = max(
            MIN_EXPIRY_INTERVAL_SECONDS,
            min(recover_every, self._backend.options.result_ttl_seconds),
        )
        # One chunk of expiry is at most this long, so a backlog of expired results (of any
        # size) never holds up a renewal by more than one chunk.
        expire_chunk = beat_every / 2
        now = time.monotonic()
        next_beat, next_recover, next_expire = now + beat_every, now, now
        while True:
            now = time.monotonic()
            if now >= next_beat:  # first: renewals matter most
                if self._guarded(self._beat):
                    self._announce()
                next_beat = now + beat_every
            if now >= next_recover:
                self._guarded(self._recover)
                next_recover = now + recover_every
            if now >= next_expire:
                done = self._guarded(lambda: self._backend.expire_for(expire_chunk))
                # More left: go on right after the next renewal check, not a period later.
                next_expire = time.monotonic() + (expire_every if done is not False else 0.0)
            wait = min(next_beat, next_recover, next_expire) - time.monotonic()
            if self._stop.wait(max(0.0, wait)):
                return

    def _guarded(self, step: Callable[[], T]) -> T | None:
        """Run one step and return what it returned; a failure is logged (or reported), the
        result is None, and the next beat tries again."""
        try:
            result = step()
        except BackendUnavailableError as exc:
            self._outage.failed(exc, "heartbeat")
            return None
        except (BackendError, ConfigError) as exc:
            self._on_fatal(exc)
            return None
        except TaskgateError as exc:
            logger.warning("runner %s heartbeat failed: %s", self._runner_id, exc)
            return None
        except Exception:
            logger.exception("runner %s heartbeat failed unexpectedly", self._runner_id)
            return None
        self._outage.succeeded()
        return result

    def _log_fatal(self, exc: BackendError | ConfigError) -> None:
        logger.error("runner %s heartbeat failed: %s", self._runner_id, exc)

    def _recover(self) -> None:
        recovered = self._backend.recover_leases()
        if recovered:
            logger.warning(
                "runner %s recovered %s invocation(s) from dead runners: %s",
                self._runner_id,
                len(recovered),
                ", ".join(recovered),
            )

    def _announce(self) -> None:
        """Store the runner's description; a failure is logged (once as a warning, then at
        debug level until one succeeds) and never stops the runner."""
        if self._describe is None:
            return
        try:
            self._backend.announce_runner(self._describe(), self._lease_seconds)
        except Exception as exc:
            log = logger.debug if self._announce_failing else logger.warning
            log("runner %s could not announce its description: %s", self._runner_id, exc)
            self._announce_failing = True
        else:
            self._announce_failing = False

    def _beat(self) -> bool:
        as_of = time.monotonic()
        claims = list(self._claims())
        if self._listener is not None and not claims:
            self._listener.renewed(0, as_of)  # nothing held: nothing at risk, renewed or not
        lost_ids = set(self._backend.renew(self._runner_id, claims, self._lease_seconds))
        if self._listener is not None and claims:
            self._listener.renewed(len(claims) - len(lost_ids), as_of)
        if not lost_ids:
            return True
        # A claim the runner finished between the snapshot and the renewal is not lost: only
        # those still tracked under the attempt renewed are (on_lost says which it dropped).
        lost = self._on_lost([claim for claim in claims if claim[0] in lost_ids])
        if lost:
            logger.warning(
                "runner %s lost the claim on %s invocation(s): %s; their late results will be "
                "rejected",
                self._runner_id,
                len(lost),
                ", ".join(invocation_id for invocation_id, _ in lost),
            )
        return True
