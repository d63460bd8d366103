"""ProcessRunner worker processes, through the real CLI: stalls, secrets, log lines.

- A worker that stops renewing its leases (a task holding the GIL) is killed before those
  leases expire and its work runs again elsewhere, never overlapping (API.md section 7).
- A backend password never appears on a worker's command line (API.md section 2).
- Workers log in the CLI's format and name themselves as workers of their ProcessRunner.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskgate import InvocationStatus
from taskgate.testing import RedisServer

APPS = Path(__file__).resolve().parents[1] / "apps"
WAIT = 60.0
LEASE = 2.0
S = InvocationStatus


@pytest.fixture
def stall_app(shared_backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``stall_app`` module on a fresh app id of the test's shared backend."""
    yield from _import_stall_app(shared_backend_url, monkeypatch)


def _import_stall_app(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", backend_url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", f"stall-{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("TASKGATE_LEASE_SECONDS", str(LEASE))
    monkeypatch.syspath_prepend(str(APPS))
    sys.modules.pop("stall_app", None)
    import stall_app

    yield stall_app
    stall_app.app.purge()
    stall_app.app.backend.close()
    sys.modules.pop("stall_app", None)


def _start_process_runner(processes: int = 1) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path]),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "stall_app:app"]
    options = ["--runner", "ProcessRunner", "--processes", str(processes), "--threads", "1"]
    return subprocess.Popen(
        [*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(runner: subprocess.Popen[str]) -> str:
    """SIGTERM the runner; its stderr once it exited."""
    runner.send_signal(signal.SIGTERM)
    try:
        _, err = runner.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        runner.kill()
        _, err = runner.communicate()
    return err


def test_a_worker_holding_the_gil_is_killed_before_its_lease_expires(
    stall_app: Any, tmp_path: Path
) -> None:
    invocation = stall_app.freeze(str(tmp_path), int(10 * LEASE))
    runner = _start_process_runner()
    try:
        second = invocation.get_result(WAIT)
        history = invocation.history
    finally:
        err = _stop(runner)
    first = json.loads((tmp_path / "attempt-1.json").read_text())
    # The work ran again, in another process, which started after the first one was dead.
    assert second["attempt"] == 2
    assert second["pid"] != first["pid"]
    assert second["first_alive"] is False
    assert not (tmp_path / "attempt-1.end").exists()  # the first body never got to its end
    # It came back by the supervisor's kill, before the first claim's lease could expire.
    statuses = [entry[0] for entry in history]
    claimed = statuses.index(S.RUNNING)
    assert statuses[claimed + 1] is S.REGISTERED
    assert history[claimed + 1][1] - history[claimed][1] < LEASE
    assert invocation.num_retries == 0
    assert f"killing worker process 0 (pid {first['pid']}) with SIGKILL" in err
    assert "took back the 1 invocation(s) it was running" in err
    assert runner.returncode == 0, err


def test_a_long_task_that_lets_the_heartbeat_run_is_not_killed(stall_app: Any) -> None:
    runner = _start_process_runner()
    try:
        assert stall_app.nap(3 * LEASE).get_result(WAIT) == 1  # one attempt, never taken back
        assert stall_app.echo("after").get_result(WAIT) == "after"
    finally:
        err = _stop(runner)
    assert "killing worker" not in err
    assert "died with exit code" not in err
    assert runner.returncode == 0, err


PASSWORD = "s3cret-pw-4242"


@pytest.fixture
def password_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stall app on a private redis-server that requires a password."""
    with RedisServer(extra_args=["--requirepass", PASSWORD]) as server:
        url = server.url.replace("redis://", f"redis://:{PASSWORD}@")
        yield from _import_stall_app(url, monkeypatch)


def _command_lines(root_pid: int) -> dict[int, str]:
    """The command lines of ``root_pid`` and its descendants."""
    found = {root_pid}
    changed = True
    while changed:
        changed = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid, ppid = (
                    int(stat.parent.name),
                    int(stat.read_text().rsplit(")", 1)[1].split()[1]),
                )
            except (OSError, ValueError, IndexError):
                continue
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    lines = {}
    for pid in found:
        try:
            lines[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
    return {pid: line.decode(errors="replace") for pid, line in lines.items()}


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_the_backend_password_is_on_no_worker_command_line(password_redis: Any) -> None:
    runner = _start_process_runner(processes=2)
    try:
        assert password_redis.echo("up").get_result(WAIT) == "up"  # the workers are running
        command_lines = _command_lines(runner.pid)
    finally:
        err = _stop(runner)
    workers = [line for line in command_lines.values() if "taskgate.runner.worker" in line]
    assert len(workers) == 2, command_lines
    assert all(PASSWORD not in line for line in command_lines.values()), command_lines
    # The CLI's own header line is another item's concern; the runner's and workers' lines:
    runner_lines = [line for line in err.splitlines() if "taskgate.cli:" not in line]
    assert runner_lines and all(PASSWORD not in line for line in runner_lines), err
    assert runner.returncode == 0, err


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) +\S+: ")


def test_workers_log_in_the_cli_format_and_name_their_process_runner(stall_app: Any) -> None:
    runner = _start_process_runner()
    try:
        assert stall_app.echo("x").get_result(WAIT) == "x"
    finally:
        err = _stop(runner)
    lines = err.splitlines()
    assert lines and all(LOG_LINE.match(line) for line in lines), err
    [supervisor_start] = [line for line in lines if "(ProcessRunner, backend" in line]
    supervisor_id = re.search(r"runner (\S+) starting", supervisor_start)
    assert supervisor_id is not None
    worker_starts = [
        line for line in lines if "starting (worker process 0 of ProcessRunner" in line
    ]
    assert len(worker_starts) == 1, err
    assert f"of ProcessRunner {supervisor_id[1]}, backend " in worker_starts[0]
    assert "ThreadRunner" not in err
    assert "[worker" not in err
