"""Executing one claimed ``async def`` invocation on an event loop, into an :class:`Outcome`.

The async twin of :func:`taskgate.runner.executor.execute`, with the same guarantees: nothing
here raises (a task that cannot be found, arguments that cannot be read, any exception of the
body and a result that cannot be serialized all become outcomes).

Interrupting an async body (a timeout, a cancel request) cancels its asyncio task: the body
sees ``CancelledError`` at its current ``await`` and unwinds (``finally`` blocks and ``async
with`` exits run); the run then ends with the exception the interrupt named
(:class:`~taskgate.errors.TaskTimeoutError` or
:class:`~taskgate.errors.InvocationCancelledError`), never a bare ``CancelledError``. The
outcome exists only once the body has stopped, so slots are never released under a live body.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from taskgate import context, tracing
from taskgate.errors import SerializationError, TaskNotFoundError, TaskTimeoutError
from taskgate.invocation import DistributedInvocation, Invocation
from taskgate.logfields import claim_fields
from taskgate.record import Claim, Outcome
from taskgate.runner.executor import (
    _base_exception_outcome,
    _exception_outcome,
    _reader,
    _success_outcome,
    interrupted_outcome,
    unloadable_outcome,
)

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.runner.interrupts import RunningBodies
    from taskgate.task import Task

logger = logging.getLogger(__name__)


async def execute_async(
    app: App,
    claim: Claim,
    bodies: RunningBodies | None = None,
    invocation: Invocation[Any] | None = None,
    runner_id: str | None = None,
) -> Outcome:
    """Await the claimed ``async def`` invocation in the running loop and report how it ended.

    ``bodies``: where the body registers while it runs, so that a timeout watcher or a cancel
    request can interrupt it (None: nothing can, as in eager mode). The task's ``timeout`` is
    enforced here, on the loop. ``invocation`` is what the body sees as ``task.invocation``
    (a handle reading the backend by default). ``runner_id`` (None in eager mode) goes into the
    log lines' ``extra``. With tracing on, the run is a span, child of its call's span.

    Raises:
        asyncio.CancelledError: only when the loop cancelled the run for no interrupt (the
            runner abandons it on a forced or timed-out stop); its outcome is not reported.
    """
    if not tracing.active:  # one check of a cached bool when tracing is off
        return await _execute_async(app, claim, bodies, invocation, runner_id)
    read = invocation._record if invocation is not None else _reader(app, claim)
    return await tracing.run_traced_async(
        claim, runner_id, read, lambda: _execute_async(app, claim, bodies, invocation, runner_id)
    )


async def _execute_async(
    app: App,
    claim: Claim,
    bodies: RunningBodies | None,
    invocation: Invocation[Any] | None,
    runner_id: str | None,
) -> Outcome:
    serializer = app.serializer
    # Built only when INFO lines are written (the hot path), as the executor's.
    extra = claim_fields(claim, runner_id) if logger.isEnabledFor(logging.INFO) else None
    try:
        task = app._resolve_task(claim.task_id)
        arguments = serializer.loads(claim.arguments)
    except (TaskNotFoundError, SerializationError) as exc:
        return unloadable_outcome(app, claim, exc, runner_id)
    if invocation is None:
        invocation = DistributedInvocation(
            app, claim.task_id, claim.invocation_id, arguments, attempt=claim.attempt
        )
    if extra is not None:
        logger.info(
            "invocation %s of %s started on the event loop (attempt %s)",
            claim.invocation_id,
            claim.task_id,
            claim.attempt,
            extra=extra,
        )
    # This coroutine runs as its own asyncio task, in a copy of the loop's context: the
    # invocation set here is what ``task.invocation`` reads in the body, and in the tasks it
    # spawns (they copy this context), never in another invocation's.
    context.enter(invocation)
    interrupted: list[type[BaseException]] = []
    try:
        value = await _interruptible(task, claim, arguments, bodies, interrupted)
    except _Interrupted:
        return interrupted_outcome(app, claim, task.options, interrupted[0], runner_id)
    except Exception as exc:
        if interrupted:  # the body turned the cancellation into an error: the interrupt decides
            return interrupted_outcome(app, claim, task.options, interrupted[0], runner_id)
        return _exception_outcome(app, claim, task.options, exc, runner_id)
    except asyncio.CancelledError:
        raise  # abandoned by the runner (not an interrupt): nothing is reported
    except BaseException as exc:
        if interrupted:
            return interrupted_outcome(app, claim, task.options, interrupted[0], runner_id)
        return _base_exception_outcome(app, claim, task.options, exc, runner_id)
    if interrupted:  # the body swallowed the cancellation: the interrupt still decides
        return interrupted_outcome(app, claim, task.options, interrupted[0], runner_id)
    return _success_outcome(app, claim, value, extra, runner_id)


async def _interruptible(
    task: Task[Any, Any],
    claim: Claim,
    arguments: dict[str, Any],
    bodies: RunningBodies | None,
    interrupted: list[type[BaseException]],
) -> Any:
    """Await the body, registered in ``bodies``, within the task's timeout.

    An interrupt appends its exception type to ``interrupted`` and cancels this asyncio task;
    the resulting ``CancelledError`` (or the expiry of the task's timeout, which appends
    ``TaskTimeoutError``) raises :class:`_Interrupted`.
    """
    current = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert current is not None  # always awaited inside a task

    def interrupt(error: type[BaseException]) -> None:
        # Called from any thread (a cancel watcher, a timeout): only the loop may cancel.
        interrupted.append(error)
        loop.call_soon_threadsafe(current.cancel)

    timeout = task.options.timeout
    deadline = asyncio.timeout(timeout)  # None: no deadline
    try:
        if bodies is None:
            async with deadline:
                value = await task._run(arguments)
        else:
            with bodies.running(claim.invocation_id, interrupt, claim.attempt):
                async with deadline:
                    value = await task._run(arguments)
    except asyncio.CancelledError:
        if not interrupted:
            raise
        current.uncancel()
        raise _Interrupted from None
    except TimeoutError:
        if not deadline.expired():
            raise  # the body's own TimeoutError
        interrupted.append(TaskTimeoutError)
        raise _Interrupted from None
    if deadline.expired():  # the body swallowed its timeout's cancellation: it still timed out
        interrupted.append(TaskTimeoutError)
        raise _Interrupted
    return value


class _Interrupted(Exception):
    """The body stopped because of the interrupt recorded first in ``interrupted``."""


def execute_async_inline(app: App, claim: Claim, invocation: Invocation[Any]) -> Outcome:
    """Run an ``async def`` invocation to its end from synchronous code (eager mode).

    With no event loop running in this thread, ``asyncio.run`` runs it here. Called from
    inside a running loop (an async test calling a task), it cannot be awaited there without
    making the call itself async: it runs on a fresh loop in a helper thread, and the caller's
    thread (and its loop) waits until it ends. The task's ``timeout`` is enforced on that loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(execute_async(app, claim, None, invocation))
    outcome: list[Outcome] = []

    def run() -> None:
        outcome.append(asyncio.run(execute_async(app, claim, None, invocation)))

    helper = threading.Thread(target=run, name=f"taskgate-eager-{claim.invocation_id}")
    helper.start()
    helper.join()
    return outcome[0]
