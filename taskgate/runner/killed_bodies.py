"""Reporting the runs of a worker process killed because an interrupted body did not stop.

A ProcessRunner worker tells its supervisor which runs it interrupts (a timeout, a cancel
request) and when each such body stopped (:mod:`taskgate.runner.lease_watch`). A body still
running ``shutdown_grace_seconds`` later gets its worker killed; only then, with the body gone
for certain, does the supervisor report those runs in the worker's name, as the worker would
have: ``FAILED`` (or ``RETRY``, per ``retry_for``) with a ``TaskTimeoutError`` for a timeout,
``CANCELLED`` for a cancel. Reports are fenced by the worker's runner id and the attempt, so a
run the worker did report just before it died is left as it is. The rest of the worker's claims
are then recovered (``recover_runner``) as for any dead worker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from taskgate.errors import InvocationCancelledError, TaskgateError, TaskTimeoutError
from taskgate.logfields import log_fields
from taskgate.record import Claim
from taskgate.runner.executor import interrupted_outcome
from taskgate.runner.lease_watch import CANCEL

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.task import TaskOptions

logger = logging.getLogger(__name__)


def report_killed(
    app: App, worker_id: str, interrupted: dict[tuple[str, int], tuple[str, float]]
) -> list[str]:
    """Finish each interrupted run of dead worker ``worker_id``; returns the ids finished.

    Raises:
        TaskgateError: the backend failed (the caller falls back on recovery).
    """
    finished = []
    for (invocation_id, attempt), (kind, _) in interrupted.items():
        record = app.backend.get(invocation_id)
        if record is None:
            continue
        options: TaskOptions | None
        try:
            options = app._resolve_task(record.task_id).options
        except TaskgateError:  # not importable here: reported, never retried
            options = None
        claim = Claim(
            invocation_id,
            record.task_id,
            record.arguments,
            attempt,
            record.num_retries,
            record.max_retries,
        )
        error = InvocationCancelledError if kind == CANCEL else TaskTimeoutError
        outcome = interrupted_outcome(app, claim, options, error, worker_id)
        if app.backend.finish(invocation_id, worker_id, attempt, outcome):
            finished.append(invocation_id)
            logger.warning(
                "invocation %s of %s: its body did not stop after %s; its worker was killed "
                "and the run reported %s",
                invocation_id,
                record.task_id,
                "its timeout" if kind != CANCEL else "a cancel request",
                outcome.kind.value,
                extra=log_fields(invocation_id, record.task_id, attempt, worker_id),
            )
    return finished
