"""The App: task registry, settings, and the wiring of backend, serializer and runner."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from taskgate import context
from taskgate.backends import Backend, BackendOptions, create_backend
from taskgate.concurrency import describe_argument_diff, plan_for_call
from taskgate.eager import run_calls
from taskgate.errors import (
    InvocationConcurrencyWithDifferentArgumentsError,
    InvocationNotFoundError,
    RunnerLostError,
    TaskNotFoundError,
)
from taskgate.invocation import DistributedInvocation, Invocation, ReusedInvocation
from taskgate.limit_admin import LimitInfo, describe_limits, reset_limit, set_limit
from taskgate.limits import Limit, LimitRegistry
from taskgate.locate import SPAWNED_MAIN
from taskgate.readahead import ResultReadAhead
from taskgate.record import CancelResult, InvocationRecord, Rate, RegisterResult
from taskgate.runner import Runner, build_runner
from taskgate.serializer import Serializer, get_serializer
from taskgate.settings import Settings
from taskgate.status import InvocationStatus
from taskgate.task import Task, TaskOptions, main_script_task_message

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


# The variant nibble of a version 4 UUID: 10xx in binary, the low two bits random.
_VARIANT_DIGIT = dict(zip("0123456789abcdef", "89ab" * 4, strict=True))


def new_invocation_id() -> str:
    """A new random invocation id: a version 4 UUID string, as ``str(uuid.uuid4())`` gives.

    The same 122 random bits from ``os.urandom``, in the same format, for less than half the
    cost: ``uuid.uuid4()`` builds a ``UUID`` object in Python only for ``str()`` to format it
    again, on the path of every call.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:]}"


class TaskDecorator(Protocol):
    """What ``app.task(**options)`` returns: it turns a function into a :class:`Task`."""

    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """A taskgate application: its tasks, settings, backend and runner.

    Args:
        app_id: Namespace of every stored record; apps with different ids never see each
            other's invocations, even on one store.
        backend: Backend URL; default ``TASKGATE_BACKEND``, else the embedded default.
        serializer: ``"pickle"`` (default) or ``"json"``.
        runner_cls: ``"ThreadRunner"`` (default) or ``"ProcessRunner"``.
        **settings: Any other :class:`~taskgate.settings.Settings` field.

    Raises:
        ConfigError: an unknown setting or an invalid value.
    """

    def __init__(
        self,
        app_id: str = "default",
        *,
        backend: str | None = None,
        serializer: str | None = None,
        runner_cls: str | None = None,
        **settings: Any,
    ) -> None:
        self.app_id = app_id
        self.import_path: str | None = None
        """``module:attr`` this app was loaded from by the CLI or a worker, if it was."""
        self.conf = Settings.load(
            {"backend": backend, "serializer": serializer, "runner_cls": runner_cls, **settings}
        )
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._limits = LimitRegistry()
        self._backend_lock = threading.Lock()
        self._runner_lock = threading.Lock()
        self._backend: Backend | None = None
        self._backend_key: tuple[str, str, float, int] | None = None
        self._serializer: Serializer | None = None
        self._runner: Runner | None = None
        self._read_ahead = ResultReadAhead()

    def __repr__(self) -> str:
        return f"<App {self.app_id} backend={self.conf.backend_display}>"

    # --- tasks ---------------------------------------------------------------------------------

    # An ``async def`` task's calls give invocations of what its coroutine returns: the first
    # overload of each pair says so (it overlaps the second, which mypy accepts in this order).
    @overload
    def task(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, /, **options: Any) -> TaskDecorator: ...

    def task(
        self, func: Callable[..., Any] | None = None, /, **options: Any
    ) -> Task[Any, Any] | TaskDecorator:
        """Register a function as a task: ``@app.task`` or ``@app.task(**options)``.

        Raises:
            InvalidTaskOptionsError: invalid options (checked here, at decoration time).
        """

        def decorate(function: Callable[..., Any]) -> Task[Any, Any]:
            built = TaskOptions.build(function, options, self._limits.declared)
            task: Task[Any, Any] = Task(self, function, built)
            self._tasks[task.task_id] = task
            return task

        return decorate(func) if func is not None else cast(TaskDecorator, decorate)

    # --- limits (API.md section 8) --------------------------------------------------------------

    def limit(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: str | Rate | None = None,
        key: str | tuple[str, ...] | None = None,
        fair_by: str | tuple[str, ...] | None = None,
    ) -> Limit:
        """Declare a named limit that tasks list in ``limits=[...]``; declaring stores nothing.

        Args:
            name: The limit's name (non-empty, no control characters, no ``#``).
            concurrency: At most this many invocations using it run at once (per key value).
            rate: ``"M/P"``: at most M starts within any window of P (``s``, ``m``, ``h``, ``d``
                or seconds: ``"120/m"``, ``"5/2.5s"``), per key value; or a ``Rate``.
            key: An argument name, or a tuple of them: one budget per value of those arguments.
            fair_by: An argument name, or a tuple of them: waiters of one budget are admitted
                round robin across the values of those arguments.

        Returns:
            The limit; declaring the same name with the same values returns the same object.

        Raises:
            InvalidTaskOptionsError: neither ``concurrency`` nor ``rate``, an invalid value, or
                ``name`` already declared with other values.
        """
        return self._limits.declare(
            name, concurrency=concurrency, rate=rate, key=key, fair_by=fair_by
        )

    def set_limit(
        self, name: str, *, concurrency: int | None = None, rate: str | Rate | None = None
    ) -> None:
        """Store a live override of limit ``name`` that every runner obeys from its next admission.

        The override replaces any previous one; a value left out (None) keeps the declared
        value. Raising a limit admits waiters at once; lowering one never interrupts running
        work. ``name`` need not be declared in this process (the runners using it may declare
        it elsewhere).

        Raises:
            InvalidTaskOptionsError: neither value given, or an invalid name or value.
            BackendUnavailableError: the store cannot be reached.
        """
        set_limit(self.backend, self._limits.declared, name, concurrency=concurrency, rate=rate)

    def reset_limit(self, name: str) -> None:
        """Delete the override of limit ``name`` (nothing if none): declared values apply again.

        Raises:
            InvalidTaskOptionsError: an invalid name.
            BackendUnavailableError: the store cannot be reached.
        """
        reset_limit(self.backend, name)

    def limits(self) -> list[LimitInfo]:
        """Every limit declared in this process, overridden in the store or in use, by name.

        Returns:
            One :class:`~taskgate.limit_admin.LimitInfo` per limit: effective values (override
            over declared), whether overridden, slots held, waiters and starts in the current
            rate window (summed over key values), and the detail per key value.

        Raises:
            BackendUnavailableError: the store cannot be reached.
        """
        return describe_limits(self.backend, self._limits.declared)

    @property
    def tasks(self) -> dict[str, Task[Any, Any]]:
        """The tasks registered with this app so far, by task id (a copy)."""
        return dict(self._tasks)

    def resolve_task(self, task_id: str) -> Task[Any, Any]:
        """The task registered under ``task_id``, importing its module if needed.

        Raises:
            TaskNotFoundError: the module cannot be imported or defines no such task here.
        """
        task = self._tasks.get(task_id)
        if task is not None:
            return task
        module_name, _, function_name = task_id.rpartition(".")
        if module_name == "__main__":
            if SPAWNED_MAIN not in sys.modules:
                raise TaskNotFoundError(main_script_task_message(task_id))
            module_name = SPAWNED_MAIN  # the parent's main script, as a spawned worker sees it
        try:
            importlib.import_module(module_name)
        except Exception as exc:
            raise TaskNotFoundError(
                f"cannot import module {module_name!r} of task {task_id}: {exc}; make sure the "
                "runner's working directory and PYTHONPATH match the caller's"
            ) from exc
        task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(
                f"module {module_name!r} defines no task {function_name!r} registered with app "
                f"{self.app_id!r}; is the function decorated with this app's @app.task?"
            )
        return task

    # --- wiring --------------------------------------------------------------------------------

    @property
    def serializer(self) -> Serializer:
        """The serializer named by ``conf.serializer``."""
        if self._serializer is None or self._serializer.name != self.conf.serializer:
            self._serializer = get_serializer(self.conf.serializer)
        return self._serializer

    @property
    def backend(self) -> Backend:
        """The backend named by ``conf.backend`` (built on first use, rebuilt if it changes)."""
        key = (
            self.conf.backend_url,
            self.conf.serializer,
            self.conf.result_ttl_seconds,
            self.conf.max_recoveries,
        )
        backend = self._backend
        if backend is not None and self._backend_key == key:
            return backend
        with self._backend_lock:
            if self._backend is None or self._backend_key != key:
                if self._backend is not None:
                    self._backend.close()
                self._backend = create_backend(self.conf.backend_url, self._backend_options())
                self._backend_key = key
            return self._backend

    def _backend_options(self) -> BackendOptions:
        lost = RunnerLostError(
            f"the runner executing this invocation stopped renewing its lease "
            f"{self.conf.max_recoveries + 1} times (max_recoveries={self.conf.max_recoveries}); "
            "does the task crash or hang its runner?"
        )
        return BackendOptions(
            app_id=self.app_id,
            result_ttl_seconds=self.conf.result_ttl_seconds,
            max_recoveries=self.conf.max_recoveries,
            lost_error=self.serializer.dumps_error(lost),
        )

    @property
    def runner(self) -> Runner:
        """The runner of class ``conf.runner_cls`` (rebuilt if that setting changes)."""
        with self._runner_lock:
            runner = self._runner
            if runner is None or (
                type(runner).__name__ != self.conf.runner_cls and not runner.is_running
            ):
                runner = self._runner = build_runner(self)
            return runner

    # --- calls ---------------------------------------------------------------------------------

    def register_call(
        self,
        task: Task[Any, R],
        arguments: dict[str, Any],
        scheduled_for: float | None = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
    ) -> Invocation[R]:
        """Register one call of ``task`` with bound ``arguments`` (what ``task(...)`` does).

        ``scheduled_for``: epoch seconds before which it may not start; ``priority`` and
        ``queue`` replace the task's own when not None (``with_options``, validated there).
        Eager mode runs the call at once anyway. Raises as :meth:`register_calls` does.
        Shielded (:func:`context.shielded`) on a runner's thread, like the other entry points;
        the check is inlined here (no wrapper frame on the path of every task call).
        """
        shield = context.hooks.shield
        if shield is None:
            return self._register_call(task, arguments, scheduled_for, priority, queue)
        with shield():
            return self._register_call(task, arguments, scheduled_for, priority, queue)

    def _register_call(
        self,
        task: Task[Any, R],
        arguments: dict[str, Any],
        scheduled_for: float | None,
        priority: int | None,
        queue: str | None,
    ) -> Invocation[R]:
        if self.conf.eager:
            return run_calls(self, task, [arguments])[0]
        record = self.build_record(task, arguments, scheduled_for, priority=priority, queue=queue)
        backend = self.backend
        invocation = self._invocation(task, arguments, record, backend.register(record))
        if backend.reads_cost_round_trips:
            self._read_ahead.track(invocation)
        return invocation

    @context.shielding
    def register_calls(
        self, task: Task[Any, R], calls: Sequence[dict[str, Any]]
    ) -> list[Invocation[R]]:
        """Register calls of ``task`` in one backend step per batch (``task.parallelize``).

        Every call is serialized before anything is registered. Each registration is atomic on
        its own, with concurrency control exactly as for single calls. In eager mode the calls
        run instead, one after the other (see :mod:`taskgate.eager`).

        Raises:
            SerializationError: a call's arguments cannot be serialized; nothing is registered.
            InvocationConcurrencyWithDifferentArgumentsError: for the first folded call whose
                arguments differ, when the task says so (the calls before it are registered).
        """
        if self.conf.eager:
            return list(run_calls(self, task, calls))
        records = [self.build_record(task, arguments) for arguments in calls]
        backend = self.backend
        registered = backend.register_many(records)
        invocations = [
            self._invocation(task, arguments, record, result)
            for arguments, record, result in zip(calls, records, registered, strict=True)
        ]
        if backend.reads_cost_round_trips:
            for invocation in invocations:
                self._read_ahead.track(invocation)
        return invocations

    @context.shielding
    def read_result_ahead(self, invocation: Invocation[Any]) -> InvocationRecord | None:
        """``invocation``'s final record, read with the next outstanding results of this process.

        None when it is not final yet or there is nothing to read ahead (see
        :mod:`taskgate.readahead`); :meth:`Invocation.get_result` then waits as usual.
        """
        backend = self.backend
        if not backend.reads_cost_round_trips:
            return None
        return self._read_ahead.read(invocation, backend)

    @context.shielding
    def outcome_known(self, invocation_id: str) -> None:
        """The caller has read the outcome of ``invocation_id``: stop reading ahead for it."""
        self._read_ahead.forget(invocation_id)

    def build_record(
        self,
        task: Task[Any, Any],
        arguments: dict[str, Any],
        scheduled_for: float | None = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
    ) -> InvocationRecord:
        """The record one call of ``task`` registers (arguments serialized, keys computed);
        ``priority`` and ``queue`` replace the task's options when not None.

        Raises:
            SerializationError: the arguments, or a value forming a key, cannot be serialized.
        """
        options = task.options
        return InvocationRecord(
            invocation_id=new_invocation_id(),
            task_id=task.task_id,
            arguments=self.serializer.dumps(arguments),
            plan=plan_for_call(options, task.task_id, arguments),
            max_retries=options.max_retries,
            priority=options.priority if priority is None else priority,
            queue=options.queue if queue is None else queue,
            scheduled_for=scheduled_for,
            created_at=time.time(),
        )

    def _invocation(
        self,
        task: Task[Any, R],
        arguments: dict[str, Any],
        record: InvocationRecord,
        registered: RegisterResult,
    ) -> Invocation[R]:
        """The handle a caller gets for one registered (or folded) call."""
        if registered.created:
            if logger.isEnabledFor(logging.DEBUG):  # the hot path: not even the extra dict
                logger.debug(
                    "registered invocation %s of %s",
                    record.invocation_id,
                    task.task_id,
                    extra={"invocation_id": record.invocation_id, "task": task.task_id},
                )
            return DistributedInvocation(self, task.task_id, record.invocation_id, arguments)
        assert registered.existing_arguments is not None
        existing = self.serializer.loads(registered.existing_arguments)
        diff = describe_argument_diff(existing, arguments)
        if diff and task.options.on_diff_non_key_args_raise:
            raise InvocationConcurrencyWithDifferentArgumentsError(
                task.task_id, registered.invocation_id, diff
            )
        logger.debug(
            "call of %s folded into waiting invocation %s",
            task.task_id,
            registered.invocation_id,
            extra={"invocation_id": registered.invocation_id, "task": task.task_id},
        )
        return ReusedInvocation(
            self, task.task_id, registered.invocation_id, existing, arguments if diff else None
        )

    # --- admin ---------------------------------------------------------------------------------

    def purge(self) -> None:
        """Delete every invocation, result, queue entry and slot of this app."""
        self.backend.purge()

    @context.shielding
    def cancel(self, invocation_id: str) -> bool:
        """Cancel invocation ``invocation_id`` (what ``invocation.cancel()`` and ``taskgate
        cancel`` do): a waiting one is ``CANCELLED`` at once, a running one is interrupted by
        its runner and then ``CANCELLED``. (Eager invocations are not stored: their own
        ``cancel()`` returns False.)

        Returns:
            True when cancelled or requested now; False when final already (or requested
            before).

        Raises:
            InvocationNotFoundError: no such invocation in this app.
        """
        result = self.backend.cancel(invocation_id)
        if result is CancelResult.MISSING:
            raise InvocationNotFoundError(invocation_id)
        logger.info(
            "cancel of invocation %s: %s",
            invocation_id,
            result.value,
            extra={"invocation_id": invocation_id},
        )
        return result is not CancelResult.FINAL

    @context.shielding
    def get_invocation(self, invocation_id: str) -> Invocation[Any]:
        """A handle to an existing invocation.

        Raises:
            InvocationNotFoundError: no such invocation in this app.
        """
        record = self.backend.get(invocation_id)
        if record is None:
            raise InvocationNotFoundError(invocation_id)
        return DistributedInvocation(self, record.task_id, invocation_id)

    def invocations(
        self,
        task: Task[Any, Any] | str | None = None,
        status: InvocationStatus | str | None = None,
        limit: int = 100,
    ) -> list[Invocation[Any]]:
        """Up to ``limit`` invocations, newest first, optionally of one task and one status."""
        task_id = task.task_id if isinstance(task, Task) else task
        wanted = InvocationStatus(status) if status is not None else None
        return [
            DistributedInvocation(self, record.task_id, record.invocation_id)
            for record in self.backend.list_invocations(task_id, wanted, limit)
        ]
