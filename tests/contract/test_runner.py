"""Runner lifecycle (API.md section 6): stopping, grace period, hand-back, on every backend."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App, InvocationStatus
from taskgate.runner import ThreadRunner
from taskgate.runner.base import Runner

S = InvocationStatus
WAIT = 15.0
RunRunner = Callable[[Runner], Any]


def test_stop_returns_at_once_and_run_ends(app: App) -> None:
    runner = app.runner
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()

    @app.task
    def noop() -> int:
        return 1

    assert noop().get_result(WAIT) == 1  # the runner is up
    assert runner.runner_id in app.backend.stats().runners
    runner.stop_runner_loop()
    thread.join(WAIT)
    assert not thread.is_alive() and not runner.is_running
    assert runner.runner_id not in app.backend.stats().runners


def test_thread_count_is_read_when_the_runner_starts(app: App) -> None:
    runner = app.runner
    app.conf.threads = 3
    assert runner.threads == 3


def test_running_tasks_finish_within_the_grace_period(
    make_app: Callable[..., App],
) -> None:
    app = make_app(shutdown_grace_seconds=WAIT)
    started, release = threading.Event(), threading.Event()

    @app.task
    def slow() -> str:
        started.set()
        release.wait(WAIT)
        return "done"

    invocation = slow()
    runner = app.runner
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert started.wait(WAIT)
    runner.stop_runner_loop()
    queued = slow()  # registered after the stop: must not be claimed
    release.set()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert invocation.status is S.SUCCESS and invocation.get_result(0) == "done"
    assert queued.status is S.REGISTERED


def test_unfinished_work_is_handed_back_after_the_grace_period(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(shutdown_grace_seconds=0.05)
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    @app.task
    def stubborn() -> int:
        runs.append(stubborn.invocation.attempt)
        if len(runs) == 1:
            started.set()
            release.wait(WAIT)
        return len(runs)

    invocation = stubborn()
    first = app.runner
    thread = threading.Thread(target=first.run, daemon=True)
    thread.start()
    assert started.wait(WAIT)
    first.stop_runner_loop()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert invocation.status is S.REGISTERED  # back in the queue, not failed
    assert invocation.num_retries == 0  # a hand-back is not a retry
    release.set()  # the abandoned run ends now; its late result must be rejected

    with run_runner(ThreadRunner(app)):
        assert invocation.get_result(WAIT) == 2
    assert runs == [1, 2]
    assert invocation.attempt == 2


def test_a_runner_cannot_run_twice_at_once(app: App, run_runner: RunRunner) -> None:
    with run_runner(app.runner), pytest.raises(RuntimeError, match="already running"):
        app.runner.run()


def test_a_runner_can_run_again_after_a_stop(app: App) -> None:
    @app.task
    def echo(x: int) -> int:
        return x

    runner = app.runner
    for round_no in range(3):
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        assert echo(round_no).get_result(WAIT) == round_no
        runner.stop_runner_loop()
        thread.join(WAIT)
        assert not thread.is_alive()
    thread = threading.Thread(target=runner.run, daemon=True)
    runner.stop_runner_loop()  # a stop that comes before the run starts is not remembered
    thread.start()
    assert echo(9).get_result(WAIT) == 9
    runner.stop_runner_loop()
    thread.join(WAIT)
    assert not thread.is_alive()
