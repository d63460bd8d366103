"""What every system adapter shares: the settings the driver hands down, worker processes, and
the in-task recording of the per-key workload.

This module runs inside every system's virtual environment, so it needs nothing but the standard
library and redis-py (which every system installs anyway).

An adapter module (``systems/<name>.py``) provides:

- ``REQUIREMENTS``: a literal list of pip requirements (read by the driver with ``ast``, so that
  the driver never imports the adapter); ``{repo}`` stands for the repository root.
- ``DISTRIBUTIONS``: the distributions whose versions the report prints.
- ``KEYED_MECHANISM``: how (d) keeps two calls of one key apart, or ``"none"``.
- ``NOTES``: deviations from the system's defaults, printed in BENCHMARKS.md.
- ``worker_commands(python)``: the commands that start the 2 worker processes.
- ``submit()`` / ``submit_fire()``: enqueue one no-op (``submit_fire`` for (c), where no result
  is awaited; it may skip the result backend); ``submit_keyed(key, seq)`` for (d).
- ``wait(handle, timeout)``: block until the handle's result is there; raise on failure or
  timeout.
- optional ``wait_kept(handle, timeout)``: as ``wait``, but leaves the result in Redis (for the
  memory figures); only needed where ``wait`` deletes the result it reads.
- optional, taskgate only: ``feature_calls()`` (call shapes whose end-to-end rate is set
  beside the plain call's: limits, delays, priorities), ``hot_key_calls()`` (the uncontrolled
  no-op and a KEYS task with one key) and ``submit_gate()`` (a task running
  :func:`gate_body`).

A variant of a system (another worker shape) also sets ``VENV`` (whose venv it uses; its
requirements come from that adapter), ``VARIANT_OF`` and ``CONCURRENCY`` (tasks at a time; 2
when absent).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import redis

REDIS_URL_ENV = "BENCH_REDIS_URL"
RUN_DIR_ENV = "BENCH_RUN_DIR"
KEYED_CALLS_KEY = "bench:keyed:calls"
KEYED_ATTEMPTS_KEY = "bench:keyed:attempts"
KEYED_SLEEP_SECONDS = 0.01
GATE_STARTED_KEY = "bench:gate:started"
GATE_RELEASE_KEY = "bench:gate:release"
GATE_POLL_SECONDS = 0.001
GATE_TIMEOUT_SECONDS = 60.0
WORKER_STOP_GRACE_SECONDS = 15.0
PGID_FILE = "worker-pgids"
# redis-py >= 8 gives every connection a 5 s socket timeout by default, so one blocking read
# (BLPOP, BRPOPLPUSH, XREAD BLOCK) asked to wait longer fails with a socket timeout instead.
WAIT_SLICE_SECONDS = 2.0

T = TypeVar("T")


def redis_url() -> str:
    """The private redis-server of this run (set by the driver)."""
    return os.environ[REDIS_URL_ENV]


def run_dir() -> Path:
    """Scratch folder of this run: worker logs and the process groups to clean up."""
    path = Path(os.environ[RUN_DIR_ENV])
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_in_slices(
    attempt: Callable[[float], T], timeout: float, not_yet: tuple[type[Exception], ...]
) -> T:
    """Call ``attempt(seconds)`` (a blocking wait of at most ``seconds``) until it returns.

    ``not_yet`` are the exceptions by which ``attempt`` says its slice ran out. Each slice is at
    most :data:`WAIT_SLICE_SECONDS`; the whole wait raises :class:`TimeoutError` after
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no result within {timeout:.0f} s")
        try:
            return attempt(min(WAIT_SLICE_SECONDS, remaining))
        except not_yet:
            continue


# --- recording (d) from inside the task -------------------------------------------------------

_client: redis.Redis | None = None
_client_pid = 0


def _recorder() -> redis.Redis:
    """One connection per worker process (re-made after a fork), separate from the system's own."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(redis_url())
        _client_pid = os.getpid()
    return _client


def count_attempt() -> None:
    """Count one start of the keyed task body (or of its lock attempt), before any mechanism."""
    _recorder().incr(KEYED_ATTEMPTS_KEY)


def keyed_body(key: int, seq: int) -> int:
    """The body of (d): sleep 10 ms, then append ``(key, seq, start, end)`` to a Redis list.

    RPUSH is one atomic command on a list no mechanism guards, so recording never serialises
    calls of different keys.
    """
    start = time.time()
    time.sleep(KEYED_SLEEP_SECONDS)
    end = time.time()
    record = json.dumps({"key": key, "seq": seq, "start": start, "end": end})
    _recorder().rpush(KEYED_CALLS_KEY, record)
    return seq


def gate_body() -> int:
    """Hold a worker until the caller sets :data:`GATE_RELEASE_KEY` (at most
    :data:`GATE_TIMEOUT_SECONDS`): the caller queues a backlog behind busy workers with this.

    Counts its start in :data:`GATE_STARTED_KEY` first, so that the caller knows every worker
    is held before it enqueues.
    """
    client = _recorder()
    client.incr(GATE_STARTED_KEY)
    deadline = time.monotonic() + GATE_TIMEOUT_SECONDS
    while not client.exists(GATE_RELEASE_KEY) and time.monotonic() < deadline:
        time.sleep(GATE_POLL_SECONDS)
    return 0


# --- worker processes -------------------------------------------------------------------------


class Workers:
    """Worker processes, each in its own process group; stopping signals the whole group.

    Every group id is also appended to ``<run dir>/worker-pgids``, so that the driver can kill
    what is left even if this process dies or times out.
    """

    def __init__(self, name: str, commands: Sequence[Sequence[str]]) -> None:
        self.name = name
        self.commands = [list(command) for command in commands]
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start every command, with the adapters' folder importable and logs in the run dir."""
        env = dict(os.environ)
        compare_dir = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [compare_dir, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        for number, command in enumerate(self.commands):
            log = (run_dir() / f"{self.name}-worker-{number}.log").open("ab")
            process = subprocess.Popen(
                command,
                cwd=compare_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            self.processes.append(process)
            with (run_dir() / PGID_FILE).open("a") as pgids:
                pgids.write(f"{process.pid}\n")

    @property
    def pgids(self) -> list[int]:
        """The process group of each worker command (its main process's pid)."""
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        """SIGTERM each main process (each system shuts its own children down), wait up to the
        grace period, then SIGKILL whatever is left in each group."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_GRACE_SECONDS
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            _signal_group(process.pid, signal.SIGKILL)  # children the main process left behind
            process.wait(timeout=WORKER_STOP_GRACE_SECONDS)
        self.processes = []

    def check_alive(self) -> None:
        """Raise if a worker process has exited (a crash would otherwise read as a timeout)."""
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} worker {process.args!r} exited with {process.returncode}"
                    f"; see {run_dir()}"
                )


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def with_threads(commands: list[list[str]], threads: int) -> list[list[str]]:
    """Worker ``commands`` with the value of their ``--threads`` option set to ``threads``."""
    for command in commands:
        command[command.index("--threads") + 1] = str(threads)
    return commands
