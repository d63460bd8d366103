"""Scope keys, concurrency plans and argument diffs (taskgate.concurrency)."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType
from taskgate.concurrency import describe_argument_diff, plan_for_call, scope_key
from taskgate.errors import SerializationError
from taskgate.record import ConcurrencyPlan
from taskgate.task import Task

DISABLED = ConcurrencyControlType.DISABLED
TASK = ConcurrencyControlType.TASK
ARGUMENTS = ConcurrencyControlType.ARGUMENTS
KEYS = ConcurrencyControlType.KEYS


def f(x: Any, y: Any = 10) -> None:
    """A task body; only its signature matters here."""


def g(x: Any, y: Any = 10) -> None:
    """Same signature as ``f``, another task."""


class Point:
    """A custom value with no JSON form and no __eq__."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


class Unequal:
    """A value whose == raises, like a numpy array."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("ambiguous truth value")

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "Unequal()"


@pytest.fixture
def task_f(app: App) -> Task[Any, None]:
    return app.task(f)


@pytest.fixture
def task_g(app: App) -> Task[Any, None]:
    return app.task(g)


def key(
    control: ConcurrencyControlType,
    task: Task[Any, None],
    *args: Any,
    key_arguments: tuple[str, ...] = (),
    **kwargs: Any,
) -> str | None:
    return scope_key(control, task.task_id, task._bind(args, kwargs), key_arguments)


# --- DISABLED and TASK ---------------------------------------------------------------------------


@pytest.mark.parametrize("arguments", [{}, {"x": 1, "y": 2}])
def test_disabled_has_no_key(arguments: dict[str, Any]) -> None:
    assert scope_key(DISABLED, "m.f", arguments, ()) is None


@pytest.mark.parametrize(
    ("args", "kwargs"), [((1,), {}), ((2, 3), {}), ((), {"x": "a", "y": [1]}), (({1, 2},), {})]
)
def test_task_key_is_the_same_whatever_the_arguments(
    task_f: Task[Any, None], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    assert key(TASK, task_f, *args, **kwargs) == key(TASK, task_f, 0)


def test_task_key_names_the_task(task_f: Task[Any, None]) -> None:
    assert key(TASK, task_f, 1) == task_f.task_id


# --- ARGUMENTS -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((), {"x": 1}), ((1, 10), {}), ((1,), {"y": 10}), ((), {"y": 10, "x": 1})],
)
def test_arguments_key_applies_defaults_and_ignores_call_style(
    task_f: Task[Any, None], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    assert key(ARGUMENTS, task_f, *args, **kwargs) == key(ARGUMENTS, task_f, 1)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"x": 1}, {"x": 2}),
        ({"x": 1}, {"x": 1, "y": 11}),
        ({"x": 1}, {"x": "1"}),
        ({"x": 1}, {"x": 1.5}),
        ({"x": None}, {"x": "null"}),
        ({"x": 1, "y": 2}, {"x": 2, "y": 1}),
        ({"x": [1, 2]}, {"x": [2, 1]}),
        ({"x": {"a": 1}}, {"x": {"a": 2}}),
        ({"x": {1, 2}}, {"x": {1, 3}}),
        ({"x": {1: "a"}}, {"x": {"1": "a"}}),
        ({"x": (1, 2)}, {"x": [1, 2]}),
    ],
)
def test_arguments_key_differs_when_arguments_differ(
    task_f: Task[Any, None], first: dict[str, Any], second: dict[str, Any]
) -> None:
    assert key(ARGUMENTS, task_f, **first) != key(ARGUMENTS, task_f, **second)


def test_arguments_key_of_equal_sets_built_in_different_orders_is_equal(
    task_f: Task[Any, None],
) -> None:
    assert key(ARGUMENTS, task_f, {1, 9}) == key(ARGUMENTS, task_f, {9, 1})
    words = ["alpha", "beta", "gamma", "delta"]
    assert key(ARGUMENTS, task_f, set(words)) == key(ARGUMENTS, task_f, set(reversed(words)))


def test_arguments_key_ignores_insertion_order_of_dicts_with_non_json_values(
    task_f: Task[Any, None],
) -> None:
    forwards = {"a": 1, "b": {1}}
    backwards = {"b": {1}, "a": 1}
    assert key(ARGUMENTS, task_f, forwards) == key(ARGUMENTS, task_f, backwards)


def test_arguments_key_of_a_string_set_is_the_same_in_every_process() -> None:
    code = (
        "from taskgate.concurrency import scope_key, ConcurrencyControlType as C;"
        "print(scope_key(C.ARGUMENTS, 't', {'s': {'alpha', 'beta', 'gamma'}}, ()))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(keys) == 1


def test_arguments_key_ignores_dict_insertion_order(task_f: Task[Any, None]) -> None:
    forwards = {"a": 1, "b": [1, 2], "c": {"d": None, "e": "text"}}
    backwards = {"c": {"e": "text", "d": None}, "b": [1, 2], "a": 1}
    assert list(forwards) != list(backwards)
    assert key(ARGUMENTS, task_f, forwards) == key(ARGUMENTS, task_f, backwards)


@pytest.mark.parametrize(
    "value",
    [
        {1, 2, 3},
        frozenset({"a"}),
        b"\x00bytes",
        {(1, 2): "tuple key"},
        complex(1, 2),
    ],
    ids=["set", "frozenset", "bytes", "tuple-dict-key", "complex"],
)
def test_arguments_key_exists_for_values_without_a_json_form(
    task_f: Task[Any, None], value: Any
) -> None:
    first = key(ARGUMENTS, task_f, value)
    assert isinstance(first, str)
    assert first.startswith(task_f.task_id)
    assert key(ARGUMENTS, task_f, value) == first


def test_arguments_key_refuses_a_value_without_a_canonical_form(task_f: Task[Any, None]) -> None:
    with pytest.raises(SerializationError) as caught:
        key(ARGUMENTS, task_f, 1, {"points": [Point(1, 2)]})
    message = str(caught.value)
    assert task_f.task_id in message
    assert "argument 'y' (at y['points'][0])" in message
    assert f"{__name__}.Point" in message
    assert "key_arguments" in message


def test_arguments_key_is_deterministic_across_calls(task_f: Task[Any, None]) -> None:
    arguments = {"x": {"nested": [1, 2.5, None, True]}, "y": "text"}
    assert scope_key(ARGUMENTS, task_f.task_id, arguments, ()) == scope_key(
        ARGUMENTS, task_f.task_id, dict(arguments), ()
    )


# --- KEYS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("y", [10, 11, "other", {1, 2}, Point(0, 0), lambda: 1])
def test_keys_key_depends_only_on_key_arguments(task_f: Task[Any, None], y: Any) -> None:
    assert key(KEYS, task_f, 1, y, key_arguments=("x",)) == key(
        KEYS, task_f, 1, key_arguments=("x",)
    )


@pytest.mark.parametrize("x", [2, "1", None, [1]])
def test_keys_key_differs_when_a_key_argument_differs(task_f: Task[Any, None], x: Any) -> None:
    assert key(KEYS, task_f, x, key_arguments=("x",)) != key(KEYS, task_f, 1, key_arguments=("x",))


def test_keys_key_with_several_key_arguments_uses_all_of_them(task_f: Task[Any, None]) -> None:
    both = ("x", "y")
    assert key(KEYS, task_f, 1, 2, key_arguments=both) == key(
        KEYS, task_f, y=2, x=1, key_arguments=both
    )
    assert key(KEYS, task_f, 1, 2, key_arguments=both) != key(
        KEYS, task_f, 1, 3, key_arguments=both
    )


def test_keys_key_differs_from_arguments_key(task_f: Task[Any, None]) -> None:
    assert key(KEYS, task_f, 1, key_arguments=("x",)) != key(ARGUMENTS, task_f, 1)


def test_keys_key_over_every_argument_is_the_arguments_key(task_f: Task[Any, None]) -> None:
    # The same set of calls shares the scope either way, so one key is right.
    assert key(KEYS, task_f, 1, key_arguments=("x", "y")) == key(ARGUMENTS, task_f, 1)


# --- readable keys -------------------------------------------------------------------------------


def test_keys_key_names_the_task_and_the_key_values(task_f: Task[Any, None]) -> None:
    assert key(KEYS, task_f, 42, key_arguments=("x",)) == f"{task_f.task_id}#x=42"
    assert key(KEYS, task_f, "acme", None, key_arguments=("y", "x")) == (
        f"{task_f.task_id}#y=None,x='acme'"
    )


def test_arguments_key_names_every_argument_in_signature_order(task_f: Task[Any, None]) -> None:
    assert key(ARGUMENTS, task_f, y=2.5, x=True) == f"{task_f.task_id}#x=True,y=2.5"


def test_key_shows_composite_and_long_values_as_a_bounded_digest(task_f: Task[Any, None]) -> None:
    long_key = key(ARGUMENTS, task_f, "a" * 10_000, {"nested": [1, 2, 3]})
    assert long_key is not None
    assert re.fullmatch(
        rf"{re.escape(task_f.task_id)}#x=<h:[0-9a-f]{{24}}>,y=<h:[0-9a-f]{{24}}>", long_key
    )


def test_key_text_stays_injective_when_strings_hold_separators(task_f: Task[Any, None]) -> None:
    # x="1',y='2" must not read like two arguments.
    assert key(ARGUMENTS, task_f, "1',y='2", "3") != key(ARGUMENTS, task_f, "1", "2',y='3")
    assert key(ARGUMENTS, task_f, "a,y=b", "c") != key(ARGUMENTS, task_f, "a", "b,y=c")


# --- keys never cross tasks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "key_arguments"), [(TASK, ()), (ARGUMENTS, ()), (KEYS, ("x",)), (KEYS, ("x", "y"))]
)
def test_different_tasks_never_share_a_key(
    task_f: Task[Any, None],
    task_g: Task[Any, None],
    control: ConcurrencyControlType,
    key_arguments: tuple[str, ...],
) -> None:
    assert task_f.task_id != task_g.task_id
    key_f = key(control, task_f, 1, 2, key_arguments=key_arguments)
    key_g = key(control, task_g, 1, 2, key_arguments=key_arguments)
    assert key_f is not None
    assert key_g is not None
    assert key_f != key_g


# --- plan_for_call -------------------------------------------------------------------------------


def test_plan_of_default_options_has_no_keys(task_f: Task[Any, None]) -> None:
    plan = plan_for_call(task_f.options, task_f.task_id, task_f._bind((1,), {}))
    assert plan == ConcurrencyPlan(
        registration_key=None, running_key=None, running_limit=1, drop_when_blocked=False
    )


@pytest.mark.parametrize(
    ("registration", "running"), [(TASK, DISABLED), (DISABLED, ARGUMENTS), (ARGUMENTS, TASK)]
)
def test_plan_keys_follow_each_phase_control(
    app: App, registration: ConcurrencyControlType, running: ConcurrencyControlType
) -> None:
    task = app.task(registration_concurrency=registration, running_concurrency=running)(f)
    arguments = task._bind((1,), {})
    plan = plan_for_call(task.options, task.task_id, arguments)
    assert plan.registration_key == scope_key(registration, task.task_id, arguments, ())
    assert plan.running_key == scope_key(running, task.task_id, arguments, ())


def test_plan_keys_use_the_task_key_arguments(app: App) -> None:
    task = app.task(registration_concurrency=KEYS, running_concurrency=KEYS, key_arguments="x")(f)
    plan_a = plan_for_call(task.options, task.task_id, task._bind((1, 2), {}))
    plan_b = plan_for_call(task.options, task.task_id, task._bind((1, 3), {}))
    assert plan_a.registration_key is not None
    assert plan_a.registration_key == plan_b.registration_key
    assert plan_a.running_key == plan_b.running_key


@pytest.mark.parametrize("running_limit", [1, 2, 7])
def test_plan_carries_the_running_limit(app: App, running_limit: int) -> None:
    task = app.task(running_concurrency=TASK, running_limit=running_limit)(f)
    plan = plan_for_call(task.options, task.task_id, task._bind((1,), {}))
    assert plan.running_limit == running_limit


@pytest.mark.parametrize(("reroute", "drop"), [(True, False), (False, True)])
def test_plan_drops_when_blocked_only_without_reroute(app: App, reroute: bool, drop: bool) -> None:
    task = app.task(running_concurrency=TASK, reroute_on_concurrency_control=reroute)(f)
    plan = plan_for_call(task.options, task.task_id, task._bind((1,), {}))
    assert plan.drop_when_blocked is drop


# --- describe_argument_diff ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [{}, {"x": 1, "y": 10}, {"x": [1, {"a": 2}]}, {"x": {1, 2}}, {"x": None}],
)
def test_diff_of_equal_arguments_is_empty(arguments: dict[str, Any]) -> None:
    assert describe_argument_diff(arguments, dict(arguments)) == ""


def test_diff_names_each_changed_argument_with_old_and_new_values() -> None:
    diff = describe_argument_diff(
        {"x": 1, "y": "same", "z": [1, 2]}, {"x": 2, "y": "same", "z": [3]}
    )
    assert "x" in diff
    assert "1" in diff
    assert "2" in diff
    assert "z" in diff
    assert "[1, 2]" in diff
    assert "[3]" in diff
    assert "y" not in diff
    assert diff.index("1") < diff.index("2")  # old value before new value


def test_diff_shows_reprs_so_strings_and_numbers_are_told_apart() -> None:
    diff = describe_argument_diff({"x": 1}, {"x": "1"})
    assert "1" in diff
    assert "'1'" in diff


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ({"kept": 1}, {"kept": 1, "added": 5}, "added"),
        ({"kept": 1, "removed": 5}, {"kept": 1}, "removed"),
    ],
)
def test_diff_names_arguments_present_on_one_side_only(
    old: dict[str, Any], new: dict[str, Any], name: str
) -> None:
    diff = describe_argument_diff(old, new)
    assert name in diff
    assert "5" in diff
    assert "kept" not in diff


def test_diff_handles_values_whose_equality_raises() -> None:
    diff = describe_argument_diff({"x": Unequal()}, {"x": 3})
    assert "x" in diff
    assert "Unequal()" in diff


def h(a: Any, b: Any, *, c: Any = 3) -> None:
    """A keyword-only parameter: every call binds through inspect.Signature.bind."""


def none() -> None:
    """No parameters."""


@pytest.mark.parametrize("func", [f, h, none])
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((1,), {}),
        ((1, 2), {}),
        ((1, 2, 3), {}),
        ((), {"x": 1, "y": 2}),
        ((), {"y": 2, "x": 1}),
        ((), {"a": 1, "b": 2}),
        ((), {"x": 1, "z": 2}),
        ((1,), {"y": 2}),
        ((1,), {"x": 2}),
        ((1, 2), {"c": 4}),
    ],
)
def test_binding_gives_what_signature_bind_gives_in_every_call_style(
    app: App, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Task._bind skips Signature.bind for a call passing every parameter once, all by position
    or all by name: the arguments (in parameter order, what keys and serialization see) and the
    errors are those of bind() with defaults applied."""
    task = app.task(func)
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except TypeError as exc:
        with pytest.raises(TypeError, match=re.escape(str(exc))):
            task._bind(args, kwargs)
        return
    bound.apply_defaults()
    got = task._bind(args, kwargs)
    assert list(got.items()) == list(bound.arguments.items())
