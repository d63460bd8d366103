"""Tasks: a decorated function plus its options, validated once at decoration time."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload
from urllib.parse import urlsplit

from taskgate import context
from taskgate.call_options import check_priority, check_queue, check_timeout
from taskgate.concurrency import ConcurrencyControlType
from taskgate.delays import delayed
from taskgate.errors import InvalidTaskOptionsError, MainModuleTaskWarning, RetryError
from taskgate.invocation import Invocation, InvocationGroup
from taskgate.limits import Limit, resolve_limits
from taskgate.locate import SPAWNED_MAIN
from taskgate.schedule import check_periodic

if TYPE_CHECKING:
    from taskgate.app import App

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskOptions:
    """The options of ``@app.task(...)``, validated; :meth:`App.task <taskgate.App.task>` says
    what each one means."""

    registration_concurrency: ConcurrencyControlType = ConcurrencyControlType.DISABLED
    running_concurrency: ConcurrencyControlType = ConcurrencyControlType.DISABLED
    key_arguments: tuple[str, ...] = ()
    on_diff_non_key_args_raise: bool = False
    reroute_on_concurrency_control: bool = True
    running_limit: int = 1
    max_retries: int = 0
    retry_for: tuple[type[BaseException], ...] = ()
    limits: tuple[Limit, ...] = ()
    retry_delay: float = 0.0
    retry_backoff: bool = False
    retry_backoff_max: float = 600.0
    queue: str = "default"
    priority: int = 0
    timeout: float | None = None
    cron: str | None = None
    every: float | None = None

    @classmethod
    def build(
        cls,
        func: Callable[..., Any],
        options: Mapping[str, Any],
        declared_limits: Mapping[str, Limit] | None = None,
    ) -> TaskOptions:
        """Validate ``options`` for ``func`` and build the frozen options.

        ``declared_limits`` are the app's limits by name: ``limits=`` resolves against them.

        Raises:
            InvalidTaskOptionsError: ``func`` is an async generator, unknown names, bad
                types, ``KEYS`` without (or with unknown) ``key_arguments``,
                ``running_limit < 1``, or ``running_limit > 1``
                without running concurrency control; a negative, NaN or infinite
                ``retry_delay``/``retry_backoff_max``, ``retry_backoff`` without a positive
                ``retry_delay``; ``limits=`` naming an undeclared limit,
                a limit of another app or one twice, or a limit keyed (or ``fair_by``) by an
                argument that is not a parameter of ``func``; a ``queue`` that is not a
                non-empty name of at most 100 characters without whitespace or commas, a
                ``priority`` that is not an int within [-1000, 1000], a ``timeout`` that is not
                None or a finite number of seconds > 0; invalid ``cron``/``every`` (see
                :func:`taskgate.schedule.check_periodic`).
        """
        name = getattr(func, "__qualname__", repr(func))
        _refuse_async(name, func)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidTaskOptionsError(
                f"unknown option(s) {', '.join(unknown)} for task {name}; "
                f"valid options: {', '.join(sorted(known))}"
            )
        values = dict(options)
        for phase in ("registration_concurrency", "running_concurrency"):
            if phase in values:
                values[phase] = _control_type(name, phase, values[phase])
        if "key_arguments" in values:
            values["key_arguments"] = _names(name, values["key_arguments"])
        if "retry_for" in values:
            values["retry_for"] = _exception_types(name, values["retry_for"])
        if "limits" in values:
            values["limits"] = resolve_limits(name, values["limits"], declared_limits or {}, func)
        built = cls(**values)
        built._check(name, func)
        return built

    def _check(self, name: str, func: Callable[..., Any]) -> None:
        keys = ConcurrencyControlType.KEYS
        uses_keys = keys in (self.registration_concurrency, self.running_concurrency)
        if uses_keys and not self.key_arguments:
            raise InvalidTaskOptionsError(
                f"task {name} uses ConcurrencyControlType.KEYS but has no key_arguments; "
                "pass key_arguments=('arg_name', ...)"
            )
        parameters = inspect.signature(func).parameters
        missing = [arg for arg in self.key_arguments if arg not in parameters]
        if missing:
            raise InvalidTaskOptionsError(
                f"key_arguments {', '.join(missing)} of task {name} are not parameters of the "
                f"function; its parameters are: {', '.join(parameters) or '(none)'}"
            )
        for flag in ("on_diff_non_key_args_raise", "reroute_on_concurrency_control"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidTaskOptionsError(f"{flag} of task {name} must be True or False")
        for count in ("running_limit", "max_retries"):
            value = getattr(self, count)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidTaskOptionsError(f"{count} of task {name} must be an int")
        if self.running_limit < 1:
            raise InvalidTaskOptionsError(
                f"running_limit of task {name} must be at least 1, got {self.running_limit}"
            )
        if self.running_limit > 1 and self.running_concurrency is ConcurrencyControlType.DISABLED:
            raise InvalidTaskOptionsError(
                f"task {name} sets running_limit={self.running_limit} but running_concurrency is "
                "DISABLED; choose a running_concurrency scope (TASK, ARGUMENTS or KEYS)"
            )
        if self.max_retries < 0:
            raise InvalidTaskOptionsError(f"max_retries of task {name} must not be negative")
        self._check_retry_delays(name)
        check_queue(name, self.queue)
        check_priority(name, self.priority)
        check_timeout(name, self.timeout)
        check_periodic(name, self, func)

    def _check_retry_delays(self, name: str) -> None:
        for option in ("retry_delay", "retry_backoff_max"):
            value = getattr(self, option)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidTaskOptionsError(
                    f"{option} of task {name} must be a finite number of seconds >= 0, "
                    f"got {value!r}"
                )
        if not isinstance(self.retry_backoff, bool):
            raise InvalidTaskOptionsError(f"retry_backoff of task {name} must be True or False")
        if self.retry_backoff and self.retry_delay <= 0:
            raise InvalidTaskOptionsError(
                f"task {name} sets retry_backoff=True but retry_delay is 0; give retry_delay "
                "the first retry's delay in seconds (it doubles with each retry)"
            )

    def should_retry(self, exc: BaseException, num_retries: int) -> bool:
        """Whether a run that raised ``exc`` after ``num_retries`` retries is retried."""
        retryable = isinstance(exc, (RetryError, *self.retry_for))
        return retryable and num_retries < self.max_retries


def _refuse_async(name: str, func: Callable[..., Any]) -> None:
    # ``async def`` tasks are awaited by runners (taskgate.runner.async_loop); an async
    # generator has no single result to store and would fail at run time, far from the mistake.
    if inspect.isasyncgenfunction(func):
        raise InvalidTaskOptionsError(
            f"task {name} is an async generator: a task returns one result; make it an "
            "async def that returns a list, or call a task per item"
        )


MAIN_SCRIPT_ADVICE = (
    "Move the task into a module that runners can import (its id becomes module.function), or "
    "run its runners from that script only (app.runner.run(), or a ProcessRunner started there)"
)


def main_script_task_message(task_id: str) -> str:
    """Why a runner cannot find a task whose id starts with ``__main__.``, and what to do."""
    return (
        f"task {task_id} was defined in a script run as __main__: only runners running inside "
        f"that script can find it, and this runner does not define it. {MAIN_SCRIPT_ADVICE}"
    )


def _warn_main_module(app: App, task_id: str) -> None:
    """Warn that other processes cannot find a task of the main script, if any could run it.

    Decided from the URL alone: building the backend here would connect at import time.
    """
    try:
        scheme = urlsplit(app.conf.backend_url).scheme.lower()
    except ValueError:
        return  # an invalid URL is reported where the backend is built
    if scheme == "memory" or app.conf.eager:
        return  # only this process can run its tasks anyway
    warnings.warn(
        f"task {task_id} is defined in a script run as __main__, so runners started elsewhere "
        f"(taskgate runner start, other programs) cannot import it and fail its invocations "
        f"with TaskNotFoundError. {MAIN_SCRIPT_ADVICE}",
        MainModuleTaskWarning,
        stacklevel=_stacklevel_outside_taskgate(),
    )


def _stacklevel_outside_taskgate() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this package.

    ``@app.task`` and ``@app.task(...)`` reach here through different depths of taskgate frames.
    """
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame: FrameType | None = sys._getframe(1)  # the caller of this function, the warner
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    return level


def _control_type(name: str, option: str, value: Any) -> ConcurrencyControlType:
    try:
        return ConcurrencyControlType(value)
    except ValueError:
        valid = ", ".join(c.name for c in ConcurrencyControlType)
        raise InvalidTaskOptionsError(
            f"{option} of task {name} must be a ConcurrencyControlType ({valid}), got {value!r}"
        ) from None


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        names = ()
    if (not names and value) or not all(isinstance(n, str) for n in names):
        raise InvalidTaskOptionsError(
            f"key_arguments of task {name} must be argument names, got {value!r}"
        )
    return names


def _exception_types(name: str, value: Any) -> tuple[type[BaseException], ...]:
    try:
        types = (value,) if isinstance(value, type) else tuple(value)
    except TypeError:
        types = (value,)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise InvalidTaskOptionsError(
            f"retry_for of task {name} must be exception types, got {value!r}"
        )
    return types


class TaskDecorator(Protocol):
    """What ``app.task(**options)`` returns: it turns a function into a :class:`Task`."""

    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Task[P, R]: ...


class Task(Generic[P, R]):
    """A function registered with an app; calling it registers an invocation.

    Attributes:
        task_id: ``"module.function_name"``, how runners find the function.
        options: The validated :class:`TaskOptions`.
        func: The undecorated function.
    """

    __name__: str
    __qualname__: str

    def __init__(self, app: App, func: Callable[P, R], options: TaskOptions) -> None:
        self.app = app
        self.func = func
        self.options = options
        # A task defined in the main script is registered under the name spawned runner
        # processes give that script, so both sides agree on the task id.
        module = "__main__" if func.__module__ == SPAWNED_MAIN else func.__module__
        self.task_id: str = f"{module}.{func.__name__}"
        if func.__module__ == "__main__":
            _warn_main_module(app, self.task_id)
        self.signature: inspect.Signature = inspect.signature(func)
        # Most functions take plain named parameters: run() then calls func(**arguments)
        # without rebuilding BoundArguments for every invocation.
        self._named_only = all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            for p in self.signature.parameters.values()
        )
        # The parameter names when every one may be passed by position or by name: a call
        # passing each exactly once, all by position or all by name, binds without
        # inspect.Signature.bind (see _bind), several microseconds of every call.
        self._plain_names: tuple[str, ...] | None = (
            tuple(self.signature.parameters)
            if all(p.kind is p.POSITIONAL_OR_KEYWORD for p in self.signature.parameters.values())
            else None
        )
        self.logger: logging.Logger = logging.getLogger(f"taskgate.task.{self.task_id}")
        self.is_async: bool = inspect.iscoroutinefunction(func)
        """Whether the function is an ``async def``: :meth:`run` then returns a coroutine,
        which runners await on their event loop (:mod:`taskgate.runner.async_loop`)."""
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        """Register an invocation of the task (or reuse a waiting one); never runs it here.

        Args:
            *args: Positional arguments of the function.
            **kwargs: Keyword arguments of the function.

        Returns:
            A ``DistributedInvocation``, or a ``ReusedInvocation`` when registration
            concurrency folded the call into a waiting invocation.

        Raises:
            TypeError: the arguments do not fit the function's signature.
            SerializationError: the arguments cannot be serialized; nothing is registered.
            InvocationConcurrencyWithDifferentArgumentsError: see ``on_diff_non_key_args_raise``.
        """
        return self.app._register_call(self, self._bind(args, kwargs))

    def __repr__(self) -> str:
        return f"<Task {self.task_id}>"

    @property
    def invocation(self) -> Invocation[R]:
        """The invocation being executed, inside the task's own code.

        Raises:
            RuntimeError: when read outside a running invocation of this task.
        """
        current = context.current_invocation()
        if current is None or current.task_id != self.task_id:
            raise RuntimeError(
                f"{self.task_id}.invocation is only available inside a running invocation "
                "of that task"
            )
        return current

    def with_options(
        self,
        *,
        delay: float | None = None,
        eta: datetime | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
    ) -> Callable[P, Invocation[R]]:
        """A callable with the task's own signature that makes one call with these options.

        A delayed invocation is ``SCHEDULED`` until its time, then runs like any other
        (registration concurrency folds identical calls into it while it waits, whatever their
        priority or queue). In eager mode the call runs at once (no delay, queue or priority
        applies inline).

        Args:
            delay: Seconds from the call before it may start; 0 or None: a normal call.
            eta: When it may start: an aware ``datetime`` or epoch seconds.
            priority: Replaces the task's ``priority`` for this call (an int in
                [-1000, 1000]; higher runs first); None keeps the task's.
            queue: Replaces the task's ``queue`` for this call; None keeps the task's.

        Returns:
            A callable taking the task's arguments; each call registers one invocation with
            these options and returns its handle.

        Raises:
            InvalidTaskOptionsError: both ``delay`` and ``eta``; negative, NaN or infinite
                values; a naive datetime; a priority or queue the task option would refuse;
                a value of another type.
        """
        return delayed(self, delay, eta, priority=priority, queue=queue)

    def parallelize(
        self,
        params: Iterable[tuple[Any, ...] | Mapping[str, Any]],
        common_args: Mapping[str, Any] | None = None,
    ) -> InvocationGroup[R]:
        """Call the task once per item: a tuple is positional, a dict keyword arguments.

        Concurrency control applies to each call exactly as for single calls; the calls are
        registered in batches, one backend step per batch, which is much faster than calling
        the task in a loop. Nothing is registered when any item's arguments do not fit the
        function or cannot be serialized.

        Args:
            params: One tuple (positional arguments) or dict (keyword arguments) per call.
            common_args: Keyword arguments added to every call.

        Returns:
            The invocations, in input order (``group.results`` too).

        Raises:
            TypeError: an item that is neither a tuple nor a dict, or whose arguments (with
                ``common_args``) do not fit the function; a name given both in an item and in
                ``common_args`` is one, as a keyword given twice is in Python.
            SerializationError: an item's arguments cannot be serialized.
        """
        common = dict(common_args) if common_args is not None else {}
        calls = []
        for item in params:
            if isinstance(item, Mapping):
                twice = sorted(set(item) & set(common))
                if twice:
                    raise TypeError(
                        f"{self.task_id}() got multiple values for keyword argument "
                        f"{twice[0]!r}: it is in a parallelize() item and in common_args"
                    )
                calls.append(self._bind((), {**item, **common}))
            elif isinstance(item, tuple):
                calls.append(self._bind(item, common))
            else:
                raise TypeError(
                    f"parallelize() of {self.task_id} takes tuples (positional arguments) or "
                    f"dicts (keyword arguments), got {type(item).__name__}"
                )
        return InvocationGroup(self.app._register_calls(self, calls))

    def _bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults applied.

        Internal: used by calls, delays and the periodic scheduler.

        Raises:
            TypeError: ``args`` and ``kwargs`` do not match the function's signature.
        """
        names = self._plain_names
        if names is not None:  # what bind() and apply_defaults() would give, in its order
            if not kwargs and len(args) == len(names):
                return dict(zip(names, args, strict=True))
            if not args and len(kwargs) == len(names) and all(n in kwargs for n in names):
                return {name: kwargs[name] for name in names}
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def _run(self, arguments: Mapping[str, Any]) -> R:
        """Execute the function with bound ``arguments`` in the current thread (for an
        ``async def``: create its coroutine, see :attr:`is_async`).

        Internal: the runners' executors call it; users call the task to register a call.
        """
        if self._named_only:
            return self.func(**arguments)  # type: ignore[call-arg]
        bound = inspect.BoundArguments(self.signature, dict(arguments))
        return self.func(*bound.args, **bound.kwargs)
