"""``async def`` tasks (API.md section 3): awaited on one event loop per runner, every backend."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.errors import InvocationCancelledError, TaskTimeoutError
from taskgate.runner.base import Runner

CC = ConcurrencyControlType
S = InvocationStatus
WAIT = 15.0
RunRunner = Callable[[Runner], Any]


def test_many_async_sleeps_share_one_runner_thread(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=1)
    threads: set[str] = set()

    @app.task
    async def nap(n: int) -> int:
        threads.add(threading.current_thread().name)
        await asyncio.sleep(0.5)
        return n

    invocations = [nap(n) for n in range(30)]
    started = time.monotonic()
    with run_runner(app.runner):
        results = [i.get_result(WAIT) for i in invocations]
        elapsed = time.monotonic() - started
    assert results == list(range(30))
    assert elapsed < 4.0  # 30 x 0.5 s one after the other would take 15 s
    assert len(threads) == 1 and next(iter(threads)).startswith("taskgate-async-loop")


def test_async_task_sees_its_own_invocation_and_its_result_comes_back(
    app: App, run_runner: RunRunner
) -> None:
    @app.task
    async def whoami(tag: str) -> tuple[str, str]:
        await asyncio.sleep(0.01)
        return tag, whoami.invocation.invocation_id

    invocations = [whoami(str(n)) for n in range(5)]
    with run_runner(app.runner):
        results = [i.get_result(WAIT) for i in invocations]
    assert results == [(str(n), i.invocation_id) for n, i in enumerate(invocations)]


def test_async_task_awaits_a_child_async_result(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=1)

    @app.task
    async def child(n: int) -> int:
        await asyncio.sleep(0.05)
        return n * 10

    @app.task
    async def parent(n: int) -> int:
        return await child(n).async_result(WAIT) + 1

    # More parents than a default executor has threads: awaiting never blocks the loop.
    invocations = [parent(n) for n in range(20)]
    with run_runner(app.runner):
        results = [i.get_result(WAIT) for i in invocations]
    assert results == [n * 10 + 1 for n in range(20)]


def test_async_task_awaits_a_sync_child_on_a_one_thread_runner(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=1)

    @app.task
    def sync_child(n: int) -> int:
        return n + 100

    @app.task
    async def async_parent(n: int) -> int:
        # The loop thread awaits; the runner's only worker thread is free to run the child.
        return await sync_child(n).async_result(WAIT)

    invocations = [async_parent(n) for n in range(5)]
    with run_runner(app.runner):
        assert [i.get_result(WAIT) for i in invocations] == [n + 100 for n in range(5)]


def test_async_failures_and_retries_behave_as_for_sync_tasks(
    app: App, run_runner: RunRunner
) -> None:
    attempts: list[int] = []

    @app.task(max_retries=2, retry_for=(KeyError,))
    async def flaky() -> str:
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) < 3:
            raise KeyError("again")
        return "ok"

    @app.task
    async def broken() -> None:
        raise ValueError("boom")

    ok, bad = flaky(), broken()
    with run_runner(app.runner):
        assert ok.get_result(WAIT) == "ok"
        with pytest.raises(ValueError, match="boom"):
            bad.get_result(WAIT)
    assert ok.num_retries == 2
    assert bad.status is S.FAILED


def test_running_limit_applies_to_async_tasks(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=1)
    active = peak = 0

    @app.task(running_concurrency=CC.TASK, running_limit=2)
    async def limited(n: int) -> int:
        nonlocal active, peak
        active += 1  # all on one loop thread: no lock needed
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return n

    invocations = [limited(n) for n in range(8)]
    with run_runner(app.runner):
        assert [i.get_result(WAIT) for i in invocations] == list(range(8))
    assert peak == 2


def test_limits_apply_to_async_tasks(make_app: Callable[..., App], run_runner: RunRunner) -> None:
    app = make_app(threads=1)
    api = app.limit("async-api", concurrency=3)
    active = peak = 0

    @app.task(limits=[api])
    async def call_api(n: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return n

    invocations = [call_api(n) for n in range(10)]
    with run_runner(app.runner):
        assert [i.get_result(WAIT) for i in invocations] == list(range(10))
    assert peak == 3


def test_async_in_flight_caps_what_one_runner_awaits_at_once(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=1, async_in_flight=3)
    active = peak = 0

    @app.task
    async def nap(n: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return n

    invocations = [nap(n) for n in range(9)]
    with run_runner(app.runner):
        assert [i.get_result(WAIT) for i in invocations] == list(range(9))
    assert 1 <= peak <= 3


def test_async_task_timeout_cancels_the_body(app: App, run_runner: RunRunner) -> None:
    cleaned = threading.Event()

    @app.task(timeout=0.2)
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.set()

    @app.task(timeout=5)
    async def quick() -> str:
        await asyncio.sleep(0.01)
        return "in time"

    invocation, fine = slow(), quick()
    started = time.monotonic()
    with run_runner(app.runner):
        with pytest.raises(TaskTimeoutError, match="timeout"):
            invocation.get_result(WAIT)
        assert fine.get_result(WAIT) == "in time"
    assert time.monotonic() - started < 10
    assert cleaned.is_set()
    assert invocation.status is S.FAILED


def test_async_timeout_is_retried_when_listed_in_retry_for(app: App, run_runner: RunRunner) -> None:
    runs: list[float] = []

    @app.task(timeout=0.1, max_retries=1, retry_for=(TaskTimeoutError,))
    async def slow_then_fast() -> str:
        runs.append(time.monotonic())
        if len(runs) == 1:
            await asyncio.sleep(30)
        return "second"

    invocation = slow_then_fast()
    with run_runner(app.runner):
        assert invocation.get_result(WAIT) == "second"
    assert invocation.num_retries == 1


@pytest.mark.parametrize("in_flight", [1, 100])  # 1: the worker waits for room when stopped
def test_stopping_hands_back_async_work_that_outlives_the_grace(
    make_app: Callable[..., App], in_flight: int
) -> None:
    app = make_app(threads=1, shutdown_grace_seconds=0.2, async_in_flight=in_flight)
    started = threading.Event()

    @app.task
    async def endless() -> None:
        started.set()
        await asyncio.sleep(60)

    invocation = endless()
    runner = app.runner
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert started.wait(WAIT)
    runner.stop_runner_loop()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert invocation.status is S.REGISTERED  # handed back, not reported as anything
    assert runner.left_running == 0


def test_cancelling_a_running_async_task_cancels_its_body(app: App, run_runner: RunRunner) -> None:
    started = threading.Event()
    unwound = threading.Event()

    @app.task
    async def endless() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            unwound.set()

    @app.task
    async def after() -> str:
        return "still running async work"

    invocation = endless()
    with run_runner(app.runner):
        assert started.wait(WAIT)
        assert invocation.cancel() is True
        with pytest.raises(InvocationCancelledError):
            invocation.get_result(WAIT)
        assert after().get_result(WAIT) == "still running async work"
    assert unwound.is_set()
    assert invocation.status is S.CANCELLED
