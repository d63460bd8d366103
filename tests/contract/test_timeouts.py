"""Timeouts of running bodies (API.md section 9 "Timeouts"), ThreadRunner, on every backend."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.errors import TaskTimeoutError
from tests.conftest import WAIT, running, wait_for_status

S = InvocationStatus


def _spin(seconds: float) -> None:
    """Run Python code for ``seconds`` (an asynchronous exception can land anywhere)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def thread_deaths() -> Iterator[list[BaseException | None]]:
    """Exceptions that ended a thread during the test (must stay empty)."""
    deaths: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: deaths.append(args.exc_value)
    yield deaths
    threading.excepthook = previous


def test_a_body_past_its_timeout_fails_with_task_timeout_error(app: App) -> None:
    @app.task(timeout=0.2)
    def loops() -> None:
        while True:
            time.sleep(0.01)

    invocation = loops()
    with running(app.runner), pytest.raises(TaskTimeoutError, match="timeout"):
        invocation.get_result(WAIT)
    assert invocation.status is S.FAILED


def test_a_timed_out_run_is_retried_when_retry_for_names_it(app: App) -> None:
    @app.task(timeout=0.2, retry_for=(TaskTimeoutError,), max_retries=1)
    def first_attempt_hangs() -> int:
        attempt = first_attempt_hangs.invocation.attempt
        while attempt == 1:
            time.sleep(0.01)
        return attempt

    invocation = first_attempt_hangs()
    with running(app.runner):
        assert invocation.get_result(WAIT) == 2
    assert invocation.num_retries == 1


def test_the_outcome_is_a_timeout_even_if_the_body_swallows_the_exception(app: App) -> None:
    @app.task(timeout=0.1)
    def swallows() -> str:
        try:
            while True:
                time.sleep(0.01)
        except TaskTimeoutError:
            return "ignored the timeout"

    invocation = swallows()
    with running(app.runner), pytest.raises(TaskTimeoutError):
        invocation.get_result(WAIT)


def test_the_slot_is_released_only_once_the_timed_out_body_stopped(
    make_app: Callable[..., App],
) -> None:
    app = make_app(threads=2)
    caught, release = threading.Event(), threading.Event()
    order: list[str] = []

    @app.task(timeout=0.2, running_concurrency=ConcurrencyControlType.KEYS, key_arguments=("key",))
    def guarded(key: str, name: str) -> str:
        if name == "first":
            try:
                while True:
                    time.sleep(0.01)
            except TaskTimeoutError:
                caught.set()
                release.wait(WAIT)  # still running: cleaning up after the timeout
                order.append("first stopped")
                raise
        order.append(f"{name} started")
        return name

    first = guarded("k", "first")
    with running(app.runner):
        wait_for_status(first, S.RUNNING)
        second = guarded("k", "second")
        assert caught.wait(WAIT)
        wait_for_status(second, S.CONCURRENCY_CONTROLLED)  # parked while the body still runs
        assert first.status is S.RUNNING
        release.set()
        assert second.get_result(WAIT) == "second"
    assert order == ["first stopped", "second started"]
    assert first.status is S.FAILED


def test_runs_without_a_timeout_are_never_interrupted(app: App) -> None:
    @app.task
    def quick(x: int) -> int:
        _spin(0.001)
        return x

    with running(app.runner):
        assert [quick(i).get_result(WAIT) for i in range(20)] == list(range(20))


def test_timeouts_right_at_the_end_of_many_short_bodies_never_hurt_the_worker(
    make_app: Callable[..., App], thread_deaths: list[BaseException | None]
) -> None:
    """A timeout fires at any bytecode, also while the body returns: the worker survives,
    each outcome is either the body's value or a TaskTimeoutError, and the runner goes on."""
    app = make_app(threads=2)
    timeout = 0.004

    @app.task(timeout=timeout)
    def near_the_edge(x: int, seconds: float) -> int:
        _spin(seconds)
        return x

    rng = random.Random(13)
    calls = [near_the_edge(i, timeout * rng.uniform(0.6, 1.4)) for i in range(300)]
    outcomes = {"success": 0, "timeout": 0}
    with running(app.runner):
        for i, invocation in enumerate(calls):
            try:
                assert invocation.get_result(WAIT) == i
                outcomes["success"] += 1
            except TaskTimeoutError:
                outcomes["timeout"] += 1
        # The runner still runs work, on both its threads.
        after = [near_the_edge(1000 + i, 0.0) for i in range(8)]
        assert [inv.get_result(WAIT) for inv in after] == [1000 + i for i in range(8)]
    assert thread_deaths == []
    assert outcomes["timeout"] > 0
    assert {c.status for c in calls} <= {S.SUCCESS, S.FAILED}


def test_stray_interrupts_never_reach_runner_code(app: App, thread_deaths: list[Any]) -> None:
    """Bodies that end as the watchdog fires, many times: no exception escapes execute()."""
    app.conf.threads = 1

    @app.task(timeout=0.0005)
    def tiny(x: int) -> int:
        return x

    with running(app.runner):
        results = []
        for i in range(300):
            try:
                results.append(tiny(i).get_result(WAIT))
            except TaskTimeoutError:
                results.append(i)
        assert results == list(range(300))
    assert thread_deaths == []
