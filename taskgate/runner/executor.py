"""Executing one claimed invocation and turning what happened into an :class:`Outcome`.

Nothing here raises: a task that cannot be found, arguments that cannot be read, an exception
from the task (any ``BaseException``, ``SystemExit`` included) and a result that cannot be
serialized all become outcomes, so a runner thread survives any task.
"""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Any

from taskgate import context
from taskgate.canonical import type_name
from taskgate.errors import SerializationError, TaskFailedError, TaskNotFoundError
from taskgate.invocation import DistributedInvocation, Invocation
from taskgate.record import Claim, Outcome, OutcomeKind
from taskgate.retry_delays import retry_delay

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.task import TaskOptions

logger = logging.getLogger(__name__)


def execute(app: App, claim: Claim, invocation: Invocation[Any] | None = None) -> Outcome:
    """Run the claimed invocation in this thread and report how it ended.

    ``invocation`` is what task code sees as ``task.invocation``; by default a handle that
    reads the backend (eager mode passes its own, which holds the record in memory).
    """
    serializer = app.serializer
    extra = _log_extra(claim)
    try:
        task = app.resolve_task(claim.task_id)
        arguments = serializer.loads(claim.arguments)
    except (TaskNotFoundError, SerializationError) as exc:
        logger.error(
            "invocation %s of %s cannot run: %s",
            claim.invocation_id,
            claim.task_id,
            exc,
            extra=extra,
        )
        return Outcome(OutcomeKind.FAILED, serializer.dumps_error(exc))

    if invocation is None:
        invocation = DistributedInvocation(
            app, claim.task_id, claim.invocation_id, arguments, attempt=claim.attempt
        )
    logger.info(
        "invocation %s of %s started (attempt %s)",
        claim.invocation_id,
        claim.task_id,
        claim.attempt,
        extra=extra,
    )
    token = context.enter(invocation)
    try:
        value = task.run(arguments)
    except Exception as exc:
        if task.options.should_retry(exc, claim.num_retries):
            logger.info(
                "invocation %s of %s raised %r; retry %s of %s",
                claim.invocation_id,
                claim.task_id,
                exc,
                claim.num_retries + 1,
                claim.max_retries,
                extra=extra,
            )
            return _retry_outcome(task.options, claim, serializer.dumps_error(exc))
        logger.warning(  # a final failure: someone should see it, with the task's frames
            "invocation %s of %s failed: %r",
            claim.invocation_id,
            claim.task_id,
            exc,
            exc_info=exc,
            extra={"invocation_id": claim.invocation_id, "task": claim.task_id},
        )
        return Outcome(OutcomeKind.FAILED, serializer.dumps_error(exc))
    except BaseException as exc:
        # Bodies run on runner threads, never on the main thread where SIGINT lands, so this is
        # the task's own doing (sys.exit(), raise KeyboardInterrupt...): it must not end the
        # worker thread, or the invocation would stay RUNNING, its lease renewed, forever.
        return _base_exception_outcome(app, claim, task.options, exc)
    finally:
        context.leave(token)

    try:
        payload = serializer.dumps(value)
    except SerializationError as exc:
        logger.error(
            "invocation %s of %s returned a result that cannot be stored: %s",
            claim.invocation_id,
            claim.task_id,
            exc,
            extra=extra,
        )
        return Outcome(OutcomeKind.FAILED, serializer.dumps_error(exc))
    logger.info("invocation %s of %s succeeded", claim.invocation_id, claim.task_id, extra=extra)
    return Outcome(OutcomeKind.SUCCESS, payload)


def _base_exception_outcome(
    app: App,
    claim: Claim,
    options: TaskOptions,
    exc: BaseException,
) -> Outcome:
    """Fail (or retry, if ``retry_for`` names its type) a run that raised a ``BaseException``.

    The caller gets a :class:`TaskFailedError` naming the original type, never the exception
    itself: re-raising ``SystemExit`` or ``KeyboardInterrupt`` from ``.result`` would end the
    caller's program, and ``except Exception`` would not catch it.
    """
    stand_in = TaskFailedError(
        type_name(type(exc)), str(exc), "".join(traceback.format_exception(exc))
    )
    stand_in.__cause__ = exc
    kind = OutcomeKind.RETRY if options.should_retry(exc, claim.num_retries) else OutcomeKind.FAILED
    logger.error(
        "invocation %s of %s raised %s, which is not an Exception; %s it, the worker carries on",
        claim.invocation_id,
        claim.task_id,
        stand_in,
        "retrying" if kind is OutcomeKind.RETRY else "failing",
        exc_info=exc,
        extra={"invocation_id": claim.invocation_id, "task": claim.task_id},
    )
    payload = app.serializer.dumps_error(stand_in)
    if kind is OutcomeKind.RETRY:
        return _retry_outcome(options, claim, payload)
    return Outcome(kind, payload)


def _retry_outcome(options: TaskOptions, claim: Claim, payload: bytes) -> Outcome:
    """A RETRY outcome that waits as the task's ``retry_delay``/``retry_backoff`` say."""
    return Outcome(OutcomeKind.RETRY, payload, retry_delay(options, claim.num_retries))


def _log_extra(claim: Claim) -> dict[str, str] | None:
    """Structured context for log records; not built when INFO lines are off (the hot path)."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    return {"invocation_id": claim.invocation_id, "task": claim.task_id}
