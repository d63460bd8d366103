"""Nothing stuck, nothing lost: runner processes killed or stopped mid-run, on shared backends.

Runners are real processes started from the command line; the lease is 1 s, so a dead runner's
work must be back and finished within 2 leases plus a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskgate import InvocationStatus

APPS = Path(__file__).resolve().parents[1] / "apps"
LEASE = 1.0
BOUND = 2 * LEASE + 10.0  # the promise (2 leases) plus slack for process start-up on 2 cores
S = InvocationStatus


@pytest.fixture
def shared(shared_backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The shared_app module on a fresh app id, with a 1 s lease for it and its runners."""
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", shared_backend_url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", f"faults-{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("TASKGATE_LEASE_SECONDS", str(LEASE))
    monkeypatch.syspath_prepend(str(APPS))
    sys.modules.pop("shared_app", None)
    import shared_app

    yield shared_app
    shared_app.app.purge()
    sys.modules.pop("shared_app", None)


class Runners:
    """``taskgate runner start`` processes for the shared app, killed at the end."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *options: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path])}
        command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "shared_app:app"]
        process = subprocess.Popen(
            [*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.processes.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()
            process.communicate()


@pytest.fixture
def runners() -> Iterator[Runners]:
    started = Runners()
    yield started
    started.kill_all()


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    """Block until ``path`` exists (the task touched it); fail if the runner died first."""
    deadline = time.monotonic() + 30
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def final_statuses(invocation: Any) -> list[S]:
    return [t.status for t in invocation.history if t.status.is_final]


def test_kill_9_mid_run_recovers_the_key_and_runs_the_rest_in_order(
    shared: Any, runners: Runners, tmp_path: Path
) -> None:
    marker = tmp_path / "holding"
    victim = runners.start("--threads", "2")
    first = shared.held("k", 0, str(marker))
    wait_for(marker, victim)
    parked = [shared.held("k", n) for n in range(1, 5)]
    survivor = runners.start("--threads", "2")
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    results = [first.get_result(BOUND)] + [i.get_result(BOUND) for i in parked]
    assert time.monotonic() - killed_at < BOUND
    assert [n for n, _, _ in results] == [0, 1, 2, 3, 4]
    starts = [start for _, _, start in results]
    assert starts == sorted(starts)  # the recovered one first, then the parked ones in order
    assert results[0][1] == 2  # the killed attempt was fenced; the second one succeeded
    assert final_statuses(first) == [S.SUCCESS]
    assert survivor.poll() is None


def test_sigterm_lets_a_running_task_finish_within_the_grace_period(
    shared: Any, runners: Runners, tmp_path: Path
) -> None:
    marker = tmp_path / "holding"
    runner = runners.start("--threads", "1")
    invocation = shared.held("k", 0, str(marker), 1.0)
    wait_for(marker, runner)
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 0, err
    assert invocation.status is S.SUCCESS
    assert invocation.get_result(0) == (0, 1, pytest.approx(invocation.get_result(0)[2]))
    assert final_statuses(invocation) == [S.SUCCESS]


def test_sigterm_past_the_grace_period_hands_work_back_to_another_runner(
    shared: Any, runners: Runners, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKGATE_SHUTDOWN_GRACE_SECONDS", "0.2")
    marker = tmp_path / "holding"
    stopping = runners.start("--threads", "1")
    invocation = shared.held("k", 0, str(marker))
    wait_for(marker, stopping)
    stopping.send_signal(signal.SIGTERM)
    _, err = stopping.communicate(timeout=30)
    assert stopping.returncode == 0, err
    assert "handed invocation" in err
    assert invocation.status is S.REGISTERED and invocation.num_retries == 0
    runners.start("--threads", "1")
    assert invocation.get_result(BOUND)[1] == 2  # run again, as attempt 2
    assert final_statuses(invocation) == [S.SUCCESS]


def test_a_second_sigterm_stops_at_once_and_leases_recover_the_work(
    shared: Any, runners: Runners, tmp_path: Path
) -> None:
    marker = tmp_path / "holding"
    impatient = runners.start("--threads", "1")
    invocation = shared.held("k", 0, str(marker))
    wait_for(marker, impatient)
    impatient.send_signal(signal.SIGTERM)
    # A signal that arrives again before its handler ran is merged with the first: send the
    # second only once the runner has reported the first.
    assert impatient.stderr is not None
    for line in impatient.stderr:
        if "received SIGTERM" in line:
            break
    impatient.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    impatient.communicate(timeout=30)
    assert time.monotonic() - stopped_at < 10  # not the 60 s the task would have taken
    assert invocation.status is S.RUNNING  # left to lease recovery, not handed back
    runners.start("--threads", "1")
    assert invocation.get_result(BOUND)[1] == 2
    assert final_statuses(invocation) == [S.SUCCESS]
