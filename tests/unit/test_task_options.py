"""TaskOptions validation at decoration time, retry decisions, and the Task object itself."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, DistributedInvocation
from taskgate import context as invocation_context
from taskgate.errors import InvalidTaskOptionsError, RetryError, TaskNotFoundError
from taskgate.task import Task, TaskOptions

DISABLED = ConcurrencyControlType.DISABLED
TASK = ConcurrencyControlType.TASK
ARGUMENTS = ConcurrencyControlType.ARGUMENTS
KEYS = ConcurrencyControlType.KEYS


def documented(x: int, y: int = 2) -> int:
    """Add two numbers."""
    return x + y


class TransientError(Exception):
    pass


class SpecificTransientError(TransientError):
    pass


# --- invalid options -----------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["retries", "max_retry", "running_concurrency_type"])
def test_unknown_option_is_rejected_naming_it(app: App, option: str) -> None:
    with pytest.raises(InvalidTaskOptionsError, match=option):
        app.task(**{option: 1})(documented)


@pytest.mark.parametrize("phase", ["registration_concurrency", "running_concurrency"])
def test_keys_without_key_arguments_is_rejected(app: App, phase: str) -> None:
    with pytest.raises(InvalidTaskOptionsError, match="key_arguments"):
        app.task(**{phase: KEYS})(documented)


@pytest.mark.parametrize("key_arguments", [("z",), ("x", "z")])
def test_key_argument_that_is_not_a_parameter_is_rejected(
    app: App, key_arguments: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidTaskOptionsError, match="z"):
        app.task(registration_concurrency=KEYS, key_arguments=key_arguments)(documented)


@pytest.mark.parametrize("running_limit", [0, -1])
def test_running_limit_below_one_is_rejected(app: App, running_limit: int) -> None:
    with pytest.raises(InvalidTaskOptionsError, match="running_limit"):
        app.task(running_concurrency=TASK, running_limit=running_limit)(documented)


@pytest.mark.parametrize("disabled", [DISABLED, "disabled", None])
def test_running_limit_above_one_without_running_concurrency_is_rejected(
    app: App, disabled: Any
) -> None:
    options: dict[str, Any] = {"running_limit": 2}
    if disabled is not None:
        options["running_concurrency"] = disabled
    with pytest.raises(InvalidTaskOptionsError, match="running_limit"):
        app.task(**options)(documented)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"running_concurrency": TASK, "running_limit": "2"}, "running_limit"),
        ({"running_concurrency": TASK, "running_limit": 2.0}, "running_limit"),
        ({"running_concurrency": TASK, "running_limit": True}, "running_limit"),
        ({"max_retries": "3"}, "max_retries"),
        ({"max_retries": -1}, "max_retries"),
        ({"retry_for": "ValueError"}, "retry_for"),
        ({"retry_for": (ValueError, "KeyError")}, "retry_for"),
        ({"retry_for": (int,)}, "retry_for"),
        ({"retry_for": ValueError("not a type")}, "retry_for"),
        ({"retry_for": 42}, "retry_for"),
        ({"retry_for": None}, "retry_for"),
        ({"registration_concurrency": "everything"}, "registration_concurrency"),
        ({"running_concurrency": "TASK"}, "running_concurrency"),
        ({"running_concurrency": 1}, "running_concurrency"),
        ({"on_diff_non_key_args_raise": "yes"}, "on_diff_non_key_args_raise"),
        ({"reroute_on_concurrency_control": 0}, "reroute_on_concurrency_control"),
        ({"registration_concurrency": KEYS, "key_arguments": 5}, "key_arguments"),
        ({"registration_concurrency": KEYS, "key_arguments": ("x", 1)}, "key_arguments"),
    ],
)
def test_option_of_wrong_type_or_value_is_rejected_naming_it(
    app: App, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidTaskOptionsError, match=named):
        app.task(**options)(documented)


def test_invalid_options_register_no_task(app: App) -> None:
    with pytest.raises(InvalidTaskOptionsError):
        app.task(running_limit=0)(documented)
    with pytest.raises(TaskNotFoundError):
        app._resolve_task(f"{__name__}.documented")


# --- valid options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("disabled", DISABLED),
        ("task", TASK),
        ("arguments", ARGUMENTS),
        (TASK, TASK),
        (ARGUMENTS, ARGUMENTS),
    ],
)
@pytest.mark.parametrize("phase", ["registration_concurrency", "running_concurrency"])
def test_control_type_accepts_members_and_their_string_values(
    app: App, phase: str, value: Any, expected: ConcurrencyControlType
) -> None:
    task = app.task(**{phase: value})(documented)
    chosen = getattr(task.options, phase)
    assert chosen is expected


def test_keys_string_value_is_accepted_with_key_arguments(app: App) -> None:
    task = app.task(running_concurrency="keys", key_arguments=("x",))(documented)
    assert task.options.running_concurrency is KEYS


@pytest.mark.parametrize(
    ("key_arguments", "expected"),
    [("x", ("x",)), (("x",), ("x",)), (["x", "y"], ("x", "y")), (("y", "x"), ("y", "x"))],
)
def test_key_arguments_are_normalised_to_a_tuple_of_names(
    app: App, key_arguments: Any, expected: tuple[str, ...]
) -> None:
    task = app.task(registration_concurrency=KEYS, key_arguments=key_arguments)(documented)
    assert task.options.key_arguments == expected


@pytest.mark.parametrize(
    ("retry_for", "expected"),
    [
        (ValueError, (ValueError,)),
        ((ValueError, KeyError), (ValueError, KeyError)),
        ([TransientError], (TransientError,)),
        ((), ()),
    ],
)
def test_retry_for_accepts_a_type_or_a_collection_of_types(
    app: App, retry_for: Any, expected: tuple[type[BaseException], ...]
) -> None:
    task = app.task(retry_for=retry_for)(documented)
    assert task.options.retry_for == expected


@pytest.mark.parametrize("running_concurrency", [TASK, ARGUMENTS])
def test_running_limit_above_one_with_running_concurrency_is_accepted(
    app: App, running_concurrency: ConcurrencyControlType
) -> None:
    task = app.task(running_concurrency=running_concurrency, running_limit=3)(documented)
    assert task.options.running_limit == 3


def test_default_options_match_the_documented_defaults(app: App) -> None:
    task = app.task(documented)
    assert task.options == TaskOptions(
        registration_concurrency=DISABLED,
        running_concurrency=DISABLED,
        key_arguments=(),
        on_diff_non_key_args_raise=False,
        reroute_on_concurrency_control=True,
        running_limit=1,
        max_retries=0,
        retry_for=(),
    )


def test_options_are_frozen(app: App) -> None:
    task = app.task(max_retries=1)(documented)
    with pytest.raises(AttributeError):
        task.options.max_retries = 5  # type: ignore[misc]


# --- should_retry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_retries", "num_retries", "expected"),
    [(0, 0, False), (1, 0, True), (3, 2, True), (3, 3, False), (3, 4, False)],
)
def test_retry_error_is_always_retryable_but_bounded_by_max_retries(
    app: App, max_retries: int, num_retries: int, expected: bool
) -> None:
    task = app.task(max_retries=max_retries)(documented)
    assert task.options.should_retry(RetryError("again"), num_retries) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TransientError("t"), True),
        (SpecificTransientError("subclass"), True),
        (KeyError("k"), True),
        (ValueError("not listed"), False),
        (RuntimeError("not listed"), False),
        (Exception("base class of a listed type"), False),
    ],
)
def test_retry_for_types_and_their_subclasses_are_retried(
    app: App, exc: BaseException, expected: bool
) -> None:
    task = app.task(max_retries=2, retry_for=(TransientError, KeyError))(documented)
    assert task.options.should_retry(exc, 0) is expected


def test_retry_for_types_are_bounded_by_max_retries(app: App) -> None:
    task = app.task(max_retries=2, retry_for=TransientError)(documented)
    assert task.options.should_retry(TransientError(), 1) is True
    assert task.options.should_retry(TransientError(), 2) is False


# --- the Task object -----------------------------------------------------------------------------


def test_task_id_is_module_dot_function_name(app: App) -> None:
    task = app.task(documented)
    assert task.task_id == f"{__name__}.documented"


def test_bare_decorator_without_parentheses_returns_a_task(app: App) -> None:
    @app.task
    def bare(x: int) -> int:
        return x

    assert isinstance(bare, Task)
    assert bare.options == TaskOptions()


def test_decorator_with_empty_parentheses_returns_a_task(app: App) -> None:
    @app.task()
    def empty(x: int) -> int:
        return x

    assert isinstance(empty, Task)
    assert empty.options == TaskOptions()


def test_task_keeps_name_doc_and_wrapped_function(app: App) -> None:
    task = app.task(documented)
    assert task.__name__ == "documented"  # type: ignore[attr-defined]
    assert task.__doc__ == "Add two numbers."
    assert task.func is documented
    assert task.__wrapped__ is documented  # type: ignore[attr-defined]


def test_task_is_registered_with_its_app(app: App) -> None:
    task = app.task(documented)
    assert app._resolve_task(task.task_id) is task


def test_task_logger_is_a_logger_named_after_the_task(app: App) -> None:
    task = app.task(documented)
    assert isinstance(task.logger, logging.Logger)
    assert task.task_id in task.logger.name


def test_task_invocation_outside_a_run_raises_runtime_error(app: App) -> None:
    task = app.task(documented)
    with pytest.raises(RuntimeError, match="invocation"):
        _ = task.invocation


def test_task_invocation_inside_another_tasks_run_raises_runtime_error(app: App) -> None:
    task = app.task(documented)
    other: DistributedInvocation[Any] = DistributedInvocation(app, "elsewhere.other_task", "x")
    token = invocation_context.enter(other)
    try:
        with pytest.raises(RuntimeError):
            _ = task.invocation
    finally:
        invocation_context.leave(token)


def test_task_invocation_inside_its_own_run_is_the_running_invocation(app: App) -> None:
    task = app.task(documented)
    running: DistributedInvocation[int] = DistributedInvocation(app, task.task_id, "inv-1")
    token = invocation_context.enter(running)
    try:
        assert task.invocation is running
    finally:
        invocation_context.leave(token)
    with pytest.raises(RuntimeError):
        _ = task.invocation


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((1,), {}, {"x": 1, "y": 2}),
        ((), {"x": 1}, {"x": 1, "y": 2}),
        ((1, 5), {}, {"x": 1, "y": 5}),
        ((), {"y": 5, "x": 1}, {"x": 1, "y": 5}),
    ],
)
def test_bind_names_arguments_and_applies_defaults(
    app: App, args: tuple[Any, ...], kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    task = app.task(documented)
    assert task._bind(args, kwargs) == expected


@pytest.mark.parametrize(
    ("args", "kwargs"), [((), {}), ((1, 2, 3), {}), ((1,), {"z": 3}), ((1,), {"x": 1})]
)
def test_bind_rejects_arguments_that_do_not_fit_the_signature(
    app: App, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    task = app.task(documented)
    with pytest.raises(TypeError):
        task._bind(args, kwargs)


# --- async functions ------------------------------------------------------------------------------


async def coroutine_function(x: int) -> int:
    return x


async def async_generator(x: int) -> Any:
    yield x


@pytest.mark.parametrize("with_options", [False, True])
def test_async_def_functions_are_tasks(app: App, with_options: bool) -> None:
    decorate = app.task(max_retries=1) if with_options else app.task
    assert decorate(coroutine_function).is_async


@pytest.mark.parametrize("with_options", [False, True])
def test_async_generators_are_refused_at_decoration(app: App, with_options: bool) -> None:
    decorate = app.task(max_retries=1) if with_options else app.task
    with pytest.raises(InvalidTaskOptionsError) as raised:
        decorate(async_generator)
    message = str(raised.value)
    assert "an async generator" in message
    assert async_generator.__qualname__ in message
