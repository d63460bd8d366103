"""Runners describe themselves (``Backend.announce_runner``) from their heartbeat: counters that
add up to the runs done, what runs right now, and no description once stopped. A ThreadRunner
on every backend, a ProcessRunner's workers on the backends processes share."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskgate import App
from taskgate.backends.base import Backend
from taskgate.errors import BackendError
from taskgate.record import DURATION_BUCKETS, RunnerInfo
from taskgate.runner import ProcessRunner, ThreadRunner
from taskgate.runner.base import Runner

APPS = Path(__file__).resolve().parents[1] / "apps"
WAIT = 30.0
# A heartbeat (and an announcement) every second; long enough that a loaded machine never lets
# a lease expire, which would run an invocation twice and break the exact counts below.
LEASE = 3.0
RunRunner = Callable[[Runner], Any]


def wait_for_infos(backend: Backend, done: Callable[[list[RunnerInfo]], bool]) -> list[RunnerInfo]:
    """The runner descriptions once ``done`` accepts them (the next heartbeats announce what
    the runs already counted); fails the test after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not done(infos := backend.runner_infos()):
        assert time.monotonic() < deadline, f"descriptions never matched: {infos}"
        time.sleep(0.02)
    return infos


def outcome_total(infos: list[RunnerInfo], task_suffix: str, kind: str) -> int:
    return sum(
        counters.outcomes.get(kind, 0)
        for info in infos
        for task, counters in info.tasks.items()
        if task.endswith(task_suffix)
    )


def test_a_thread_runner_announces_its_counters_and_what_runs(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(lease_seconds=LEASE, queues=["default", "other"])
    entered, release = threading.Event(), threading.Event()

    @app.task
    def quick(x: int) -> int:
        return x

    @app.task
    def fails() -> None:
        raise ValueError("no")

    @app.task
    def held() -> str:
        entered.set()
        release.wait(WAIT)
        return "released"

    runner = ThreadRunner(app, threads=3)
    with run_runner(runner):
        assert [quick(n).get_result(WAIT) for n in range(20)] == list(range(20))
        for _ in range(3):
            with pytest.raises(ValueError):
                fails().get_result(WAIT)
        blocked = held()
        assert entered.wait(WAIT)
        try:
            [info] = wait_for_infos(
                app.backend,
                lambda infos: (
                    len(infos) == 1
                    and [e.invocation_id for e in infos[0].running] == [blocked.invocation_id]
                    and outcome_total(infos, "quick", "success") == 20
                    and outcome_total(infos, "fails", "failed") == 3
                ),
            )
        finally:
            release.set()
        assert blocked.get_result(WAIT) == "released"
        assert info.runner_id == runner.runner_id and info.kind == "thread"
        assert info.pid == os.getpid() and info.threads == 3
        assert info.queues == ("default", "other")
        assert info.started_at <= info.heartbeat_at
        [entry] = info.running
        assert entry.task_id.endswith("held") and entry.attempt == 1
        assert info.started_at <= entry.started_at <= info.heartbeat_at
        [quick_id] = [task for task in info.tasks if task.endswith("quick")]
        counted = info.tasks[quick_id]
        assert len(counted.duration_counts) == len(DURATION_BUCKETS) + 1
        assert sum(counted.duration_counts) == 20 and counted.duration_sum >= 0
        assert sum(m.finished for m in info.minutes) == 23
        assert sum(m.failed for m in info.minutes) == 3
        # The run that was held is counted at a later heartbeat, and leaves `running`.
        wait_for_infos(
            app.backend,
            lambda infos: (
                len(infos) == 1
                and not infos[0].running
                and outcome_total(infos, "held", "success") == 1
            ),
        )
    assert app.backend.runner_infos() == []  # a graceful stop forgets the description


def test_async_runs_are_counted_and_shown_running(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(lease_seconds=LEASE)
    entered = threading.Event()
    release: list[Any] = []

    @app.task
    async def quick(x: int) -> int:
        return x

    @app.task
    async def held() -> str:
        import asyncio

        gate = asyncio.Event()
        release.append((asyncio.get_running_loop(), gate))
        entered.set()
        await gate.wait()
        return "released"

    with run_runner(ThreadRunner(app, threads=2)):
        assert [quick(n).get_result(WAIT) for n in range(10)] == list(range(10))
        blocked = held()
        assert entered.wait(WAIT)
        loop, gate = release[0]
        try:
            wait_for_infos(
                app.backend,
                lambda infos: (
                    [e.invocation_id for i in infos for e in i.running] == [blocked.invocation_id]
                    and outcome_total(infos, "quick", "success") == 10
                ),
            )
        finally:
            loop.call_soon_threadsafe(gate.set)
        assert blocked.get_result(WAIT) == "released"


@pytest.fixture
def announce_app(shared_backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``announce_app`` module on a fresh app id of the test's shared backend."""
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", shared_backend_url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", f"announce-{uuid.uuid4().hex[:12]}")
    monkeypatch.syspath_prepend(str(APPS))
    sys.modules.pop("announce_app", None)
    import announce_app

    yield announce_app
    announce_app.app.purge()
    announce_app.app.backend.close()
    sys.modules.pop("announce_app", None)


def _unblock(fifo: Path) -> None:
    """Write to the FIFO a blocked body reads, if a body has it open (never blocks)."""
    with contextlib.suppress(OSError):  # ENXIO: no body has it open
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"go")
        os.close(fd)


def test_process_runner_workers_announce_counters_that_add_up(
    announce_app: Any, tmp_path: Path
) -> None:
    app = announce_app.app
    app.conf.processes = 2
    app.conf.lease_seconds = LEASE
    runner = ProcessRunner(app, app_spec="announce_app:app")
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        calls = [announce_app.quick(n) for n in range(30)]
        assert [call.get_result(WAIT) for call in calls] == list(range(30))
        for n in range(4):
            with pytest.raises(ValueError):
                announce_app.fails(n).get_result(WAIT)
        blocked = announce_app.blocker(str(fifo))
        infos = wait_for_infos(
            app.backend,
            lambda infos: (
                len(infos) == 2
                and outcome_total(infos, "quick", "success") == 30
                and outcome_total(infos, "fails", "failed") == 4
                and [e.invocation_id for i in infos for e in i.running] == [blocked.invocation_id]
            ),
        )
        assert {info.kind for info in infos} == {"process-worker"}
        assert len({info.pid for info in infos}) == 2 and os.getpid() not in {i.pid for i in infos}
        assert all(info.runner_id.startswith(runner.runner_id) for info in infos)
        finished = sum(m.finished for info in infos for m in info.minutes)
        assert finished == 34
        _unblock(fifo)
        assert blocked.get_result(WAIT) == "go"
    finally:
        _unblock(fifo)
        runner.stop_runner_loop()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert app.backend.runner_infos() == []


def test_a_failing_announcement_is_logged_and_never_stops_the_runner(
    make_app: Callable[..., App],
    run_runner: RunRunner,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(lease_seconds=0.3)  # a beat every 0.1 s: several failures in the test
    tries = threading.Semaphore(0)

    def refuse(info: RunnerInfo, ttl_seconds: float) -> None:
        tries.release()
        # A BackendError would stop the runner if a renewal raised it: not an announcement.
        raise BackendError("announcements refused")

    monkeypatch.setattr(app.backend, "announce_runner", refuse)

    @app.task
    def add(x: int) -> int:
        return x + 1

    runner = ThreadRunner(app, threads=2)
    with caplog.at_level(logging.DEBUG, logger="taskgate.runner.heartbeat"), run_runner(runner):
        for _ in range(3):  # the start's announcement and two beats after it
            assert tries.acquire(timeout=WAIT)
        assert add(1).get_result(WAIT) == 2
        assert runner.is_running
    failures = [r for r in caplog.records if "could not announce" in r.getMessage()]
    assert [r.levelno for r in failures[:2]] == [logging.WARNING, logging.DEBUG]
    assert sum(r.levelno == logging.WARNING for r in failures) == 1
