"""A task body raising a ``BaseException`` fails its invocation like any error (API.md section 7).

``SystemExit``, ``KeyboardInterrupt`` or a bare ``BaseException`` used to end the worker thread:
the invocation stayed ``RUNNING`` forever and its running slot was never released.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.errors import TaskFailedError
from taskgate.runner.base import Runner

WAIT = 15.0
RunRunner = Callable[[Runner], Any]


class Abort(BaseException):
    """A user-defined BaseException (not an Exception)."""


def _exit_3() -> None:
    sys.exit(3)


def _interrupt() -> None:
    raise KeyboardInterrupt("stop")


def _bare() -> None:
    raise BaseException("bare")


def _generator_exit() -> None:
    raise GeneratorExit


def _abort() -> None:
    raise Abort("custom")


RAISERS = {
    "SystemExit: 3": _exit_3,
    "KeyboardInterrupt: stop": _interrupt,
    "BaseException: bare": _bare,
    "GeneratorExit: ": _generator_exit,
    f"{__name__}.Abort: custom": _abort,
}


@pytest.mark.parametrize("message", sorted(RAISERS))
def test_a_base_exception_fails_the_invocation_and_releases_its_slot(
    make_app: Callable[..., App], run_runner: RunRunner, message: str
) -> None:
    # One thread and one running slot: the next call runs only if both were given back.
    app = make_app(threads=1)
    raiser = RAISERS[message]

    @app.task(running_concurrency=ConcurrencyControlType.TASK)
    def body(fail: bool) -> str:
        if fail:
            raiser()
        return "next ran"

    failing = body(True)
    following = body(False)
    with run_runner(app.runner):
        with pytest.raises(TaskFailedError) as raised:
            failing.get_result(WAIT)
        assert following.get_result(WAIT) == "next ran"
    assert str(raised.value) == message
    assert failing.status is InvocationStatus.FAILED


def test_the_failure_is_logged_with_its_traceback(
    app: App, run_runner: RunRunner, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    def leave() -> None:
        sys.exit("bye")

    invocation = leave()
    with (
        caplog.at_level(logging.ERROR, logger="taskgate.runner"),
        run_runner(app.runner),
        pytest.raises(TaskFailedError),
    ):
        invocation.get_result(WAIT)
    [record] = [r for r in caplog.records if invocation.invocation_id in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "SystemExit: bye" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is SystemExit
    assert getattr(record, "invocation_id", None) == invocation.invocation_id


def test_a_base_exception_is_retried_only_when_retry_for_names_it(
    app: App, run_runner: RunRunner
) -> None:
    @app.task(max_retries=2, retry_for=(Abort,))
    def flaky(kind: str) -> int:
        if kind == "abort" and flaky.invocation.num_retries < 2:
            raise Abort("again")
        if kind == "exit":
            sys.exit(1)
        return flaky.invocation.num_retries

    retried = flaky("abort")
    not_retried = flaky("exit")
    with run_runner(app.runner):
        assert retried.get_result(WAIT) == 2
        with pytest.raises(TaskFailedError, match="SystemExit: 1"):
            not_retried.get_result(WAIT)
    assert not_retried.num_retries == 0


def test_the_caller_can_catch_it_as_an_exception(app: App, run_runner: RunRunner) -> None:
    @app.task
    def interrupt() -> None:
        raise KeyboardInterrupt

    invocation = interrupt()
    with run_runner(app.runner):
        try:
            invocation.get_result(WAIT)
        except Exception as exc:  # what a caller's ordinary error handling catches
            caught: BaseException = exc
    assert isinstance(caught, TaskFailedError)
    assert caught.type_name == "KeyboardInterrupt"
    assert "KeyboardInterrupt" in caught.remote_traceback


def test_with_the_json_serializer_the_caller_also_gets_task_failed_error(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(serializer="json")

    @app.task
    def leave() -> None:
        sys.exit(3)

    invocation = leave()
    with run_runner(app.runner), pytest.raises(TaskFailedError, match="SystemExit: 3"):
        invocation.get_result(WAIT)
