"""The demo's runner processes: ``taskgate runner start --app tasks:app``, started and stopped.

Each runner is a real command-line process started in this folder, with the backend URL and the
provider's URL in its environment (never on its command line), and its log in a file of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STOP_TIMEOUT_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 60.0


class RunnerError(Exception):
    """A runner could not start; the message says why and where its log is."""


@dataclass
class RunnerProcess:
    """One runner process and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the runner's log."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def errors(self) -> list[str]:
        """The ERROR/CRITICAL lines and tracebacks the runner logged."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [
            line
            for line in text.splitlines()
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
        ]


class Runners:
    """``count`` runner processes of ``threads`` threads each, on one backend."""

    def __init__(self, count: int, threads: int, env: dict[str, str], log_dir: Path) -> None:
        self.count = count
        self.threads = threads
        self.env = env
        self.log_dir = log_dir
        self.processes: list[RunnerProcess] = []

    def start(self, announced: Callable[[], int]) -> None:
        """Start the runners; return once ``announced()`` counts them all in the store.

        Raises:
            RunnerError: a runner exited, or they were not all announced in time.
        """
        command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "tasks:app"]
        command += ["--runner", "ThreadRunner", "--threads", str(self.threads)]
        command += ["--log-level", "WARNING"]
        for index in range(self.count):
            log_path = self.log_dir / f"runner-{index + 1}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command, cwd=HERE, env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
            self.processes.append(RunnerProcess(process, log_path))
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while announced() < self.count:
            for runner in self.processes:
                if runner.process.poll() is not None:
                    raise RunnerError(
                        f"a runner exited at start (exit code {runner.process.returncode}); "
                        f"its log ({runner.log_path}) ends with:\n{runner.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise RunnerError(
                    f"the runners did not all start within {READY_TIMEOUT_SECONDS:.0f} s; "
                    f"see their logs in {self.log_dir}"
                )
            time.sleep(0.05)

    def stop(self) -> list[str]:
        """SIGTERM every runner and wait for it; the problems seen (exit codes, logged errors)."""
        for runner in self.processes:
            if runner.process.poll() is None:
                runner.process.send_signal(signal.SIGTERM)
        problems: list[str] = []
        for index, runner in enumerate(self.processes, start=1):
            try:
                code = runner.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                runner.process.kill()
                code = runner.process.wait()
                problems.append(f"runner {index} did not stop within {STOP_TIMEOUT_SECONDS:.0f} s")
            if code != 0:
                problems.append(f"runner {index} exited with code {code} ({runner.log_path})")
            problems += [f"runner {index} logged: {line}" for line in runner.errors()]
        return problems

    def kill(self) -> None:
        """Kill whatever is left (after an error)."""
        for runner in self.processes:
            with contextlib.suppress(ProcessLookupError):
                runner.process.kill()
            runner.process.wait()

    @property
    def pids(self) -> Sequence[int]:
        """The runners' process ids."""
        return [runner.process.pid for runner in self.processes]


def runner_env(backend_url: str, provider_url: str, provider_env: str) -> dict[str, str]:
    """The runners' environment: this one, plus the backend and the provider's URL."""
    return {**os.environ, "TASKGATE_BACKEND": backend_url, provider_env: provider_url}
