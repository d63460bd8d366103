"""Reviewer's confirming tests for issue 13 part 2 (see the review report)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App, InvocationStatus
from taskgate.runner.interrupts import RunningBodies

S = InvocationStatus


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
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


def test_cancel_request_relayed_after_the_body_ended_is_kept_forever() -> None:
    """A request read by the cancel watcher just after the body left and BodyControl forgot
    it stays in RunningBodies._pending for good (one entry per such race; on Redis the
    request is even left in cancels:<runner> after finish, so every late read leaks)."""
    bodies = RunningBodies()
    body = bodies.thread_body("inv-1", 1)
    bodies.enter(body)
    bodies.leave(body)
    bodies.forget("inv-1")  # BodyControl.execute's finally
    assert bodies.interrupt("inv-1", Exception) is False  # the watcher, a moment later
    assert "inv-1" in bodies._pending  # never dropped: a slow leak


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_async_body_that_swallows_its_timeout_still_times_out(
    make_app: Callable[..., App], run_runner: Callable[[Any], Any]
) -> None:
    app = make_app(threads=1)

    @app.task(timeout=0.1)
    async def stubborn() -> str:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed
            await asyncio.sleep(5)
        return "done"

    # Any: async tasks are typed Invocation[Coroutine[...]] (a review finding)
    invocation: Any = stubborn()
    with run_runner(app.runner), contextlib.suppress(Exception):
        invocation.get_result(15)
    assert invocation.status is S.FAILED
