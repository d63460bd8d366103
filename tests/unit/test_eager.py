"""Eager mode (API.md section 10): calls run inline, final at once, with no backend at all."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import taskgate.app
from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.eager import EagerInvocation
from taskgate.errors import (
    ResultTimeoutError,
    RetryError,
    SerializationError,
    TaskFailedError,
)
from taskgate.invocation import DistributedInvocation

S = InvocationStatus

# Nothing listens on port 1: a backend built from this URL would fail to connect.
UNREACHABLE = "redis://127.0.0.1:1/0"


class CustomError(Exception):
    pass


@pytest.fixture
def no_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build a backend fails the test, wherever it comes from."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("eager mode built a backend")

    monkeypatch.setattr(taskgate.app, "create_backend", refuse)


@pytest.fixture
def app(no_backend: None) -> Iterator[App]:
    eager = App("eager-tests", backend=UNREACHABLE, eager=True)
    yield eager
    assert eager._backend is None and eager._runner is None


def test_a_call_runs_inline_in_the_callers_thread_and_returns_a_final_invocation(
    app: App,
) -> None:
    ran: list[tuple[int, int]] = []

    @app.task
    def add(x: int, y: int) -> int:
        ran.append((threading.get_ident(), x + y))
        return x + y

    invocation = add(1, y=2)
    assert ran == [(threading.get_ident(), 3)]  # already ran, here, before the call returned
    assert isinstance(invocation, EagerInvocation)
    assert isinstance(invocation, DistributedInvocation)
    assert invocation.result == 3
    assert invocation.get_result(timeout=0) == 3
    assert asyncio.run(invocation.async_result()) == 3
    assert invocation.status is S.SUCCESS
    assert invocation.arguments == {"x": 1, "y": 2}
    assert (invocation.attempt, invocation.num_retries) == (1, 0)
    assert invocation.blocked_by() is None
    assert [t.status for t in invocation.history] == [S.REGISTERED, S.RUNNING, S.SUCCESS]
    times = [t.timestamp for t in invocation.history]
    assert times == sorted(times) and times[0] > 0
    assert all(t.runner_id is None for t in invocation.history)


def test_eager_mode_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, no_backend: None
) -> None:
    monkeypatch.setenv("TASKGATE_EAGER", "1")
    app = App("eager-env", backend=UNREACHABLE)
    assert app.conf.eager is True

    @app.task
    def double(x: int) -> int:
        return 2 * x

    assert double(4).result == 8
    assert app._backend is None


def test_the_tasks_own_exception_is_raised_from_result(app: App) -> None:
    @app.task
    def explode() -> None:
        raise CustomError("it broke")

    invocation = explode()  # the call itself does not raise
    with pytest.raises(CustomError, match="it broke"):
        invocation.get_result()
    with pytest.raises(CustomError):
        asyncio.run(invocation.async_result())
    assert invocation.status is S.FAILED
    assert [t.status for t in invocation.history] == [S.REGISTERED, S.RUNNING, S.FAILED]


def test_retries_run_inline_as_many_times_as_allowed(app: App) -> None:
    attempts: list[tuple[int, S]] = []

    @app.task(max_retries=3, retry_for=(CustomError,))
    def flaky(fail_times: int) -> str:
        invocation = flaky.invocation
        attempts.append((invocation.attempt, invocation.status))
        if invocation.attempt <= fail_times:
            raise CustomError(f"attempt {invocation.attempt}")
        return "done"

    invocation = flaky(2)
    assert invocation.result == "done"
    assert attempts == [(1, S.RUNNING), (2, S.RUNNING), (3, S.RUNNING)]
    assert (invocation.attempt, invocation.num_retries) == (3, 2)
    assert [t.status for t in invocation.history] == [
        *(S.REGISTERED, S.RUNNING, S.RETRY, S.RUNNING, S.RETRY, S.RUNNING, S.SUCCESS)
    ]

    exhausted = flaky(10)
    with pytest.raises(CustomError, match="attempt 4"):
        exhausted.get_result()
    assert (exhausted.status, exhausted.num_retries, exhausted.attempt) == (S.FAILED, 3, 4)


def test_retry_error_retries_and_other_exceptions_do_not(app: App) -> None:
    @app.task(max_retries=1)
    def asks() -> int:
        if asks.invocation.attempt == 1:
            raise RetryError("again")
        return asks.invocation.num_retries

    @app.task(max_retries=5)
    def not_listed() -> None:
        raise CustomError("no retry_for")

    assert asks().result == 1
    refused = not_listed()
    with pytest.raises(CustomError):
        refused.get_result()
    assert refused.num_retries == 0


def test_a_base_exception_becomes_task_failed_error_as_with_a_runner(app: App) -> None:
    @app.task
    def leaves() -> None:
        raise SystemExit(3)

    @app.task(max_retries=1, retry_for=(KeyboardInterrupt,))
    def interrupted() -> str:
        if interrupted.invocation.attempt == 1:
            raise KeyboardInterrupt
        return "second time"

    invocation = leaves()  # the caller's program goes on
    with pytest.raises(TaskFailedError, match="SystemExit"):
        invocation.get_result()
    assert invocation.status is S.FAILED
    assert interrupted().result == "second time"


def test_task_invocation_is_the_returned_handle_inside_the_body_only(app: App) -> None:
    seen: list[Any] = []

    @app.task
    def whoami() -> str:
        seen.append(whoami.invocation)
        return whoami.invocation.invocation_id

    invocation = whoami()
    assert seen == [invocation] and seen[0] is invocation
    assert invocation.result == invocation.invocation_id
    with pytest.raises(RuntimeError, match="only available inside"):
        _ = whoami.invocation


def test_nested_calls_run_inline_and_the_parent_keeps_its_invocation(app: App) -> None:
    @app.task
    def child(x: int) -> int:
        return x * 10

    @app.task
    def parent(x: int) -> tuple[int, bool]:
        before = parent.invocation
        value = child(x).result + child(x + 1).result
        return value, parent.invocation is before

    assert parent(1).result == (30, True)


def test_the_body_waiting_for_its_own_result_is_refused_not_hung(app: App) -> None:
    @app.task
    def selfish(timeout: float | None) -> None:
        selfish.invocation.get_result(timeout)

    with pytest.raises(RuntimeError, match="waits for its own result"):
        selfish(None).get_result()
    with pytest.raises(ResultTimeoutError):
        selfish(0.5).get_result()


def test_arguments_are_bound_and_checked_as_for_real_calls(app: App) -> None:
    @app.task
    def add(x: int, y: int = 1) -> int:
        return x + y

    with pytest.raises(TypeError):
        add(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        add(z=1)  # type: ignore[call-arg]
    assert add(1).arguments == {"x": 1, "y": 1}


def test_arguments_and_results_go_through_the_serializer(app: App) -> None:
    received: list[Any] = []

    @app.task
    def keep(value: Any) -> Any:
        received.append(value)
        return value

    @app.task
    def returns_a_lock() -> Any:
        return threading.Lock()

    sent = [1, {"a": 2}]
    invocation = keep(sent)
    assert received == [sent] and received[0] is not sent  # the body got a copy, as in a run
    assert invocation.result == sent and invocation.result is not received[0]

    with pytest.raises(SerializationError):
        keep(threading.Lock())  # refused at the call, as a real call would be
    assert len(received) == 1

    unstorable = returns_a_lock()
    with pytest.raises(SerializationError):
        unstorable.get_result()
    assert unstorable.status is S.FAILED


def test_concurrency_control_never_folds_or_holds_back_a_call(app: App) -> None:
    app.limit("one-at-a-time", concurrency=1)
    runs: list[int] = []

    @app.task(
        registration_concurrency=ConcurrencyControlType.TASK,
        running_concurrency=ConcurrencyControlType.TASK,
        limits=["one-at-a-time"],
    )
    def guarded(depth: int) -> int:
        runs.append(depth)
        if depth:  # a nested call of the same task: it would wait for the slot in a real run
            return guarded(depth - 1).result + 1
        return 0

    first, second = guarded(0), guarded(0)
    assert first != second  # registration control did not fold the second call
    assert guarded(2).result == 2
    assert runs == [0, 0, 2, 1, 0]


def test_parallelize_runs_each_item_inline_in_order(app: App) -> None:
    order: list[int] = []

    @app.task
    def power(base: int, exp: int = 2) -> int:
        order.append(base)
        return int(base**exp)

    group = power.parallelize([(3,), {"base": 1, "exp": 3}, (2, 1)])
    assert order == [3, 1, 2]
    assert group.results == [9, 1, 2]
    assert asyncio.run(group.async_results()) == [9, 1, 2]
    assert power.parallelize([(2,), {"base": 3}], common_args={"exp": 3}).results == [8, 27]
    assert power.parallelize([]).results == []


def test_parallelize_runs_nothing_when_one_item_cannot_be_serialized(app: App) -> None:
    ran: list[Any] = []

    @app.task
    def takes(value: Any) -> None:
        ran.append(value)

    with pytest.raises(SerializationError):
        takes.parallelize([(1,), (threading.Lock(),), (3,)])
    with pytest.raises(TypeError):
        takes.parallelize([(1,), (1, 2)])
    assert ran == []
