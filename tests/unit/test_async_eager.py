"""``async def`` tasks in eager mode, and ``async_result`` awaited on a loop (API.md 3, 5, 10)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from taskgate import App, InvocationStatus
from taskgate.errors import TaskTimeoutError

S = InvocationStatus


@pytest.fixture
def eager_app() -> App:
    return App(backend="memory://", eager=True)


def test_eager_async_task_runs_to_its_end_in_the_call(eager_app: App) -> None:
    @eager_app.task
    async def double(x: int) -> tuple[int, str]:
        await asyncio.sleep(0)
        return 2 * x, double.invocation.invocation_id

    invocation = double(21)
    assert invocation.status is S.SUCCESS
    assert invocation.result == (42, invocation.invocation_id)


def test_eager_async_task_failures_and_retries(eager_app: App) -> None:
    attempts: list[int] = []

    @eager_app.task(max_retries=1, retry_for=(KeyError,))
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise KeyError("once")
        return "ok"

    @eager_app.task
    async def broken() -> None:
        raise ValueError("boom")

    assert flaky().result == "ok"
    with pytest.raises(ValueError, match="boom"):
        _ = broken().result


def test_eager_async_task_called_inside_a_running_loop(eager_app: App) -> None:
    caller = threading.get_ident()
    ran_in: list[int] = []

    @eager_app.task
    async def where() -> str:
        ran_in.append(threading.get_ident())
        await asyncio.sleep(0)
        return "done"

    async def main() -> str:
        return await where().async_result()

    assert asyncio.run(main()) == "done"
    assert ran_in and ran_in[0] != caller  # a fresh loop on a helper thread


def test_eager_async_timeout_is_enforced(eager_app: App) -> None:
    @eager_app.task(timeout=0.05)
    async def slow() -> None:
        await asyncio.sleep(10)

    invocation = slow()
    assert invocation.status is S.FAILED
    with pytest.raises(TaskTimeoutError):
        _ = invocation.result


def test_async_result_does_not_block_the_loop() -> None:
    app = App(backend="memory://")

    @app.task
    def never_run() -> None:
        return None

    invocations = [never_run() for _ in range(40)]  # no runner: they stay REGISTERED
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> int:
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        waits = [asyncio.create_task(i.async_result(0.3)) for i in invocations]
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        stop.set()
        await ticking
        return sum(isinstance(o, TimeoutError) for o in outcomes)

    # 40 waits at once (more than a default executor's threads) all time out together.
    assert asyncio.run(main()) == 40
    assert ticks >= 10  # the loop kept running while they waited
