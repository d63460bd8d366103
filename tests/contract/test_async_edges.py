"""Async tasks at the edges: a stopping runner never hands back a body that still runs, and a
body that swallows its timeout's cancellation still times out."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from taskgate import App, InvocationStatus

S = InvocationStatus


def test_abandoned_async_body_is_not_handed_back_while_it_still_runs(
    make_app: Callable[..., App], run_runner: Callable[[Any], Any]
) -> None:
    app = make_app(threads=1, shutdown_grace_seconds=0.2)
    started = threading.Event()
    seen: list[S] = []

    @app.task
    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            # Cleanup of a cancelled body: it still runs (holds its slot) for a moment.
            await asyncio.sleep(0.5)
            record = app.backend.get(slow.invocation.invocation_id)
            assert record is not None
            seen.append(record.status)
            raise

    slow()
    with run_runner(app.runner):
        assert started.wait(10)
    assert seen, "the body's cleanup did not run"
    assert seen[0] is S.RUNNING, f"handed back while its body still ran: {seen[0]}"


def test_async_body_that_swallows_its_timeout_still_times_out(
    make_app: Callable[..., App], run_runner: Callable[[Any], Any]
) -> None:
    app = make_app(threads=1)

    @app.task(timeout=0.1)
    async def stubborn() -> str:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed
            await asyncio.sleep(5)
        return "done"

    invocation = stubborn()
    with run_runner(app.runner), contextlib.suppress(Exception):
        invocation.get_result(15)
    assert invocation.status is S.FAILED
