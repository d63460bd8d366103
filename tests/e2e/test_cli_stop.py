"""How ``taskgate runner start`` stops: what the first Ctrl-C says, and a forced stop that
leaves invocations RUNNING exits 1 saying how many (real processes and real signals)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from click.testing import CliRunner

from taskgate.cli import cli

AppModuleFactory = Callable[[str], ModuleType]
WAIT = 30.0
GRACE = 120  # never reached: the second signal comes first


class Runner:
    """A ``taskgate runner start`` process whose stderr lines are collected as they come."""

    def __init__(self, module: ModuleType, cwd: Path, options: list[str], env: dict[str, str]):
        command = [sys.executable, "-m", "taskgate", "runner", "start"]
        self.process = subprocess.Popen(
            [*command, "--app", f"{module.__name__}:app", *options],
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "CLI_TEST_GRACE": str(GRACE), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, pattern: str) -> str:
        """Block until a stderr line matches ``pattern``; fail when the process ends first."""
        for line in self.lines:
            if re.search(pattern, line):
                return line
        deadline = time.monotonic() + WAIT
        while True:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"exited without {pattern!r}:\n{''.join(self.lines)}"
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def wait_exit(self) -> tuple[int, str]:
        """The exit code and the whole stderr."""
        code = self.process.wait(WAIT)
        while (line := self._queue.get(timeout=WAIT)) is not None:
            self.lines.append(line)
        return code, "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_for_file(path: Path) -> None:
    """Block until ``path`` exists (the task body announces it has started)."""
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def stop_twice(runner: Runner, *, acted_on: str = r"received SIGINT: stopping") -> tuple[int, str]:
    """SIGINT, wait for the line ``acted_on`` (the stop is under way), SIGINT again.

    Returns the exit code and stderr.
    """
    runner.process.send_signal(signal.SIGINT)
    first = runner.wait_for_line(r"received SIGINT: stopping")
    assert f"waiting up to {float(GRACE)} s (shutdown_grace_seconds)" in first
    assert "press Ctrl-C again (or send a second signal) to stop at once" in first
    runner.wait_for_line(acted_on)
    runner.process.send_signal(signal.SIGINT)
    return runner.wait_exit()


def test_a_forced_stop_of_a_thread_runner_exits_1_saying_what_it_left(
    app_module_factory: AppModuleFactory, backend_url: str, tmp_path: Path
) -> None:
    module = app_module_factory(backend_url)
    marker = tmp_path / "started"
    # The runner process registers the blocking task itself (memory:// is its own).
    runner = Runner(module, tmp_path, ["--threads", "2"], {"CLI_TEST_BLOCK": str(marker)})
    try:
        wait_for_file(marker)
        code, err = stop_twice(runner)
    finally:
        runner.kill()
    assert code == 1, err
    assert re.search(r"WARNING .*received SIGINT again: stopping now; tasks still running", err)
    assert re.search(r"ERROR .*taskgate\.cli: runner \S+ was stopped at once and left 1 ", err)
    assert "exited cleanly" not in err
    if backend_url != "memory://":  # the store outlives the runner: status shows the orphan
        status = CliRunner().invoke(cli, ["status", "--app", f"{module.__name__}:app"])
        assert "1 RUNNING invocation(s) are orphaned" in status.stdout, status.output


def test_a_forced_stop_of_a_process_runner_exits_1_saying_what_it_left(
    app_module_factory: AppModuleFactory, shared_backend_url: str, tmp_path: Path
) -> None:
    module = app_module_factory(shared_backend_url)
    marker = tmp_path / "started"
    module.block(str(marker))
    options = ["--runner", "ProcessRunner", "--processes", "1", "--threads", "2"]
    runner = Runner(module, tmp_path, options, {})
    try:
        wait_for_file(marker)
        # The second SIGINT at once, while the worker may not have acted on its SIGTERM yet:
        # the supervisor forces the stop with SIGUSR1, which cannot merge with that SIGTERM.
        code, err = stop_twice(runner)
    finally:
        runner.kill()
    assert code == 1, err
    assert re.search(r"taskgate\.cli: runner \S+ was stopped at once and left 1 invocation", err)
    assert re.search(r"-w\d+ received SIGUSR1( again)?: stopping now", err), err
    assert "exited cleanly" not in err


def test_a_graceful_stop_exits_0_and_says_it_exited_cleanly(
    app_module_factory: AppModuleFactory, shared_backend_url: str, tmp_path: Path
) -> None:
    module = app_module_factory(shared_backend_url)
    marker = tmp_path / "done"
    module.write_marker(str(marker))
    # --backend wins over TASKGATE_BACKEND (which the module's App reads): the work is found.
    env = {"CLI_TEST_GRACE": "5", "TASKGATE_BACKEND": "memory://"}
    runner = Runner(module, tmp_path, ["--backend", shared_backend_url], env)
    try:
        wait_for_file(marker)
        runner.process.send_signal(signal.SIGINT)
        code, err = runner.wait_exit()
    finally:
        runner.kill()
    assert code == 0, err
    assert f"backend {module.app.conf.backend_display}, ThreadRunner" in err
    assert "lives in this process" not in err
    assert "waiting up to 5.0 s (shutdown_grace_seconds)" in err
    assert re.search(r"taskgate\.cli: runner \S+ exited cleanly", err)
    assert "left" not in err
