"""The runner fleet of the soak test: CLI runner processes, and the thread that kills them.

Every runner is a separate OS process, ``python -m taskgate runner start --app soak_app:app
--threads N``, with its stderr (the runner's log) in a file of its own. :class:`Fleet` starts
them, SIGKILLs one and starts a replacement on demand, notices runners that died without being
killed (a crashed runner is a finding), and stops the survivors with SIGTERM at the end.
:class:`Killer` calls :meth:`Fleet.kill_and_replace` every few seconds until told to stop.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

STOP_TIMEOUT_SECONDS = 15.0
KILL_WAIT_SECONDS = 5.0


@dataclass
class RunnerProcess:
    """One runner process and what the fleet knows about it."""

    index: int
    process: subprocess.Popen[bytes]
    log_path: Path
    killed: bool = False
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        """The OS process id."""
        return self.process.pid


@dataclass
class StopReport:
    """How the runners ended.

    Attributes:
        crashed: Runners that exited on their own, before the fleet killed or stopped them.
        unclean: Runners that did not exit with code 0 after SIGTERM, or needed a SIGKILL.
    """

    crashed: list[RunnerProcess] = field(default_factory=list)
    unclean: list[RunnerProcess] = field(default_factory=list)


class Fleet:
    """``size`` runner processes of ``threads`` threads each, started from ``workdir``.

    Args:
        workdir: Where ``soak_app.py`` lives; the runners' working directory.
        env: The runners' environment (backend URL, app id, intervals file...).
        log_dir: Where each runner's stderr goes, as ``runner-<n>.log``.
        size: How many runners run at once.
        threads: Worker threads per runner.
    """

    def __init__(
        self, workdir: Path, env: dict[str, str], log_dir: Path, size: int, threads: int
    ) -> None:
        self.workdir = workdir
        self.env = env
        self.log_dir = log_dir
        self.size = size
        self.threads = threads
        self.all: list[RunnerProcess] = []
        self.live: list[RunnerProcess] = []
        self.kills = 0
        self.crashed: list[RunnerProcess] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the initial ``size`` runners."""
        with self._lock:
            for _ in range(self.size):
                self.live.append(self._spawn())

    def kill_and_replace(self, rng: random.Random) -> int | None:
        """SIGKILL one live runner picked at random and start a replacement.

        Returns the pid killed (None when no runner is live).
        """
        with self._lock:
            self._collect_crashes()
            if not self.live:
                return None
            victim = rng.choice(self.live)
            victim.killed = True
            os.kill(victim.pid, signal.SIGKILL)
            victim.exit_code = victim.process.wait(KILL_WAIT_SECONDS)
            self.live.remove(victim)
            self.kills += 1
            self.live.append(self._spawn())
            return victim.pid

    def live_pids(self) -> set[int]:
        """The pids of the runners alive now."""
        with self._lock:
            return {runner.pid for runner in self.live}

    def stop(self) -> StopReport:
        """SIGTERM every live runner, wait for it to exit cleanly, SIGKILL it if it does not."""
        report = StopReport()
        with self._lock:
            self._collect_crashes()
            report.crashed = list(self.crashed)
            for runner in self.live:
                runner.process.send_signal(signal.SIGTERM)
            for runner in self.live:
                try:
                    runner.exit_code = runner.process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    runner.process.kill()
                    runner.exit_code = runner.process.wait(KILL_WAIT_SECONDS)
                    report.unclean.append(runner)
                    continue
                if runner.exit_code != 0:
                    report.unclean.append(runner)
            self.live = []
        return report

    def close(self) -> None:
        """Kill every runner still alive (the cleanup of last resort; safe to call twice)."""
        with self._lock:
            for runner in self.all:
                if runner.process.poll() is None:
                    runner.process.kill()
                    runner.process.wait(KILL_WAIT_SECONDS)
            self.live = []

    def _spawn(self) -> RunnerProcess:
        index = len(self.all)
        log_path = self.log_dir / f"runner-{index}.log"
        command = [
            sys.executable,
            *("-m", "taskgate", "runner", "start", "--app", "soak_app:app"),
            *("--threads", str(self.threads), "--log-level", "WARNING"),
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        runner = RunnerProcess(index, process, log_path)
        self.all.append(runner)
        return runner

    def _collect_crashes(self) -> None:
        """Move live runners that exited by themselves to ``crashed`` (lock held)."""
        for runner in list(self.live):
            code = runner.process.poll()
            if code is not None:
                runner.exit_code = code
                self.crashed.append(runner)
                self.live.remove(runner)


class Killer(threading.Thread):
    """Every ``min_interval``..``max_interval`` seconds, kill a random runner and replace it.

    :meth:`wait_before_next_kill` lets the driver time its registration bursts so that each
    kill lands while the runners are busy with a burst, not idle between two.
    """

    def __init__(
        self, fleet: Fleet, rng: random.Random, min_interval: float, max_interval: float
    ) -> None:
        super().__init__(name="soak-killer", daemon=True)
        self.fleet = fleet
        self.rng = rng
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.error: BaseException | None = None
        self._stop_event = threading.Event()
        self._schedule = threading.Condition()
        self._next_kill = (0, time.monotonic() + max_interval)  # (kill number, due at)

    def run(self) -> None:
        """Kill and replace until :meth:`stop` is called; keep the first error for the driver."""
        try:
            number = 0
            while True:
                number += 1
                delay = self.rng.uniform(self.min_interval, self.max_interval)
                with self._schedule:
                    self._next_kill = (number, time.monotonic() + delay)
                    self._schedule.notify_all()
                if self._stop_event.wait(delay):
                    return
                self.fleet.kill_and_replace(self.rng)
        except BaseException as exc:
            self.error = exc

    def wait_before_next_kill(self, after: int, lead: float) -> int:
        """Sleep until ``lead`` seconds before the first kill numbered above ``after``.

        Returns that kill's number (pass it as ``after`` next time). Gives up waiting after
        ``max_interval + lead`` seconds, so a dead killer cannot stall the driver.
        """
        give_up = time.monotonic() + self.max_interval + lead
        with self._schedule:
            while self._next_kill[0] <= after and time.monotonic() < give_up:
                self._schedule.wait(0.1)
            number, due = self._next_kill
        time.sleep(max(0.0, due - lead - time.monotonic()))
        return number

    def stop(self) -> None:
        """Stop killing and wait for the thread to end."""
        self._stop_event.set()
        self.join()
