"""The options ``queue``, ``priority`` and ``timeout`` (task options and ``with_options``), what
the core writes on the record, ``Invocation.cancel`` and a cancelled result, eager mode."""

from __future__ import annotations

import math
from typing import Any

import pytest

from taskgate import App, InvocationStatus
from taskgate.call_options import PRIORITY_MAX, PRIORITY_MIN, QUEUE_MAX_LENGTH
from taskgate.errors import (
    InvalidTaskOptionsError,
    InvocationCancelledError,
    InvocationNotFoundError,
)
from taskgate.task import TaskOptions

S = InvocationStatus


def job(x: int) -> int:
    return x


def options(**values: Any) -> TaskOptions:
    return TaskOptions.build(job, values)


# --- task options --------------------------------------------------------------------------------


def test_defaults() -> None:
    built = options()
    assert (built.queue, built.priority, built.timeout) == ("default", 0, None)


@pytest.mark.parametrize(
    "values",
    [
        {"queue": "emails"},
        {"queue": "a" * QUEUE_MAX_LENGTH},
        {"queue": "reports.daily-2:eu"},
        {"priority": PRIORITY_MIN},
        {"priority": PRIORITY_MAX},
        {"priority": -3},
        {"timeout": 0.5},
        {"timeout": 30},
        {"timeout": None},
    ],
)
def test_valid_values_are_kept(values: dict[str, Any]) -> None:
    built = options(**values)
    for name, value in values.items():
        assert getattr(built, name) == value


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("queue", "", "1 to 100"),
        ("queue", "a" * (QUEUE_MAX_LENGTH + 1), "1 to 100"),
        ("queue", "a b", "whitespace or commas"),
        ("queue", "a,b", "whitespace or commas"),
        ("queue", "tab\there", "whitespace or commas"),
        ("queue", None, "queue name"),
        ("queue", 3, "queue name"),
        ("priority", PRIORITY_MAX + 1, "within [-1000, 1000]"),
        ("priority", PRIORITY_MIN - 1, "within [-1000, 1000]"),
        ("priority", 1.5, "must be an int"),
        ("priority", True, "must be an int"),
        ("priority", "5", "must be an int"),
        ("timeout", 0, "> 0"),
        ("timeout", -1, "> 0"),
        ("timeout", math.inf, "> 0"),
        ("timeout", math.nan, "> 0"),
        ("timeout", "10", "> 0"),
        ("timeout", False, "> 0"),
    ],
)
def test_invalid_values_fail_at_decoration(name: str, value: Any, says: str) -> None:
    with pytest.raises(InvalidTaskOptionsError, match=name) as caught:
        options(**{name: value})
    assert says in str(caught.value)
    assert "job" in str(caught.value)


def test_the_decorator_refuses_them_too(app: App) -> None:
    with pytest.raises(InvalidTaskOptionsError, match="priority"):
        app.task(priority=5000)(job)


# --- with_options --------------------------------------------------------------------------------


def _stored(app: App, invocation_id: str) -> tuple[str, int]:
    record = app.backend.get(invocation_id)
    assert record is not None
    return record.queue, record.priority


def test_the_record_carries_the_task_options(app: App) -> None:
    task = app.task(queue="emails", priority=7)(job)
    assert _stored(app, task(1).invocation_id) == ("emails", 7)
    plain = app.task(job)
    assert _stored(app, plain(1).invocation_id) == ("default", 0)


def test_with_options_overrides_the_task_options(app: App) -> None:
    task = app.task(queue="emails", priority=7)(job)
    assert _stored(app, task.with_options(priority=-2)(1).invocation_id) == ("emails", -2)
    assert _stored(app, task.with_options(queue="bulk")(2).invocation_id) == ("bulk", 7)
    both = task.with_options(queue="bulk", priority=0, delay=60)(3)
    assert _stored(app, both.invocation_id) == ("bulk", 0)
    assert both.status is S.SCHEDULED


def test_parallelize_uses_the_task_options(app: App) -> None:
    task = app.task(queue="emails", priority=2)(job)
    for invocation in task.parallelize([(1,), (2,)]):
        assert _stored(app, invocation.invocation_id) == ("emails", 2)


@pytest.mark.parametrize(
    "values",
    [
        {"priority": 1001},
        {"priority": 2.0},
        {"priority": False},
        {"queue": ""},
        {"queue": "a,b"},
        {"queue": 7},
    ],
)
def test_with_options_validates_at_once(app: App, values: dict[str, Any]) -> None:
    task = app.task(job)
    with pytest.raises(InvalidTaskOptionsError, match=next(iter(values))):
        task.with_options(**values)


def test_the_typed_callable_keeps_the_signature(app: App) -> None:
    task = app.task(job)
    call = task.with_options(priority=1, queue="q")
    with pytest.raises(TypeError):
        call(1, 2)  # type: ignore[call-arg]
    assert "priority=1" in repr(call) and "queue=q" in repr(call)


# --- cancel --------------------------------------------------------------------------------------


def test_cancel_a_waiting_invocation(app: App) -> None:
    task = app.task(job)
    invocation = task(1)
    assert invocation.cancel() is True
    assert invocation.status is S.CANCELLED
    assert invocation.status.is_final and not invocation.status.is_waiting
    with pytest.raises(InvocationCancelledError) as caught:
        invocation.get_result(1.0)
    assert caught.value.invocation_id == invocation.invocation_id
    assert caught.value.task_id == task.task_id
    with pytest.raises(InvocationCancelledError):
        _ = invocation.result
    assert invocation.cancel() is False  # final already
    assert app.cancel(invocation.invocation_id) is False


def test_cancel_a_running_invocation_is_requested(app: App) -> None:
    task = app.task(job)
    invocation = task(1)
    assert len(app.backend.claim("runner", 1, 30.0, 0)) == 1
    assert invocation.cancel() is True
    assert invocation.status is S.RUNNING
    assert invocation.cancel() is False  # requested already
    assert app.backend.wait_cancel_requests("runner", 1.0) == [invocation.invocation_id]


def test_cancel_an_unknown_invocation(app: App) -> None:
    with pytest.raises(InvocationNotFoundError):
        app.cancel("no-such-id")
    task = app.task(job)
    invocation = task(1)
    app.purge()
    with pytest.raises(InvocationNotFoundError):
        invocation.cancel()


def test_eager_mode_accepts_the_options_and_cannot_cancel() -> None:
    app = App(backend="memory://", eager=True)
    task = app.task(queue="emails", priority=3, timeout=5)(job)
    invocation = task.with_options(priority=9, queue="bulk")(4)
    assert invocation.result == 4
    assert invocation.status is S.SUCCESS
    assert invocation.cancel() is False
    assert invocation.result == 4


def test_the_cli_renders_a_cancelled_invocation(app: App) -> None:
    from taskgate.cli.json_output import outcome_json
    from taskgate.cli.render import outcome_rows, status_text

    invocation = app.task(job)(1)
    assert invocation.cancel()
    record = app.backend.get(invocation.invocation_id)
    assert record is not None
    assert [(name, text.plain) for name, text in outcome_rows(app, record)] == [
        ("outcome", "cancelled: it never ran")
    ]
    assert status_text(S.CANCELLED).style == "bright_black"
    assert outcome_json(app, record) == {"result": None, "error": None, "traceback": None}
