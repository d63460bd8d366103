"""Invocations, results, retries and failures (API.md sections 3, 5, 7), on every backend."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from taskgate import App, InvocationStatus
from taskgate.errors import (
    InvocationNotFoundError,
    ResultTimeoutError,
    RetryError,
    SerializationError,
    TaskNotFoundError,
)
from taskgate.record import ConcurrencyPlan, InvocationRecord
from taskgate.runner.base import Runner

S = InvocationStatus
WAIT = 15.0
RunRunner = Callable[[Runner], Any]
WaitStatus = Callable[[Any, InvocationStatus], None]


class Point(NamedTuple):
    x: int
    y: int


class CustomError(Exception):
    pass


def test_result_round_trips_a_named_tuple(app: App, run_runner: RunRunner) -> None:
    @app.task
    def make_point(x: int, y: int) -> Point:
        return Point(x, y)

    invocation = make_point(1, 2)
    with run_runner(app.runner):
        result = invocation.result
    assert result == Point(1, 2) and isinstance(result, Point) and result.y == 2
    assert invocation.status is S.SUCCESS
    assert invocation.arguments == {"x": 1, "y": 2}


def test_failure_reraises_the_task_exception_type(app: App, run_runner: RunRunner) -> None:
    @app.task
    def explode() -> None:
        raise CustomError("it broke")

    invocation = explode()
    with run_runner(app.runner), pytest.raises(CustomError, match="it broke"):
        invocation.get_result(WAIT)
    assert invocation.status is S.FAILED
    assert invocation.num_retries == 0


def test_get_result_times_out_and_leaves_the_invocation_alone(app: App) -> None:
    @app.task
    def never_run() -> None: ...

    invocation = never_run()
    with pytest.raises(ResultTimeoutError) as raised:
        invocation.get_result(timeout=0.05)
    assert isinstance(raised.value, TimeoutError)
    assert invocation.status is S.REGISTERED
    # Nobody picked it up: the message says so instead of claiming it keeps running.
    assert raised.value.status is S.REGISTERED
    assert "its status is registered: no runner has picked it up yet" in str(raised.value)
    assert "keeps running" not in str(raised.value)


def test_get_result_timeout_of_a_running_invocation_says_it_keeps_running(
    app: App, run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    release = threading.Event()

    @app.task
    def hold() -> None:
        release.wait(WAIT)

    invocation = hold()
    with run_runner(app.runner):
        try:
            wait_status(invocation, S.RUNNING)
            with pytest.raises(ResultTimeoutError, match="keeps running") as raised:
                invocation.get_result(timeout=0.05)
            assert raised.value.status is S.RUNNING
        finally:
            release.set()
        invocation.get_result(WAIT)


def test_async_result(app: App, run_runner: RunRunner) -> None:
    @app.task
    def double(x: int) -> int:
        return 2 * x

    invocations = [double(n) for n in range(5)]
    with run_runner(app.runner):
        results = asyncio.run(_gather(invocations))
    assert results == [0, 2, 4, 6, 8]


async def _gather(invocations: list[Any]) -> list[Any]:
    return list(await asyncio.gather(*(i.async_result(WAIT) for i in invocations)))


def test_parallelize_results_in_input_order(app: App, run_runner: RunRunner) -> None:
    @app.task
    def power(base: int, exp: int = 2) -> int:
        return int(base**exp)

    group = power.parallelize([(2,), {"base": 3, "exp": 3}, (4, 1)])
    with run_runner(app.runner):
        assert group.results == [4, 27, 4]
    with pytest.raises(TypeError):
        power.parallelize([[1, 2]])  # type: ignore[list-item]


def test_task_sees_its_own_invocation_and_attempt(app: App, run_runner: RunRunner) -> None:
    @app.task
    def whoami() -> tuple[str, int]:
        return whoami.invocation.invocation_id, whoami.invocation.attempt

    invocation = whoami()
    with run_runner(app.runner):
        assert invocation.get_result(WAIT) == (invocation.invocation_id, 1)
    with pytest.raises(RuntimeError):
        _ = whoami.invocation


def test_history_records_each_transition_with_the_runner(app: App, run_runner: RunRunner) -> None:
    @app.task
    def noop() -> None: ...

    invocation = noop()
    with run_runner(app.runner):
        invocation.get_result(WAIT)
    history = invocation.history
    assert [h.status for h in history] == [S.REGISTERED, S.RUNNING, S.SUCCESS]
    assert history[1].runner_id == app.runner.runner_id
    timestamps = [h.timestamp for h in history]
    assert timestamps == sorted(timestamps)


def test_retries_for_listed_exceptions_then_succeeds(app: App, run_runner: RunRunner) -> None:
    attempts: list[int] = []

    @app.task(max_retries=3, retry_for=(ConnectionError,))
    def flaky() -> str:
        attempts.append(flaky.invocation.attempt)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    invocation = flaky()
    with run_runner(app.runner):
        assert invocation.get_result(WAIT) == "ok"
    assert attempts == [1, 2, 3]
    assert invocation.num_retries == 2
    statuses = [h.status for h in invocation.history]
    assert statuses.count(S.RETRY) == 2


def test_retries_run_out_and_the_last_error_is_raised(app: App, run_runner: RunRunner) -> None:
    @app.task(max_retries=2)
    def always_retry() -> None:
        raise RetryError("not yet")

    invocation = always_retry()
    with run_runner(app.runner), pytest.raises(RetryError, match="not yet"):
        invocation.get_result(WAIT)
    assert invocation.num_retries == 2
    assert invocation.status is S.FAILED


def test_exceptions_outside_retry_for_fail_at_once(app: App, run_runner: RunRunner) -> None:
    @app.task(max_retries=5, retry_for=(ConnectionError,))
    def wrong_kind() -> None:
        raise ValueError("no retry for me")

    invocation = wrong_kind()
    with run_runner(app.runner), pytest.raises(ValueError):
        invocation.get_result(WAIT)
    assert invocation.num_retries == 0


def test_unserializable_arguments_raise_at_the_call_and_register_nothing(app: App) -> None:
    @app.task
    def takes(value: Any) -> None: ...

    with pytest.raises(SerializationError):
        takes(threading.Lock())
    assert app.invocations() == []


def test_parallelize_registers_nothing_when_one_item_cannot_be_serialized(app: App) -> None:
    @app.task
    def takes(value: Any) -> None: ...

    with pytest.raises(SerializationError):
        takes.parallelize([(1,), (threading.Lock(),), (3,)])
    assert app.invocations() == []


def test_group_results_read_finished_outcomes_in_one_go(app: App, run_runner: RunRunner) -> None:
    @app.task
    def square(x: int) -> int:
        if x == 3:
            raise CustomError("three")
        return x * x

    ok = square.parallelize((n,) for n in range(200) if n != 3)
    with run_runner(app.runner):
        for invocation in ok:
            invocation.get_result(WAIT)
        # All final now: read through final_outcomes in one go.
        assert ok.results == [n * n for n in range(200) if n != 3]
        failing = square.parallelize([(2,), (3,)])
        with pytest.raises(CustomError, match="three"):
            _ = failing.results


def test_results_read_in_turn_are_read_ahead_in_batches(
    app: App, run_runner: RunRunner, wait_status: WaitStatus, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task
    def square(x: int) -> int:
        return x * x

    calls = [square(n) for n in range(60)]
    with run_runner(app.runner):
        for invocation in calls:
            wait_status(invocation, S.SUCCESS)
    backend = app.backend
    reads = {"final_outcomes": 0, "wait_final": 0}
    for name in reads:
        original = getattr(backend, name)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            reads[_name] += 1
            return _original(*args)

        monkeypatch.setattr(backend, name, counted)
    assert [invocation.result for invocation in calls] == [n * n for n in range(60)]
    if backend.reads_cost_round_trips:
        # Batches of 16, 32 and 64 (+1 each): 3 reads instead of 60.
        assert reads == {"final_outcomes": 3, "wait_final": 0}
    else:
        assert reads["final_outcomes"] == 0
    # An outcome read once is kept: asking again reads nothing.
    before = dict(reads)
    assert calls[0].result == 0
    assert reads == before


def test_unserializable_result_fails_the_invocation_not_the_runner(
    app: App, run_runner: RunRunner
) -> None:
    @app.task
    def returns_lock() -> Any:
        return threading.Lock()

    @app.task
    def fine() -> int:
        return 1

    bad = returns_lock()
    with run_runner(app.runner):
        with pytest.raises(SerializationError, match="cannot serialize"):
            bad.get_result(WAIT)
        assert fine().get_result(WAIT) == 1


def test_unknown_task_fails_with_a_clear_message(app: App, run_runner: RunRunner) -> None:
    @app.task
    def fine() -> int:
        return 1

    record = InvocationRecord(
        invocation_id="ghost-invocation",
        task_id="no_such_module_xyz.missing",
        arguments=app.serializer.dumps({}),
        plan=ConcurrencyPlan(),
    )
    app.backend.register(record)
    ghost = app.get_invocation("ghost-invocation")
    with run_runner(app.runner):
        with pytest.raises(TaskNotFoundError, match="no_such_module_xyz"):
            ghost.get_result(WAIT)
        assert fine().get_result(WAIT) == 1


def test_a_corrupted_record_fails_alone_and_the_runner_keeps_going(
    app: App, run_runner: RunRunner
) -> None:
    @app.task
    def fine(x: int = 1) -> int:
        return x

    record = InvocationRecord(
        invocation_id="corrupted-invocation",
        task_id=fine.task_id,
        arguments=b"\x80\x05 not a pickle",
        plan=ConcurrencyPlan(),
    )
    app.backend.register(record)
    corrupted = app.get_invocation("corrupted-invocation")
    with run_runner(app.runner):
        with pytest.raises(SerializationError, match="cannot read stored data"):
            corrupted.get_result(WAIT)
        assert fine().get_result(WAIT) == 1
    assert corrupted.status is S.FAILED


def test_get_invocation_and_listing(app: App, run_runner: RunRunner) -> None:
    @app.task
    def first() -> int:
        return 1

    @app.task
    def second() -> int:
        return 2

    a, b, c = first(), second(), first()
    handle = app.get_invocation(b.invocation_id)
    assert handle.task_id == second.task_id and handle.task is second
    assert handle.arguments == {}
    assert [i.invocation_id for i in app.invocations()] == [
        c.invocation_id,
        b.invocation_id,
        a.invocation_id,
    ]
    assert [i.invocation_id for i in app.invocations(task=first)] == [
        c.invocation_id,
        a.invocation_id,
    ]
    assert len(app.invocations(limit=1)) == 1
    assert app.invocations(status="success") == []
    with run_runner(app.runner):
        for invocation in (a, b, c):
            invocation.get_result(WAIT)
    assert len(app.invocations(status="success")) == 3
    assert app.invocations(task=second, status=S.SUCCESS) == [b]
    with pytest.raises(InvocationNotFoundError):
        app.get_invocation("does-not-exist")


def test_purge_deletes_everything_of_the_app(app: App) -> None:
    @app.task
    def noop() -> None: ...

    invocation = noop()
    app.purge()
    assert app.invocations() == []
    with pytest.raises(InvocationNotFoundError):
        _ = invocation.status


def test_app_ids_namespace_everything(make_app: Callable[..., App]) -> None:
    first, second = make_app(), make_app()

    @first.task(registration_concurrency="task")
    def shared_name() -> None: ...

    mine = shared_name()
    assert second.invocations() == []
    with pytest.raises(InvocationNotFoundError):
        second.get_invocation(mine.invocation_id)
    second.purge()
    assert [i.invocation_id for i in first.invocations()] == [mine.invocation_id]
