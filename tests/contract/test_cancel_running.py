"""Cancelling running bodies (API.md sections 5 and 9): the runner interrupts the body, the
invocation ends CANCELLED, its slots are released once the body stopped; every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.errors import InvocationCancelledError
from taskgate.record import CancelResult
from tests.conftest import WAIT, running, wait_for_status

S = InvocationStatus


def test_a_running_body_is_interrupted_and_ends_cancelled(app: App) -> None:
    started = threading.Event()
    seen: list[BaseException] = []

    @app.task
    def loops() -> None:
        started.set()
        try:
            while True:
                time.sleep(0.01)
        except InvocationCancelledError as exc:
            seen.append(exc)
            raise

    invocation = loops()
    with running(app.runner):
        assert started.wait(WAIT)
        assert app.backend.cancel(invocation.invocation_id) is CancelResult.REQUESTED
        with pytest.raises(InvocationCancelledError):
            invocation.get_result(WAIT)
    assert invocation.status is S.CANCELLED
    assert len(seen) == 1


def test_a_body_that_swallows_the_cancel_still_ends_cancelled(app: App) -> None:
    started = threading.Event()

    @app.task(max_retries=3, retry_for=(Exception,))
    def stubborn() -> str:
        started.set()
        try:
            while True:
                time.sleep(0.01)
        except InvocationCancelledError:
            return "carried on"

    invocation = stubborn()
    with running(app.runner):
        assert started.wait(WAIT)
        app.backend.cancel(invocation.invocation_id)
        with pytest.raises(InvocationCancelledError):
            invocation.get_result(WAIT)
    assert invocation.status is S.CANCELLED
    assert invocation.num_retries == 0


def test_the_slot_is_released_once_the_cancelled_body_stopped(
    make_app: Callable[..., App],
) -> None:
    app = make_app(threads=2)
    started, caught, release = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    @app.task(running_concurrency=ConcurrencyControlType.TASK)
    def guarded(name: str) -> str:
        if name == "first":
            started.set()
            try:
                while True:
                    time.sleep(0.01)
            except InvocationCancelledError:
                caught.set()
                release.wait(WAIT)
                order.append("first stopped")
                raise
        order.append(f"{name} started")
        return name

    first = guarded("first")
    with running(app.runner):
        assert started.wait(WAIT)
        second = guarded("second")
        app.backend.cancel(first.invocation_id)
        assert caught.wait(WAIT)
        wait_for_status(second, S.CONCURRENCY_CONTROLLED)
        assert first.status is S.RUNNING
        release.set()
        assert second.get_result(WAIT) == "second"
    assert order == ["first stopped", "second started"]
    assert first.status is S.CANCELLED


def test_the_runner_goes_on_after_many_cancels(
    make_app: Callable[..., App],
) -> None:
    """Cancels racing with the end of short bodies: every invocation ends SUCCESS or
    CANCELLED, and the runner still runs work afterwards."""
    app = make_app(threads=2)

    @app.task
    def short(x: int) -> int:
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        return x

    with running(app.runner):
        calls = [short(i) for i in range(100)]
        for invocation in calls:
            app.backend.cancel(invocation.invocation_id)
        for invocation in calls:  # .result of those cancelled while waiting is the core's
            record = app.backend.wait_final(invocation.invocation_id, WAIT)
            assert record is not None and record.status in (S.SUCCESS, S.CANCELLED)
        assert short(1000).get_result(WAIT) == 1000
