"""The App: task registry, settings, and the wiring of backend, serializer and runner."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar, cast, overload

from taskgate import context, tracing
from taskgate.app_operations import AppOperations
from taskgate.backends import Backend, BackendOptions, create_backend
from taskgate.concurrency import describe_argument_diff, plan_for_call
from taskgate.eager import run_calls
from taskgate.errors import (
    InvocationConcurrencyWithDifferentArgumentsError,
    InvocationNotFoundError,
    RunnerLostError,
    TaskNotFoundError,
)
from taskgate.ids import new_invocation_id
from taskgate.invocation import DistributedInvocation, Invocation, ReusedInvocation
from taskgate.limits import LimitRegistry
from taskgate.locate import SPAWNED_MAIN
from taskgate.logfields import log_fields
from taskgate.readahead import ResultReadAhead
from taskgate.record import FinalOutcome, InvocationRecord, RegisterResult
from taskgate.runner import Runner, build_runner
from taskgate.serializer import Serializer, get_serializer
from taskgate.settings import Settings
from taskgate.status import InvocationStatus
from taskgate.task import Task, TaskDecorator, TaskOptions, main_script_task_message

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class App(AppOperations):
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
        """Namespace of everything this app stores; apps with other ids never see its records."""
        self.import_path: str | None = None
        """``module:attr`` this app was loaded from by the CLI or a worker, if it was."""
        self.conf: Settings = Settings.load(
            {"backend": backend, "serializer": serializer, "runner_cls": runner_cls, **settings}
        )
        """The app's settings (:class:`~taskgate.settings.Settings`): ``App(...)`` arguments over
        ``TASKGATE_<NAME>`` variables over defaults. Assign to them (``app.conf.threads = 4``)
        before the runner is built; each assignment is checked at once (``ConfigError``)."""
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

        The function must be a module-level ``def`` or ``async def`` (its task id is
        ``"module.function_name"``, which runners import). Every option is a keyword argument.

        Args:
            func: The function, when used as ``@app.task`` without parentheses.

        Keyword Args:
            registration_concurrency (ConcurrencyControlType): Default ``DISABLED``. A call
                whose scope key matches a waiting invocation is folded into it.
            running_concurrency (ConcurrencyControlType): Default ``DISABLED``. At most
                ``running_limit`` invocations of one scope key run at once.
            key_arguments (tuple[str, ...]): Argument names forming the key of the ``KEYS``
                scope (default ()).
            on_diff_non_key_args_raise (bool): A folded call whose arguments differ raises
                ``InvocationConcurrencyWithDifferentArgumentsError`` instead of returning a
                ``ReusedInvocation`` with ``diff_arg`` (default False).
            reroute_on_concurrency_control (bool): Blocked at run time: True (default) waits
                in ``CONCURRENCY_CONTROLLED``; False drops (``CONCURRENCY_CONTROLLED_FINAL``).
            running_limit (int): Slots per running scope key (default 1; above 1 only with a
                running scope).
            limits (Sequence[Limit | str]): Named limits (objects, or names declared with
                :meth:`limit`) the invocation must all hold to run (default ()).
            max_retries (int): Retries after a failure in ``retry_for`` or a ``RetryError``
                (default 0).
            retry_for (tuple[type[BaseException], ...]): Exception types that are retried
                (default ()).
            retry_delay (float): Seconds a retry waits in ``RETRY`` (default 0).
            retry_backoff (bool): Double the delay with each retry, with full jitter (default
                False; needs a ``retry_delay``).
            retry_backoff_max (float): Cap of a backed-off delay in seconds (default 600).
            queue (str): The queue calls go to (default ``"default"``).
            priority (int): Among ready invocations of a queue, higher runs first (default 0;
                -1000 to 1000).
            timeout (float | None): Seconds a run may take before it is interrupted and fails
                with ``TaskTimeoutError`` (default None: no limit).
            cron (str | None): A 5-field cron expression (UTC): the task is called once per
                tick while a runner serves its queue; every parameter needs a default.
            every (float | None): Seconds: the task is called once per interval, like
                ``cron``.

        Returns:
            The ``Task`` (without parentheses), or a decorator that makes one.

        Raises:
            InvalidTaskOptionsError: invalid options (checked here, at decoration time): an
                unknown name, ``KEYS`` without ``key_arguments``, a key or limit argument that
                is not a parameter, ``running_limit`` out of range, an invalid number, queue,
                cron expression, or a periodic task with a parameter without a default.
        """

        def decorate(function: Callable[..., Any]) -> Task[Any, Any]:
            built = TaskOptions.build(function, options, self._limits.declared)
            task: Task[Any, Any] = Task(self, function, built)
            self._tasks[task.task_id] = task
            return task

        return decorate(func) if func is not None else cast(TaskDecorator, decorate)

    @property
    def tasks(self) -> dict[str, Task[Any, Any]]:
        """The tasks registered with this app so far, by task id (a copy)."""
        return dict(self._tasks)

    def _resolve_task(self, task_id: str) -> Task[Any, Any]:
        """The task registered under ``task_id``, importing its module if needed.

        Internal: used by the runners, eager mode, invocation handles and resubmission.

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
        """The serializer named by ``conf.serializer`` (rebuilt if that setting changes).

        Public for tools and tests that read or write stored payloads directly (the CLI, the
        monitor, ``app.serializer.loads(record.arguments)``); tasks never need it.

        Returns:
            The :class:`~taskgate.serializer.Serializer` that encodes arguments, results and
            errors of this app.

        Raises:
            ConfigError: ``conf.serializer`` names no serializer.
        """
        if self._serializer is None or self._serializer.name != self.conf.serializer:
            self._serializer = get_serializer(self.conf.serializer)
        return self._serializer

    @property
    def backend(self) -> Backend:
        """The backend named by ``conf.backend`` (built on first use, rebuilt if it changes).

        A documented escape hatch: the CLI, the monitor, the examples and users' tests read the
        store through it (``app.backend.get(invocation_id)``, ``app.backend.stats()``). Building
        it is thread-safe; the previous backend is closed when the settings change.

        Returns:
            The :class:`~taskgate.backends.base.Backend` holding this app's invocations.

        Raises:
            ConfigError: the backend URL is invalid or its driver is not installed.
        """
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

    def _register_call(
        self,
        task: Task[Any, R],
        arguments: dict[str, Any],
        scheduled_for: float | None = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
    ) -> Invocation[R]:
        """Register one call of ``task`` with bound ``arguments`` (what ``task(...)`` does).

        Internal: users call the task; used by :class:`Task`, delays, resubmission and context.

        ``scheduled_for``: epoch seconds before which it may not start; ``priority`` and
        ``queue`` replace the task's own when not None (``with_options``, validated there).
        Eager mode runs the call at once anyway. Raises as :meth:`_register_calls` does.
        Shielded (:func:`context.shielded`) on a runner's thread, like the other entry points;
        the check is inlined here (no wrapper frame on the path of every task call).
        """
        shield = context.hooks.shield
        if shield is None:
            return self._register_call_now(task, arguments, scheduled_for, priority, queue)
        with shield():
            return self._register_call_now(task, arguments, scheduled_for, priority, queue)

    def _register_call_now(
        self,
        task: Task[Any, R],
        arguments: dict[str, Any],
        scheduled_for: float | None,
        priority: int | None,
        queue: str | None,
    ) -> Invocation[R]:
        if self.conf.eager:
            return run_calls(self, task, [arguments])[0]
        record = self._build_record(task, arguments, scheduled_for, priority=priority, queue=queue)
        backend = self.backend
        if tracing.active is False:  # the hot path: one check of a cached bool
            registered = backend.register(record)
        else:
            registered = tracing.register_traced(backend, record)
        invocation = self._invocation(task, arguments, record, registered)
        if backend.reads_cost_round_trips:
            self._read_ahead.track(invocation)
        return invocation

    @context.shielding
    def _register_calls(
        self, task: Task[Any, R], calls: Sequence[dict[str, Any]]
    ) -> list[Invocation[R]]:
        """Register calls of ``task`` in one backend step per batch (``task.parallelize``).

        Internal: users call ``task.parallelize``.

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
        records = [self._build_record(task, arguments) for arguments in calls]
        backend = self.backend
        if tracing.active is False:
            registered = backend.register_many(records)
        else:
            registered = tracing.register_many_traced(backend, records)
        invocations = [
            self._invocation(task, arguments, record, result)
            for arguments, record, result in zip(calls, records, registered, strict=True)
        ]
        if backend.reads_cost_round_trips:
            for invocation in invocations:
                self._read_ahead.track(invocation)
        return invocations

    @context.shielding
    def _read_result_ahead(self, invocation: Invocation[Any]) -> FinalOutcome | None:
        """``invocation``'s final outcome, read with the next outstanding results of this process.

        Internal: used by the invocation handles (:mod:`taskgate.invocation`).

        None when it is not final yet or there is nothing to read ahead (see
        :mod:`taskgate.readahead`); :meth:`Invocation.get_result` then waits as usual.
        """
        backend = self.backend
        if not backend.reads_cost_round_trips:
            return None
        return self._read_ahead.read(invocation, backend)

    @context.shielding
    def _outcome_known(self, invocation_id: str) -> None:
        """The caller has read the outcome of ``invocation_id``: stop reading ahead for it.

        Internal: used by the invocation handles (:mod:`taskgate.invocation`).
        """
        self._read_ahead.forget(invocation_id)

    def _build_record(
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

        Internal: used by calls, eager mode and the periodic scheduler.

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
                    extra=log_fields(record.invocation_id, task.task_id),
                )
            return DistributedInvocation(self, task.task_id, record.invocation_id, arguments)
        assert registered.existing_arguments is not None
        existing = self.serializer.loads(registered.existing_arguments)
        diff = describe_argument_diff(existing, arguments)
        if diff and task.options.on_diff_non_key_args_raise:
            raise InvocationConcurrencyWithDifferentArgumentsError(
                task.task_id, registered.invocation_id, diff
            )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "call of %s folded into waiting invocation %s",
                task.task_id,
                registered.invocation_id,
                extra=log_fields(registered.invocation_id, task.task_id),
            )
        return ReusedInvocation(
            self, task.task_id, registered.invocation_id, existing, arguments if diff else None
        )

    # --- looking up invocations ---------------------------------------------------------------

    @context.shielding
    def get_invocation(self, invocation_id: str) -> Invocation[Any]:
        """A handle to an existing invocation.

        Args:
            invocation_id: The invocation's full id.

        Returns:
            A ``DistributedInvocation`` that reads the invocation's state from the store.

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
        """Up to ``limit`` invocations, newest first, optionally of one task and one status.

        Args:
            task: Only invocations of this task (a ``Task`` or a task id).
            status: Only invocations in this status (an ``InvocationStatus`` or its value).
            limit: At most this many.

        Returns:
            Handles to the invocations, newest first.

        Raises:
            ValueError: ``status`` is not a status.
            BackendUnavailableError: the store cannot be reached.
        """
        task_id = task.task_id if isinstance(task, Task) else task
        wanted = InvocationStatus(status) if status is not None else None
        return [
            DistributedInvocation(self, record.task_id, record.invocation_id)
            for record in self.backend.list_invocations(task_id, wanted, limit)
        ]
