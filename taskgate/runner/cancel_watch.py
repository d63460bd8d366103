"""The cancel watcher: one thread per runner that interrupts the bodies whose cancel was asked.

It loops on :meth:`Backend.wait_cancel_requests` (blocking up to a second, so it stops promptly;
the backend wakes it the moment a request comes, nothing polls) and raises
:class:`~taskgate.errors.InvocationCancelledError` in each named body through
:class:`RunningBodies`. A request for a claim whose body has not started yet is kept and
delivered when it starts; the backend ends the invocation ``CANCELLED`` whatever the body does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING

from taskgate.backoff import Backoff
from taskgate.errors import InvocationCancelledError, TaskgateError
from taskgate.logfields import log_fields
from taskgate.runner.interrupts import RunningBodies

if TYPE_CHECKING:
    from taskgate.backends.base import Backend

logger = logging.getLogger(__name__)

WAIT_SECONDS = 1.0


class CancelWatch:
    """A daemon thread relaying ``runner_id``'s cancel requests to its running bodies."""

    def __init__(self, backend: Backend, runner_id: str, bodies: RunningBodies) -> None:
        self._backend = backend
        self._runner_id = runner_id
        self._bodies = bodies
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"taskgate-cancels-{runner_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and wait for the thread to end.

        Waking the process's blocked waits (:meth:`Backend.wake_claimers`) ends the watcher's
        own wait at once (a blocked claim merely looks again), so a stop is prompt; and the
        thread is gone before the backend can be closed under it.
        """
        self._stop.set()
        with contextlib.suppress(TaskgateError):
            self._backend.wake_claimers()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        backoff = Backoff(0.05, 5.0)
        while not self._stop.is_set():
            try:
                requested = self._backend.wait_cancel_requests(self._runner_id, WAIT_SECONDS)
            except TaskgateError as exc:  # unreachable store: the heartbeat reports outages
                logger.debug(
                    "runner %s: waiting for cancel requests failed: %s", self._runner_id, exc
                )
                self._stop.wait(backoff.next())
                continue
            except Exception:  # never let the watcher die silently
                logger.exception("runner %s: cancel watcher failed", self._runner_id)
                self._stop.wait(backoff.next())
                continue
            backoff.reset()
            for invocation_id in requested:
                try:
                    running = self._bodies.interrupt(invocation_id, InvocationCancelledError)
                except Exception:  # e.g. an async body's loop already closed: never die here
                    logger.exception(
                        "runner %s: could not interrupt invocation %s",
                        self._runner_id,
                        invocation_id,
                        extra=log_fields(invocation_id, runner_id=self._runner_id),
                    )
                    continue
                logger.info(
                    "runner %s: cancel requested for invocation %s (%s)",
                    self._runner_id,
                    invocation_id,
                    "interrupting its body" if running else "its body has not started",
                    extra=log_fields(invocation_id, runner_id=self._runner_id),
                )
