"""Eager mode (``App(eager=True)``, ``TASKGATE_EAGER=1``): every call runs at once, inline.

Meant for unit tests of code that calls tasks: no runner, no store. A call runs its task in the
caller's thread before it returns, through the runner's own executor (the same retry rules, the
same handling of exceptions, ``task.invocation`` inside the body), and returns an
:class:`EagerInvocation` that is already final.

What stays as in a real run: arguments are bound (``TypeError`` for a call that does not fit),
their concurrency keys are computed, and arguments and result go through the app's serializer
(``dumps`` then ``loads``), so a test fails where a real call or run would: unpicklable arguments
raise ``SerializationError`` at the call, an unpicklable result fails the invocation.

What does not apply, because nothing waits in eager mode: registration concurrency never folds a
call into another (each call is its own invocation), running concurrency and limits never hold a
call back, and retries run immediately: delayed calls (``with_options``) and retry delays do not
wait either; ``queue`` and ``priority`` (task options or ``with_options``) are accepted and
recorded but order nothing; ``timeout`` is not enforced inline for a sync body (it runs in the
caller's thread, which nothing may interrupt); ``cancel()`` returns False (the invocation is
final). An ``async def`` task runs with ``asyncio.run`` in the caller's thread; called from
inside a running event loop (an async test), it runs on a fresh loop in a helper thread while
the caller waits (the caller's loop is blocked meanwhile); its ``timeout`` is enforced on that
loop. No backend is created, connected or written to: the store-wide reads
(``app.get_invocation``, ``app.invocations``, ``taskgate status``) never see eager invocations.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from taskgate import tracing
from taskgate.errors import ResultTimeoutError
from taskgate.invocation import DistributedInvocation
from taskgate.record import BlockedBy, Claim, InvocationRecord, OutcomeKind, Transition
from taskgate.runner.async_exec import execute_async_inline
from taskgate.runner.executor import execute
from taskgate.status import InvocationStatus

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.task import Task

R = TypeVar("R")

_S = InvocationStatus


class EagerInvocation(DistributedInvocation[R]):
    """An invocation run in eager mode: its record lives in this handle, never in a backend.

    ``status``, ``history``, ``attempt`` and ``num_retries`` read that record; ``history`` has
    ``REGISTERED``, then ``RUNNING`` (and ``RETRY``, ``RUNNING`` per retry), then the final
    status, each with its time and no runner id.
    """

    def __init__(
        self, app: App, record: InvocationRecord, arguments: dict[str, Any] | None
    ) -> None:
        super().__init__(app, record.task_id, record.invocation_id, arguments)
        self._live = record

    def _record(self) -> InvocationRecord:
        return self._live

    def blocked_by(self) -> BlockedBy | None:
        """Always None: nothing waits in eager mode."""
        return None

    def cancel(self) -> bool:
        """Always False: an eager invocation is final once its call returns (and its own body,
        which could ask while it runs, cannot be interrupted inline)."""
        return False

    def get_result(self, timeout: float | None = None) -> R:
        """The value, or the task's exception; never waits (the run is over when the call
        returns).

        Raises:
            ResultTimeoutError: with a ``timeout``, when the task's own body asks for its result.
            RuntimeError: without one, in that same case: a real run would wait forever.
            Exception: the task's own exception when it FAILED.
        """
        if self._final is None:  # only the body itself can ask before its run is over
            if timeout is not None:
                raise ResultTimeoutError(self.invocation_id, timeout, self._live.status)
            raise RuntimeError(
                f"invocation {self.invocation_id} of {self.task_id} waits for its own result, "
                "which would never come with a runner; return the value instead"
            )
        return self._outcome(self._final)

    async def async_result(self, timeout: float | None = None) -> R:
        """:meth:`get_result` for asyncio callers (no thread: it never blocks)."""
        return self.get_result(timeout)


def run_calls(
    app: App, task: Task[Any, R], calls: Sequence[dict[str, Any]]
) -> list[EagerInvocation[R]]:
    """Run one call of ``task`` per bound ``calls`` item, in order, each to its end.

    Every call is bound and serialized before the first runs, as ``task.parallelize`` registers
    nothing when one call cannot be.

    Raises:
        SerializationError: a call's arguments, or a value forming one of its concurrency keys,
            cannot be serialized; nothing has run.
    """
    invocations = [_prepare(app, task, arguments) for arguments in calls]
    for invocation in invocations:
        if tracing.active is False:
            _run(app, invocation)
        else:
            with tracing.eager_call(invocation._live):  # the call span, parent of the run's
                _run(app, invocation)
    return invocations


def _prepare(app: App, task: Task[Any, R], arguments: dict[str, Any]) -> EagerInvocation[R]:
    record = app._build_record(task, arguments)  # the record a real call would register
    record.history.append(Transition(_S.REGISTERED, time.time(), None))
    return EagerInvocation(app, record, arguments)


def _run(app: App, invocation: EagerInvocation[Any]) -> None:
    """Run ``invocation`` until it is final, retrying inline as a runner would."""
    record = invocation._live
    while True:
        record.attempt += 1
        _transition(record, _S.RUNNING)
        claim = Claim(
            invocation_id=record.invocation_id,
            task_id=record.task_id,
            arguments=record.arguments,
            attempt=record.attempt,
            num_retries=record.num_retries,
            max_retries=record.max_retries,
        )
        if app._resolve_task(record.task_id).is_async:
            outcome = execute_async_inline(app, claim, invocation)
        else:
            outcome = execute(app, claim, invocation)
        if outcome.kind is OutcomeKind.RETRY:
            record.num_retries += 1
            record.error = outcome.payload
            _transition(record, _S.RETRY)
            continue
        if outcome.kind is OutcomeKind.SUCCESS:
            record.result = outcome.payload
            _transition(record, _S.SUCCESS)
        else:
            record.error = outcome.payload
            _transition(record, _S.FAILED)
        invocation._known_final(record)
        return


def _transition(record: InvocationRecord, status: InvocationStatus) -> None:
    record.status = status
    record.history.append(Transition(status, time.time(), None))
