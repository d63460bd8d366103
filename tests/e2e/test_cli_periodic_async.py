"""CLI runners (``taskgate runner start``) on shared stores: periodic ticks registered once
across three runners, async tasks in ProcessRunner workers, and ``--queues``."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from taskgate import InvocationStatus
from taskgate.cli import cli

APPS = Path(__file__).resolve().parents[1] / "apps"
WAIT = 60.0
S = InvocationStatus


@pytest.fixture
def periodic_env(shared_backend_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", shared_backend_url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", f"cli-{uuid.uuid4().hex[:12]}")
    monkeypatch.syspath_prepend(str(APPS))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path]),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def periodic_app(periodic_env: dict[str, str]) -> Iterator[ModuleType]:
    sys.modules.pop("periodic_app", None)
    import periodic_app

    yield periodic_app
    periodic_app.app.purge()
    periodic_app.app.backend.close()
    sys.modules.pop("periodic_app", None)


@contextmanager
def cli_runners(
    module: ModuleType, env: dict[str, str], count: int, *options: str
) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` CLI runners of ``periodic_app:app``, live (renewed once) inside the block;
    stopped with SIGTERM after it, each asserted to exit cleanly."""
    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "periodic_app:app"]
    runners = [
        subprocess.Popen(
            [*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    try:
        deadline = time.monotonic() + WAIT
        while len(module.app.backend.stats().runners) < count:
            assert time.monotonic() < deadline, "the runners did not start"
            assert all(r.poll() is None for r in runners), "a runner exited"
            time.sleep(0.01)
        yield runners
    finally:
        for runner in runners:
            runner.send_signal(signal.SIGTERM)
        outputs = [runner.communicate(timeout=WAIT) for runner in runners]
    for runner, (_, err) in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, err
        assert "Traceback" not in err, err


def test_three_cli_runners_register_each_tick_once(
    periodic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKGATE_TEST_EVERY", "1.0")
    env = {**periodic_env, "TASKGATE_TEST_EVERY": "1.0"}
    sys.modules.pop("periodic_app", None)
    import periodic_app

    backend, task_id = periodic_app.app.backend, periodic_app.tick.task_id
    try:
        with cli_runners(periodic_app, env, 3, "--threads", "1"):
            # The scenario: ticks every 1.0 s for a while (8 of them), three runners
            # racing for each. Synchronised on the registered ticks, not on a sleep window.
            deadline = time.monotonic() + WAIT
            while len(backend.list_invocations(task_id, None, 100)) < 8:
                assert time.monotonic() < deadline, "eight ticks were not registered"
                time.sleep(0.05)
        records = backend.list_invocations(task_id, None, 100)
    finally:
        periodic_app.app.purge()
        backend.close()
        sys.modules.pop("periodic_app", None)
    ticks = sorted(record.scheduled_for for record in records if record.scheduled_for)
    assert len(ticks) == len(records) >= 8
    assert len(set(ticks)) == len(ticks), "a tick was registered twice"
    assert all(tick == int(tick) for tick in ticks)  # the epoch-aligned grid of 1.0 s
    # A scheduler that falls behind (a loaded machine) goes on from the next tick after now
    # (section 9: missed ticks are not made up), so a gap is allowed, a tick twice is not;
    # yet most ticks follow one another (a scheduler that kept skipping ticks would not).
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    assert steps.count(1.0) >= len(steps) // 2, ticks
    finished = [r for r in records if r.status.is_final]
    assert all(r.status is S.SUCCESS for r in finished)
    assert len(finished) >= len(records) - 3  # ticks registered just before the stop may run


def test_process_runner_workers_await_async_tasks(
    periodic_app: ModuleType, periodic_env: dict[str, str]
) -> None:
    options = ("--runner", "ProcessRunner", "--processes", "1", "--threads", "1")
    with cli_runners(periodic_app, periodic_env, 1, *options):
        started = time.monotonic()
        invocations = [periodic_app.nap(0.5) for _ in range(20)]
        results = [invocation.get_result(WAIT) for invocation in invocations]
        elapsed = time.monotonic() - started
    assert len({pid for pid, _, _ in results}) == 1
    assert elapsed < 6.0  # one thread; 20 x 0.5 s one after the other would take 10 s


@pytest.mark.parametrize(
    "runner_options",
    [(), ("--runner", "ProcessRunner", "--processes", "1")],
    ids=["thread", "process"],
)
def test_a_cli_runner_given_other_queues_never_runs_default_work(
    periodic_app: ModuleType, periodic_env: dict[str, str], runner_options: tuple[str, ...]
) -> None:
    app = periodic_app.app
    default_work = [periodic_app.where("default") for _ in range(3)]
    with cli_runners(periodic_app, periodic_env, 1, *runner_options, "--queues", "other,more"):
        record = dataclasses.replace(
            app._build_record(periodic_app.where, {"tag": "other"}), queue="other"
        )
        app.backend.register(record)
        assert app.get_invocation(record.invocation_id).get_result(WAIT)[1] == "other"
    assert all(invocation.status is S.REGISTERED for invocation in default_work)


@pytest.mark.parametrize("queues", ["a b", "a,,b", ","])
def test_runner_start_refuses_invalid_queue_names(
    queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(APPS))
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", "memory://")
    sys.modules.pop("periodic_app", None)
    args = ["runner", "start", "--app", "periodic_app:app", "--queues", queues]
    result = CliRunner().invoke(cli, args)
    sys.modules.pop("periodic_app", None)
    assert result.exit_code == 2, result.output
    assert "--queues" in result.output
