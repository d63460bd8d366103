"""``task.parallelize(params, common_args=...)`` (API.md section 3), on every backend."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.errors import SerializationError
from taskgate.runner.base import Runner

CC = ConcurrencyControlType
RunRunner = Callable[[Runner], Any]


def test_common_args_are_added_to_tuples_and_dicts_in_input_order(
    app: App, run_runner: RunRunner
) -> None:
    @app.task
    def scale(x: int, factor: int, offset: int = 0) -> int:
        return x * factor + offset

    group = scale.parallelize(
        [(1,), {"x": 2}, (3,), {"x": 4, "offset": 1}], common_args={"factor": 10}
    )
    assert [i.arguments for i in group] == [
        {"x": 1, "factor": 10, "offset": 0},
        {"x": 2, "factor": 10, "offset": 0},
        {"x": 3, "factor": 10, "offset": 0},
        {"x": 4, "factor": 10, "offset": 1},
    ]
    with run_runner(app.runner):
        assert group.results == [10, 20, 30, 41]
    assert scale.parallelize([], common_args={"factor": 1}).invocations == []


def test_a_name_in_an_item_and_in_common_args_is_a_type_error_and_registers_nothing(
    app: App,
) -> None:
    @app.task
    def scale(x: int, factor: int) -> int:
        return x * factor

    with pytest.raises(TypeError, match="multiple values for keyword argument 'factor'"):
        scale.parallelize([{"x": 1}, {"x": 2, "factor": 3}], common_args={"factor": 10})
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        scale.parallelize([(1, 2)], common_args={"x": 10})
    with pytest.raises(TypeError):
        scale.parallelize([(1,)], common_args={"factor": 2, "unknown": 3})
    assert app.invocations(task=scale) == []


def test_unserializable_common_args_register_nothing(app: App) -> None:
    @app.task
    def takes(x: int, handle: Any) -> None:
        pass

    with pytest.raises(SerializationError):
        takes.parallelize([(1,), (2,)], common_args={"handle": threading.Lock()})
    assert app.invocations(task=takes) == []


def test_concurrency_control_applies_to_each_call_with_its_common_args(app: App) -> None:
    @app.task(registration_concurrency=CC.KEYS, key_arguments=("tenant",))
    def sync(item: int, tenant: str) -> int:
        return item

    group = sync.parallelize([(1,), (2,)], common_args={"tenant": "acme"})
    other = sync.parallelize([{"item": 3}], common_args={"tenant": "globex"})
    assert group[0].invocation_id == group[1].invocation_id  # one waiting call per tenant
    assert other[0].invocation_id != group[0].invocation_id
    assert group[0].arguments == {"item": 1, "tenant": "acme"}
    assert {i.status for i in app.invocations(task=sync)} == {InvocationStatus.REGISTERED}
    assert len(app.invocations(task=sync)) == 2
