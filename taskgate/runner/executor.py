"""Executing one claimed invocation and turning what happened into an :class:`Outcome`.

Nothing here raises: a task that cannot be found, arguments that cannot be read, an exception
from the task (any ``BaseException``, ``SystemExit`` included) and a result that cannot be
serialized all become outcomes, so a runner thread survives any task.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskgate import context, tracing
from taskgate.canonical import type_name
from taskgate.errors import (
    InvocationCancelledError,
    SerializationError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
)
from taskgate.invocation import DistributedInvocation, Invocation
from taskgate.logfields import claim_fields
from taskgate.record import Claim, InvocationRecord, Outcome, OutcomeKind
from taskgate.retry_delays import retry_delay
from taskgate.serializer import safe_repr, safe_str

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.runner.interrupts import RunningBodies
    from taskgate.runner.watchdog import Watchdog
    from taskgate.task import TaskOptions

logger = logging.getLogger(__name__)

_SUCCESS = OutcomeKind.SUCCESS  # a module global: an Enum member lookup costs ~70 ns on 3.11


def execute(
    app: App,
    claim: Claim,
    invocation: Invocation[Any] | None = None,
    *,
    bodies: RunningBodies | None = None,
    watchdog: Watchdog | None = None,
    runner_id: str | None = None,
) -> Outcome:
    """Run the claimed invocation in this thread and report how it ended.

    ``invocation`` is what task code sees as ``task.invocation``; by default a handle that
    reads the backend (eager mode passes its own, which holds the record in memory).

    With ``bodies``, the body can be interrupted while it runs (a cancel request, and with
    ``watchdog`` its task's ``timeout``); an interrupted run ends as :func:`interrupted_outcome`
    says, whatever the body did with the exception. A body blocked in one long C call
    (``time.sleep(600)``) sees the exception only when that call returns.

    ``runner_id`` (None in eager mode) goes into the log lines' ``extra``. With tracing on
    (:mod:`taskgate.tracing`), the run is a span, child of its call's span.
    """
    if not tracing.active:  # the hot path: one check of a cached bool
        return _execute(app, claim, invocation, bodies, watchdog, runner_id)
    read = invocation._record if invocation is not None else _reader(app, claim)
    return tracing.run_traced(
        claim,
        runner_id,
        read,
        lambda: _execute(app, claim, invocation, bodies, watchdog, runner_id),
    )


def _reader(app: App, claim: Claim) -> Callable[[], InvocationRecord | None]:
    """What reads ``claim``'s record for its trace context (only when tracing is on)."""
    return lambda: app.backend.get(claim.invocation_id)


def _execute(
    app: App,
    claim: Claim,
    invocation: Invocation[Any] | None,
    bodies: RunningBodies | None,
    watchdog: Watchdog | None,
    runner_id: str | None,
) -> Outcome:
    serializer = app.serializer
    extra = _log_extra(claim, runner_id)
    try:
        task = app._resolve_task(claim.task_id)
        arguments = serializer.loads(claim.arguments)
    except (TaskNotFoundError, SerializationError) as exc:
        return unloadable_outcome(app, claim, exc, runner_id)

    invocation = (
        DistributedInvocation(
            app, claim.task_id, claim.invocation_id, arguments, attempt=claim.attempt
        )
        if invocation is None
        else invocation
    )
    if extra is not None:  # INFO is on (see _log_extra): the hot path skips both lines
        logger.info(
            "invocation %s of %s started (attempt %s)",
            claim.invocation_id,
            claim.task_id,
            claim.attempt,
            extra=extra,
        )
    token = context.enter(invocation)
    body = None if bodies is None else bodies.thread_body(claim.invocation_id, claim.attempt)
    value: Any = None
    raised: BaseException | None = None
    # The body's run. An exception delivered to the body (a timeout, a cancel) may fire up to
    # the end of leave(), even inside leave() itself: it is retried until it returns, and from
    # then on nothing can fire, so the runner's own code never sees an interrupt meant for a body.
    try:
        try:
            if body is not None:
                assert bodies is not None
                bodies.enter(body)
                if watchdog is not None and task.options.timeout is not None:
                    # Shielded: a cancel landing inside arm() would leave the watchdog's lock
                    # held; deferred, it is raised when the shield ends, as the body's.
                    with bodies.shield():
                        watchdog.arm(body, task.options.timeout)
            value = task._run(arguments)
        finally:
            left = body is None
            while not left:
                try:
                    assert bodies is not None and body is not None
                    bodies.leave(body)
                    left = True
                except BaseException as exc:
                    if body is None or not body.fired(exc):
                        raise
    except BaseException as exc:
        value, raised = None, exc
    finally:
        context.leave(token)
    delivered = None if body is None else body.delivered
    if raised is not None or delivered is not None:
        return _unsuccessful_outcome(app, claim, task.options, delivered, raised, runner_id)

    return _success_outcome(app, claim, value, extra, runner_id)


def unloadable_outcome(
    app: App, claim: Claim, exc: TaskNotFoundError | SerializationError, runner_id: str | None
) -> Outcome:
    """FAILED, logged: ``claim``'s task or arguments cannot be loaded in this process."""
    logger.error(
        "invocation %s of %s cannot run: %s",
        claim.invocation_id,
        claim.task_id,
        exc,
        extra=claim_fields(claim, runner_id),
    )
    return Outcome(OutcomeKind.FAILED, app.serializer.dumps_error(exc))


def _success_outcome(
    app: App, claim: Claim, value: Any, extra: dict[str, Any] | None, runner_id: str | None
) -> Outcome:
    """SUCCESS with the stored ``value``, or FAILED when it cannot be serialized."""
    serializer = app.serializer
    try:
        payload = serializer.dumps(value)
    except SerializationError as exc:
        logger.error(
            "invocation %s of %s returned a result that cannot be stored: %s",
            claim.invocation_id,
            claim.task_id,
            exc,
            extra=claim_fields(claim, runner_id),
        )
        return Outcome(OutcomeKind.FAILED, serializer.dumps_error(exc))
    if extra is not None:
        logger.info(
            "invocation %s of %s succeeded", claim.invocation_id, claim.task_id, extra=extra
        )
    return Outcome(_SUCCESS, payload)


def _unsuccessful_outcome(
    app: App,
    claim: Claim,
    options: TaskOptions,
    delivered: type[BaseException] | None,
    raised: BaseException | None,
    runner_id: str | None,
) -> Outcome:
    """The outcome of a run that was interrupted (``delivered``) or raised ``raised``."""
    if delivered is not None:
        return interrupted_outcome(app, claim, options, delivered, runner_id)
    if isinstance(raised, Exception):
        return _exception_outcome(app, claim, options, raised, runner_id)
    assert raised is not None
    # Bodies run on runner threads, never on the main thread where SIGINT lands, so this is
    # the task's own doing (sys.exit(), raise KeyboardInterrupt...): it must not end the
    # worker thread, or the invocation would stay RUNNING, its lease renewed, forever.
    return _base_exception_outcome(app, claim, options, raised, runner_id)


def _exception_outcome(
    app: App, claim: Claim, options: TaskOptions, exc: Exception, runner_id: str | None
) -> Outcome:
    """Retry (if ``retry_for`` says so) or fail a run that raised an ``Exception``."""
    serializer = app.serializer
    if tracing.active:
        tracing.note_exception(exc)
    if options.should_retry(exc, claim.num_retries):
        logger.info(
            "invocation %s of %s raised %s; retry %s of %s",
            claim.invocation_id,
            claim.task_id,
            safe_repr(exc),  # not %r: a handler that raises on a bad repr would end the worker
            claim.num_retries + 1,
            claim.max_retries,
            extra=claim_fields(claim, runner_id),
        )
        return _retry_outcome(options, claim, serializer.dumps_error(exc))
    logger.warning(  # a final failure: someone should see it, with the task's frames
        "invocation %s of %s failed: %s",
        claim.invocation_id,
        claim.task_id,
        safe_repr(exc),
        exc_info=exc,
        extra=claim_fields(claim, runner_id),
    )
    return Outcome(OutcomeKind.FAILED, serializer.dumps_error(exc))


def interrupted_outcome(
    app: App,
    claim: Claim,
    options: TaskOptions | None,
    error: type[BaseException],
    runner_id: str | None = None,
) -> Outcome:
    """The outcome of a run interrupted with ``error`` (whatever the body did with it).

    A cancel ends ``CANCELLED``; a timeout fails with :class:`TaskTimeoutError` (retried if
    ``retry_for`` names it). ``options`` None (a task this process cannot import): no retry.
    Also what a ProcessRunner's supervisor reports for a worker it had to kill.
    """
    serializer = app.serializer
    if issubclass(error, InvocationCancelledError):
        logger.warning(
            "invocation %s of %s cancelled while running",
            claim.invocation_id,
            claim.task_id,
            extra=claim_fields(claim, runner_id),
        )
        cancelled = InvocationCancelledError(claim.invocation_id, claim.task_id)
        return Outcome(OutcomeKind.CANCELLED, serializer.dumps_error(cancelled))
    timeout = None if options is None else options.timeout
    stored = TaskTimeoutError(
        f"invocation {claim.invocation_id} of {claim.task_id} ran longer than its timeout "
        f"({timeout} s) and was interrupted"
    )
    retry = options is not None and options.should_retry(stored, claim.num_retries)
    logger.warning(
        "invocation %s of %s timed out after %s s; %s",
        claim.invocation_id,
        claim.task_id,
        timeout,
        "retrying" if retry else "failing",
        extra=claim_fields(claim, runner_id),
    )
    if retry:
        assert options is not None
        return _retry_outcome(options, claim, serializer.dumps_error(stored))
    return Outcome(OutcomeKind.FAILED, serializer.dumps_error(stored))


def _base_exception_outcome(
    app: App,
    claim: Claim,
    options: TaskOptions,
    exc: BaseException,
    runner_id: str | None,
) -> Outcome:
    """Fail (or retry, if ``retry_for`` names its type) a run that raised a ``BaseException``.

    The caller gets a :class:`TaskFailedError` naming the original type, never the exception
    itself: re-raising ``SystemExit`` or ``KeyboardInterrupt`` from ``.result`` would end the
    caller's program, and ``except Exception`` would not catch it.
    """
    stand_in = TaskFailedError(
        type_name(type(exc)), safe_str(exc), "".join(traceback.format_exception(exc))
    )
    stand_in.__cause__ = exc
    if tracing.active:
        tracing.note_exception(exc)
    kind = OutcomeKind.RETRY if options.should_retry(exc, claim.num_retries) else OutcomeKind.FAILED
    logger.error(
        "invocation %s of %s raised %s, which is not an Exception; %s it, the worker carries on",
        claim.invocation_id,
        claim.task_id,
        stand_in,
        "retrying" if kind is OutcomeKind.RETRY else "failing",
        exc_info=exc,
        extra=claim_fields(claim, runner_id),
    )
    payload = app.serializer.dumps_error(stand_in)
    if kind is OutcomeKind.RETRY:
        return _retry_outcome(options, claim, payload)
    return Outcome(kind, payload)


def _retry_outcome(options: TaskOptions, claim: Claim, payload: bytes) -> Outcome:
    """A RETRY outcome that waits as the task's ``retry_delay``/``retry_backoff`` say."""
    return Outcome(OutcomeKind.RETRY, payload, retry_delay(options, claim.num_retries))


def _log_extra(claim: Claim, runner_id: str | None) -> dict[str, Any] | None:
    """Structured context for log records; not built when INFO lines are off (the hot path)."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    return claim_fields(claim, runner_id)
