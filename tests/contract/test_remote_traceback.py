"""The task's traceback reaches the caller and the runner's log (API.md sections 5 and 7), on
every backend and with both serializers."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App
from taskgate.errors import RemoteTraceback, TaskFailedError
from taskgate.runner.base import Runner

WAIT = 15.0
RunRunner = Callable[[Runner], Any]


class OrderError(Exception):
    """A task's own exception type, importable by the caller."""


def parse_the_order(order: str) -> None:
    """A frame of the task's own code, deep below the task function."""
    raise OrderError(f"cannot parse {order!r}")


@pytest.mark.parametrize("serializer", ["pickle", "json"])
def test_the_caller_sees_the_task_frames_through_the_cause(
    make_app: Callable[..., App], run_runner: RunRunner, serializer: str
) -> None:
    app = make_app(serializer=serializer)

    @app.task
    def take_order(order: str) -> None:
        parse_the_order(order)

    with run_runner(app.runner):
        invocation = take_order("three pizzas")
        with pytest.raises(OrderError, match="three pizzas") as caught:
            invocation.get_result(WAIT)
    exc = caught.value
    assert isinstance(exc.__cause__, RemoteTraceback)
    text = "".join(traceback.format_exception(exc))
    assert "in take_order" in text
    assert "in parse_the_order" in text
    assert "raise OrderError(" in text
    assert text.index("in parse_the_order") < text.index("direct cause")


def test_an_exception_that_cannot_be_rebuilt_carries_the_traceback_too(
    app: App, run_runner: RunRunner
) -> None:
    class LocalError(Exception):
        def __init__(self, code: int, reason: str) -> None:
            super().__init__(f"{code}: {reason}")

    @app.task
    def fail_locally() -> None:
        raise LocalError(7, "local")

    with run_runner(app.runner), pytest.raises(TaskFailedError, match="7: local") as caught:
        fail_locally().get_result(WAIT)
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "in fail_locally" in "".join(traceback.format_exception(caught.value))


def test_a_final_failure_is_logged_as_a_warning_with_the_traceback(
    app: App, run_runner: RunRunner, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    @app.task(max_retries=1, retry_for=OrderError)
    def flaky(order: str) -> None:
        attempts.append(1)
        parse_the_order(order)

    caplog.set_level(logging.INFO, logger="taskgate.runner.executor")
    with run_runner(app.runner):
        invocation = flaky("soup")
        with pytest.raises(OrderError):
            invocation.get_result(WAIT)
    records = [r for r in caplog.records if r.name == "taskgate.runner.executor"]
    retries = [r for r in records if "retry" in r.getMessage()]
    failures = [r for r in records if "failed" in r.getMessage()]
    assert len(attempts) == 2
    assert [(r.levelno, r.exc_info) for r in retries] == [(logging.INFO, None)]
    assert [r.levelno for r in failures] == [logging.WARNING]
    failure = failures[0]
    assert failure.__dict__["invocation_id"] == invocation.invocation_id
    assert failure.exc_info is not None and failure.exc_info[0] is OrderError
    assert "in parse_the_order" in caplog.text
