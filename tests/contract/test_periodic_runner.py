"""Periodic tasks and queues on the runner side (API.md section 9), on every backend.

The scheduler of each runner registers the ticks of ``every=``/``cron=`` tasks through
``Backend.register_tick``; several runners register each tick once. A runner given ``queues``
claims only from those queues.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from taskgate import App, InvocationStatus
from taskgate.runner import ThreadRunner
from taskgate.runner.base import Runner

S = InvocationStatus
WAIT = 15.0
RunRunner = Callable[[Runner], Any]


def test_three_runners_register_each_tick_once(app: App, run_runner: RunRunner) -> None:
    ran: list[tuple[float | None, str]] = []
    lock = threading.Lock()
    enough = threading.Event()

    @app.task(every=0.2)
    def heartbeat(label: str = "tick") -> str:
        invocation = heartbeat.invocation
        with lock:
            ran.append((invocation.scheduled_for, label))
            if len(ran) >= 6:
                enough.set()
        return label

    runners = [ThreadRunner(app, threads=1) for _ in range(3)]
    with run_runner(runners[0]), run_runner(runners[1]), run_runner(runners[2]):
        assert enough.wait(WAIT)
    ticks = sorted(tick for tick, _ in ran if tick is not None)
    assert len(ticks) == len(ran)  # every run knows its tick
    assert len(set(ticks)) == len(ticks)  # never twice for one tick
    assert all(abs(tick / 0.2 - round(tick / 0.2)) < 1e-6 for tick in ticks)  # on the grid
    steps = [round((b - a) / 0.2) for a, b in itertools.pairwise(ticks)]
    # Consecutive ticks: a tick is skipped only when every runner was late past the next
    # one (a loaded machine); the CLI test checks 1 s ticks strictly.
    assert steps.count(1) >= len(steps) // 2, ticks
    assert {label for _, label in ran} == {"tick"}  # called with its defaults
    periodic = app.backend.stats().periodic_ticks
    assert periodic[heartbeat.task_id] >= ticks[-1]


def test_ticks_missed_while_no_runner_is_up_are_not_made_up(
    app: App, run_runner: RunRunner
) -> None:
    first = threading.Event()

    @app.task(every=0.1)
    def beat() -> float | None:
        first.set()
        return beat.invocation.scheduled_for

    started = time.time()
    time.sleep(0.35)  # three ticks pass with no runner up
    with run_runner(app.runner):
        assert first.wait(WAIT)
    ticks = [
        record.scheduled_for
        for record in app.backend.list_invocations(beat.task_id, None, 100)
        if record.scheduled_for is not None
    ]
    assert ticks and min(ticks) > started + 0.35 - 0.1  # nothing from before the runner


def test_a_runner_given_other_queues_never_runs_default_work(
    make_app: Callable[..., App], run_runner: RunRunner, wait_status: Any
) -> None:
    app = make_app(threads=2, queues="other")
    ran: list[str] = []

    @app.task
    def where(tag: str) -> str:
        ran.append(tag)
        return tag

    default_work = [where("default") for _ in range(3)]
    record = dataclasses.replace(app._build_record(where, {"tag": "other"}), queue="other")
    app.backend.register(record)
    other_work = app.get_invocation(record.invocation_id)
    with run_runner(app.runner):
        assert other_work.get_result(WAIT) == "other"
        # A later call in the served queue runs too: the runner kept claiming past the rest.
        later = app.backend.register(
            dataclasses.replace(app._build_record(where, {"tag": "other"}), queue="other")
        )
        assert app.get_invocation(later.invocation_id).get_result(WAIT) == "other"
    assert ran == ["other", "other"]
    assert all(i.status is S.REGISTERED for i in default_work)
