"""Invocation handles: what a task call returns, and what task code sees as ``task.invocation``.

A handle holds only the id and what the caller already knows; everything else (status, history,
result) is read fresh from the backend each time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from taskgate import context
from taskgate.async_results import wait_result
from taskgate.errors import (
    ConcurrencyControlledError,
    InvocationCancelledError,
    InvocationNotFoundError,
    ResultTimeoutError,
)
from taskgate.record import BlockedBy, FinalOutcome, InvocationRecord, Transition
from taskgate.status import InvocationStatus

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.task import Task

R = TypeVar("R")


class Invocation(Generic[R]):
    """One registered call of a task.

    Attributes:
        invocation_id: The id, unique within the app.
        task_id: The id of the task it calls.
    """

    def __init__(
        self,
        app: App,
        task_id: str,
        invocation_id: str,
        arguments: dict[str, Any] | None = None,
        *,
        attempt: int | None = None,
    ) -> None:
        self.app = app
        self.task_id = task_id
        self.invocation_id = invocation_id
        self._arguments = arguments
        self._attempt = attempt
        # The outcome, once read (never changes): a record, or the outcome alone.
        self._final: InvocationRecord | FinalOutcome | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.invocation_id} of {self.task_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Invocation) and other.invocation_id == self.invocation_id

    def __hash__(self) -> int:
        return hash(self.invocation_id)

    @property
    def task(self) -> Task[Any, R]:
        """The task object (imported by its module path if this process has not seen it)."""
        return cast("Task[Any, R]", self.app._resolve_task(self.task_id))

    @property
    def arguments(self) -> dict[str, Any]:
        """The bound call arguments the invocation runs with."""
        if self._arguments is None:
            self._arguments = self.app.serializer.loads(self._record().arguments)
        return self._arguments

    @property
    def status(self) -> InvocationStatus:
        """The current status, read fresh from the backend."""
        return self._record().status

    @property
    def attempt(self) -> int:
        """The fencing token of the current (or last) run: 1 for the first claim, +1 per claim.

        Inside task code this is the attempt being executed; use it to fence side effects.
        """
        if self._attempt is not None:
            return self._attempt
        return self._record().attempt

    @property
    def num_retries(self) -> int:
        """How many times the invocation was retried after a failure."""
        return self._record().num_retries

    @property
    def scheduled_for(self) -> float | None:
        """Epoch seconds before which a delayed call may not start (``with_options``), else None."""
        return self._record().scheduled_for

    @property
    def history(self) -> list[Transition]:
        """Status transitions, oldest first, as ``(status, timestamp, runner_id)``."""
        return list(self._record().history)

    @context.shielding
    def blocked_by(self) -> BlockedBy | None:
        """What a ``CONCURRENCY_CONTROLLED`` invocation waits for, else None.

        Returns:
            A :class:`~taskgate.record.BlockedBy`: ``scope_key`` names the task's running scope
            or the limit and key values it waits on (``limit tenant#tenant_id='42'``),
            ``holders`` the invocations holding that scope's slots (empty when a rate blocks
            it) and ``ready_at`` the epoch seconds when the rate admits it next (else None).
        """
        return self.app.backend.blocked_by(self.invocation_id)

    def cancel(self) -> bool:
        """Cancel the invocation.

        A waiting one becomes ``CANCELLED`` at once and never runs; a ``RUNNING`` one is
        interrupted by its runner and then ends ``CANCELLED``. Either way, ``.result`` then
        raises :class:`~taskgate.errors.InvocationCancelledError`.

        Returns:
            True when it is cancelled or its cancel was requested now; False when it was final
            already (or its cancel had been requested before).

        Raises:
            InvocationNotFoundError: the invocation does not exist (purged or expired).
        """
        return self.app.cancel(self.invocation_id)

    @property
    def result(self) -> R:
        """Block until final and return the value (or raise; see :meth:`get_result`)."""
        return self.get_result()

    def get_result(self, timeout: float | None = None) -> R:
        """Block until the invocation is final and return its value.

        Inside a task run by a runner, the runner runs other work on a stand-in thread while
        this waits, so the awaited invocation runs even with ``threads=1``;
        the waiting invocation keeps its own slots (running key, limits) meanwhile.

        Args:
            timeout: Seconds to wait at most; None (default) waits as long as it takes.

        Returns:
            The task's return value.

        Raises:
            ResultTimeoutError: ``timeout`` seconds passed first (the invocation is untouched).
            ConcurrencyControlledError: the invocation was dropped by running control.
            InvocationCancelledError: the invocation was cancelled.
            InvocationNotFoundError: the invocation does not exist (purged or expired).
            Exception: the task's own exception when it FAILED.
        """
        if self._final is None:
            self._final = self.app._read_result_ahead(self)  # shielded: an entry point
        if self._final is not None:
            return self._outcome(self._final)
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = self.app.backend.wait_final
        hooks = context.hooks
        if hooks.hook is None and hooks.shield is None:
            # Not a runner's thread (every caller outside task code): no stand-in to start,
            # nothing to shield, so none of their context managers on this path.
            record = self._wait_final(wait, deadline, timeout, None)
        else:
            # Inside a runner's task: a stand-in runs meanwhile, and each backend wait is
            # shielded and bounded by ``wait_slice`` so the body sees a timeout or cancel
            # promptly.
            with context.blocking_wait() as wait_slice:
                record = self._wait_final(context.shielding(wait), deadline, timeout, wait_slice)
        self._known_final(record)
        self.app._outcome_known(self.invocation_id)
        return self._outcome(record)

    def _wait_final(
        self,
        wait: Callable[[str, float | None], InvocationRecord | None],
        deadline: float | None,
        timeout: float | None,
        wait_slice: float | None,
    ) -> InvocationRecord:
        """The final record, by calling ``wait`` (the backend's ``wait_final``) until it is.

        Each call blocks until ``deadline`` (monotonic; None: no bound), and at most
        ``wait_slice`` seconds when that is not None.

        Raises:
            ResultTimeoutError: ``deadline`` passed first (``timeout`` is for the message).
            InvocationNotFoundError: the invocation does not exist (purged or expired).
        """
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait_slice is not None:
                remaining = wait_slice if remaining is None else min(remaining, wait_slice)
            record = wait(self.invocation_id, remaining)
            if record is None:
                raise InvocationNotFoundError(self.invocation_id)
            if record.status.is_final:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeoutError(self.invocation_id, cast(float, timeout), record.status)

    async def async_result(self, timeout: float | None = None) -> R:
        """:meth:`get_result` for asyncio callers, without blocking the event loop.

        The blocking wait runs on a dedicated pool of result-waiting threads, not the loop's
        small default executor, in steps (a cancelled awaiter frees its thread promptly); see
        :mod:`taskgate.async_results`.

        Args:
            timeout: Seconds to wait at most; None (default) waits as long as it takes.

        Returns:
            The task's return value.

        Raises:
            ResultTimeoutError: ``timeout`` seconds passed first (the invocation is untouched).
            Exception: as :meth:`get_result`: the task's own exception, or a taskgate error.
        """
        return await wait_result(self, timeout)

    @context.shielding
    def _record(self) -> InvocationRecord:
        record = self.app.backend.get(self.invocation_id)
        if record is None:
            raise InvocationNotFoundError(self.invocation_id)
        return record

    def _known_final(self, record: InvocationRecord | FinalOutcome) -> None:
        """Keep the final ``record``: the outcome is answered from it from now on."""
        self._final = record

    def _outcome(self, record: InvocationRecord | FinalOutcome) -> R:
        if record.status is InvocationStatus.SUCCESS:
            assert record.result is not None
            return cast(R, self.app.serializer.loads(record.result))
        if record.status is InvocationStatus.CONCURRENCY_CONTROLLED_FINAL:
            raise ConcurrencyControlledError(self.invocation_id, self.task_id)
        if record.status is InvocationStatus.CANCELLED:
            raise InvocationCancelledError(self.invocation_id, self.task_id)
        assert record.error is not None
        raise self.app.serializer.loads_error(record.error)


class DistributedInvocation(Invocation[R]):
    """An invocation this call registered."""


class ReusedInvocation(Invocation[R]):
    """A call folded into an invocation that was already waiting (registration control).

    Attributes:
        diff_arg: ``None``, or the arguments of this call when they differ from the waiting
            invocation's (which still runs with its own arguments).
    """

    def __init__(
        self,
        app: App,
        task_id: str,
        invocation_id: str,
        arguments: dict[str, Any] | None,
        diff_arg: dict[str, Any] | None,
    ) -> None:
        super().__init__(app, task_id, invocation_id, arguments)
        self.diff_arg = diff_arg


class InvocationGroup(Generic[R]):
    """The invocations of one ``task.parallelize(...)`` call, in input order.

    The group iterates over, indexes and counts its invocations (``group[0]``, ``len(group)``).

    Attributes:
        invocations: The invocation of each input, in input order.
    """

    def __init__(self, invocations: Sequence[Invocation[R]]) -> None:
        self.invocations: list[Invocation[R]] = list(invocations)

    def __iter__(self) -> Iterator[Invocation[R]]:
        return iter(self.invocations)

    def __len__(self) -> int:
        return len(self.invocations)

    def __getitem__(self, index: int) -> Invocation[R]:
        return self.invocations[index]

    @property
    def results(self) -> list[R]:
        """Every result, in input order (blocks until all are final; raises the first error).

        Outcomes already final are read in one go; only the others are waited for one by one.
        """
        pending = [i for i in self.invocations if i._final is None]
        if pending:  # outcomes known already are not read again (eager ones: no store at all)
            app = pending[0].app
            with context.shielded():
                final = app.backend.final_outcomes([i.invocation_id for i in pending])
                for invocation in pending:
                    record = final.get(invocation.invocation_id)
                    if record is not None:
                        invocation._known_final(record)
                        app._outcome_known(invocation.invocation_id)
        if all(i._final is not None for i in self.invocations):
            return [invocation.result for invocation in self.invocations]
        with context.blocking_wait():  # one stand-in for the whole wait, not one per result
            return [invocation.result for invocation in self.invocations]

    async def async_results(self) -> list[R]:
        """:attr:`results` for asyncio callers: awaits every result, without blocking the loop.

        Returns:
            Every result, in input order.

        Raises:
            Exception: the first error of the group, as :attr:`results` raises it.
        """
        return list(await asyncio.gather(*(i.async_result() for i in self.invocations)))
