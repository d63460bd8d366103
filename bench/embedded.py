"""Embedded stores side by side: taskgate's SQLite and memory backends against Huey's.

Prints a table; ``--json PATH`` also writes ``{"rows": [{"system", "config", "workload", "unit",
"value"}], "method": text}`` (each value the median of the rounds). Never asserts on timing.

    .venv/bin/python bench/embedded.py [--json out.json] [--quick] [--huey-python PATH]

Systems and configurations (one fresh database file per measurement):

- ``taskgate sqlite``: the default backend (WAL, ``synchronous=NORMAL``); runners started with
  ``taskgate runner start``; results awaited with ``get_result`` (polls 1 ms doubling to 20 ms
  for another process's commit).
- ``huey sqlite-defaults``: ``SqliteHuey(filename=...)`` as shipped (WAL, SQLite's default
  ``synchronous=FULL``: an fsync per commit), consumer and ``Result.get(blocking=True)`` defaults
  (polls from 50 ms, x1.15 up to 1 s).
- ``huey sqlite-matched``: the same durability and polling as taskgate: ``synchronous=NORMAL``,
  result polls 1 ms doubling to 20 ms, consumer ``-d 0.001 -m 0.02 -b 2``.
- ``taskgate memory`` / ``huey memory``: ``memory://`` and ``MemoryHuey``, one process, 4 worker
  threads in it (MemoryHuey cannot be shared between processes).

Workloads: ``enqueue`` (calls/s, no worker running); ``e2e 2 processes`` and ``e2e 1 process x 4
threads`` (tasks/s from the first call to the last result, after one warm-up round trip) and
their CPU per task (µs: caller plus every worker process, utime + stime from /proc: independent
of the machine's load); ``WAL pages per registration`` and ``WAL pages per task`` (register, run,
read the result, in one process on one connection with automatic checkpoints off: frames
appended to the -wal file, a load-independent cost of durability) and ``WAL KB`` (the same in
bytes: the files' page sizes differ); taskgate SQLite only:
``backlog drain 2 processes`` and ``hot-key drain 2 processes`` (the backlog registered first;
the hot-key one of a KEYS task called with one key, so one runs at a time): tasks/s and the
workers' CPU per task.

The Huey side runs in its own venv (``--huey-python``; default
``bench/compare/.venvs/huey-embedded``, made with ``huey==3.5.4`` when missing): this script runs
itself there as an agent (``--agent``), and its worker commands import this file as a module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/compare/cpu.py: the /proc parsing that bench-compare uses too.
sys.path.insert(0, str(Path(__file__).resolve().parent / "compare"))
import cpu

HERE = Path(__file__).resolve().parent
HUEY_VENV = HERE / "compare" / ".venvs" / "huey-embedded"
HUEY_REQUIREMENT = "huey==3.5.4"
DB_ENV, CONFIG_ENV = "EMBEDDED_BENCH_DB", "EMBEDDED_BENCH_CONFIG"
RESULT_TIMEOUT = 120.0
POLL_FIRST, POLL_MAX = 0.001, 0.02  # taskgate's SQLite waits (backend.MAX_IDLE_WAIT)
SHAPES = {"e2e 2 processes": ("process", 2), "e2e 1 process x 4 threads": ("thread", 4)}
CONFIGS = [
    ("taskgate", "sqlite"),
    ("huey", "sqlite-defaults"),
    ("huey", "sqlite-matched"),
    ("taskgate", "memory"),
    ("huey", "memory"),
]


# --- the apps (imported by worker commands: ``embedded:taskgate_app``, ``embedded.huey_app``) ---


def _noop() -> int:
    return 0


def _keyed(key: int) -> int:
    return key


def _make(name: str) -> Any:
    db, config = os.environ[DB_ENV], os.environ[CONFIG_ENV]
    if name == "taskgate_app":
        from taskgate import App, ConcurrencyControlType

        backend = "memory://" if config == "memory" else f"sqlite:///{db}"
        app = App("embedded-bench", backend=backend)
        app.no_op_task = app.task(_noop)  # type: ignore[attr-defined]
        keys = {"running_concurrency": ConcurrencyControlType.KEYS, "key_arguments": ("key",)}
        app.keyed_task = app.task(**keys)(_keyed)  # type: ignore[attr-defined]
        return app
    import huey

    if config == "memory":
        h: Any = huey.MemoryHuey("bench")
    elif config == "sqlite-defaults":
        h = huey.SqliteHuey("bench", filename=db)
    else:
        h = huey.SqliteHuey("bench", filename=db, storage_class=_matched_storage())
    h.no_op_task = h.task(name="no_op")(_noop)
    return h


def _matched_storage() -> Any:
    from huey.storage import SqliteStorage

    class MatchedStorage(SqliteStorage):  # type: ignore[misc]
        """synchronous=NORMAL, and result waits polling like taskgate's (1 ms doubling to 20)."""

        def _create_connection(self) -> Any:
            conn = super()._create_connection()
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn

        def wait_result(self, key: Any, timeout: Any = None, *_: Any, **__: Any) -> bool:
            deadline = None if timeout is None else time.monotonic() + timeout
            delay = POLL_FIRST
            while not self.has_data_for_key(key):
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(delay)
                delay = min(POLL_MAX, delay * 2)
            return True

    return MatchedStorage


_apps: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name not in ("taskgate_app", "huey_app"):
        raise AttributeError(name)
    if name not in _apps:
        _apps[name] = _make(name)
    return _apps[name]


# --- measuring inside one system's interpreter --------------------------------------------------


def _cpu_of_group(pgid: int) -> float:
    """utime + stime (seconds) of the live processes of process group ``pgid``."""
    ticks = sum(stat.own for stat in cpu.all_stats() if stat.pgrp == pgid)
    return ticks / cpu.TICKS_PER_SECOND


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


class Agent:
    """One (system, config) in this interpreter: its calls, result waits, workers and pages."""

    def __init__(self, system: str, config: str, db: str) -> None:
        os.environ[DB_ENV], os.environ[CONFIG_ENV] = db, config
        self.system, self.config, self.db = system, config, db
        self.app = __getattr__("taskgate_app" if system == "taskgate" else "huey_app")

    def call(self) -> Any:
        return self.app.no_op_task()

    def wait(self, handle: Any) -> Any:
        if self.system == "taskgate":
            return handle.get_result(timeout=RESULT_TIMEOUT)
        return handle.get(blocking=True, timeout=RESULT_TIMEOUT)

    def enqueue(self, tasks: int) -> float:
        self.call()  # the schema exists and the connection is open
        started = time.perf_counter()
        for _ in range(tasks):
            self.call()
        return tasks / (time.perf_counter() - started)

    def e2e(self, kind: str, workers: int, tasks: int) -> tuple[float, float, float]:
        """Tasks/s, and CPU µs per task of the caller and of the workers (their process group;
        0 when they are threads of the caller), of ``tasks`` no-ops."""
        if self.config == "memory":
            stop, pgid = self._threads_in_process(workers), None
        else:
            process = self._start_workers(kind, workers)
            stop, pgid = lambda: _stop_group(process), process.pid
        try:
            self.wait(self.call())  # the workers are up and taking work
            caller, group = _own_cpu(), (_cpu_of_group(pgid) if pgid else 0.0)
            started = time.perf_counter()
            handles = [self.call() for _ in range(tasks)]
            for handle in handles:
                self.wait(handle)
            elapsed = time.perf_counter() - started
            caller = _own_cpu() - caller
            group = (_cpu_of_group(pgid) if pgid else 0.0) - group
        finally:
            stop()
        return tasks / elapsed, caller / tasks * 1e6, group / tasks * 1e6

    def drain(self, tasks: int, keyed: bool) -> tuple[float, float]:
        """A backlog of ``tasks`` no-ops (``keyed``: of the KEYS task, all one key) registered
        before 2 worker processes start: tasks/s and the workers' CPU µs per task, from the
        first result (the workers are up) to the last."""
        call: Callable[[], Any] = self._call_keyed if keyed else self.call
        handles = [call() for _ in range(tasks)]
        process = self._start_workers("process", 2)
        try:
            self.wait(handles[0])
            cpu, started = _cpu_of_group(process.pid), time.perf_counter()
            for handle in handles[1:]:
                self.wait(handle)
            elapsed = time.perf_counter() - started
            cpu = _cpu_of_group(process.pid) - cpu
        finally:
            _stop_group(process)
        return (tasks - 1) / elapsed, cpu / (tasks - 1) * 1e6

    def _call_keyed(self) -> Any:
        return self.app.keyed_task(0)

    def _start_workers(self, kind: str, count: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._worker_command(kind, count),
            cwd=HERE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), _path()]))},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sys.stderr,
            start_new_session=True,
        )

    def pages(self, tasks: int) -> tuple[float, float, int]:
        """WAL frames appended per registration, and per task (register, run, read the result),
        and a frame's size in bytes (one page and its header).

        One connection, automatic checkpoints off, the -wal file truncated first: its growth
        in frames is what these writes cost.
        """
        self.call()
        if self.system == "taskgate":
            db = self.app.backend._db  # writes share one connection (before: one per thread)
            conn = getattr(db, "_write_connection", db.connection)()
        else:
            conn = self.app.storage.conn
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        frame: int = conn.execute("PRAGMA page_size").fetchone()[0] + 24
        wal = Path(self.db + "-wal")

        def frames() -> float:
            return float(max(0, wal.stat().st_size - 32) / frame)

        handles = [self.call() for _ in range(tasks)]
        registered = frames()
        if self.system == "taskgate":
            self._run_taskgate_in_process(tasks)
        else:
            for _ in range(tasks):
                self.app.execute(self.app.dequeue())
        for handle in handles:
            if self.system == "taskgate":
                self.app.backend.get(handle.invocation_id)
            else:
                handle.get()
        return registered / tasks, frames() / tasks, frame

    def _run_taskgate_in_process(self, tasks: int) -> None:
        """Claim and finish ``tasks`` invocations as a runner does (finish_and_claim)."""
        from taskgate.record import Outcome, OutcomeKind

        backend, runner, done = self.app.backend, "bench-runner", Outcome(OutcomeKind.SUCCESS, b"0")
        claims = backend.claim(runner, 1, 60.0, 0.0)
        for _ in range(tasks):
            claim = claims[0]
            _, claims = backend.finish_and_claim(
                claim.invocation_id, runner, claim.attempt, done, max_count=1, lease_seconds=60.0
            )

    def _worker_command(self, kind: str, count: int) -> list[str]:
        if self.system == "taskgate":
            runner = ["--runner", "processrunner", "--processes", str(count), "--threads", "1"]
            if kind == "thread":
                runner = ["--runner", "threadrunner", "--threads", str(count)]
            app = ["--app", "embedded:taskgate_app", "--log-level", "warning"]
            return [sys.executable, "-m", "taskgate", "runner", "start", *app, *runner]
        consumer = str(Path(sys.executable).parent / "huey_consumer")
        command = [sys.executable, consumer, "embedded.huey_app", "-k", kind, "-w", str(count)]
        if self.config == "sqlite-matched":
            command += ["-d", str(POLL_FIRST), "-m", str(POLL_MAX), "-b", "2"]
        return [*command, "-q"]

    def _threads_in_process(self, count: int) -> Callable[[], None]:
        """``count`` worker threads in this process (memory stores); returns their stop."""
        if self.system == "taskgate":
            self.app.conf.threads = count
            self.app.conf.runner_cls = "ThreadRunner"
            thread = threading.Thread(target=self.app.runner.run, daemon=True)
            thread.start()

            def stop_runner() -> None:
                self.app.runner.stop_runner_loop()
                thread.join(30)

            return stop_runner
        consumer = self.app.create_consumer(workers=count, worker_type="thread")
        consumer._set_signal_handlers = lambda: None
        threading.Thread(target=consumer.run, daemon=True).start()
        return lambda: consumer.stop(graceful=True)


def _path() -> str:
    return os.environ.get("PYTHONPATH", "")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the workers' main process, then SIGKILL whatever is left of its group."""
    process.send_signal(signal.SIGTERM)  # the group's leader stops its own children
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


def run_agent(system: str, config: str, workload: str, tasks: int) -> dict[str, float]:
    """One workload on a fresh database; its figures by (workload, unit)."""
    with tempfile.TemporaryDirectory(prefix="embedded-bench-") as folder:
        agent = Agent(system, config, str(Path(folder) / "bench.db"))
        if workload == "enqueue":
            return {"enqueue|calls/s": agent.enqueue(tasks)}
        if workload == "pages":
            registration, task, frame = agent.pages(tasks)
            return {
                "WAL pages per registration|pages": registration,
                "WAL pages per task|pages": task,
                # Files differ in page size (taskgate's 2 KB, Huey's SQLite's default 4 KB): what
                # a commit writes, checksums and later copies back is the bytes.
                "WAL KB per registration|KB": registration * frame / 1024,
                "WAL KB per task|KB": task * frame / 1024,
            }
        if workload in DRAINS:
            rate, cpu = agent.drain(tasks, keyed=workload == "hot-key drain 2 processes")
            return {f"{workload}|tasks/s": rate, f"{workload} workers CPU per task|µs": cpu}
        kind, workers = SHAPES[workload]
        rate, caller, group = agent.e2e(kind, workers, tasks)
        return {
            f"{workload}|tasks/s": rate,
            f"{workload} CPU per task|µs": caller + group,
            f"{workload} CPU per task, caller|µs": caller,
        }


# --- the driver -------------------------------------------------------------------------------

DRAINS = ("backlog drain 2 processes", "hot-key drain 2 processes")
SQLITE_WORKLOADS = ["enqueue", "pages", *SHAPES]
MEMORY_WORKLOADS = ["enqueue", "e2e 1 process x 4 threads"]


def huey_python(given: str | None) -> str:
    """The interpreter of Huey's venv, made (with HUEY_REQUIREMENT) when missing."""
    if given:
        return given
    python = HUEY_VENV / "bin" / "python"
    if not python.exists():
        print(f"[setup] creating {HUEY_VENV} with {HUEY_REQUIREMENT}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(HUEY_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", HUEY_REQUIREMENT]
        subprocess.run(pip, check=True)
    return str(python)


def measure(python: str, system: str, config: str, workload: str, tasks: int) -> dict[str, float]:
    command = [python, str(Path(__file__).resolve()), "--agent", system, config, workload]
    done = subprocess.run(
        [*command, "--tasks", str(tasks)], check=False, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"{system} {config} {workload} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


METHOD = """\
One machine; each figure is the median of {rounds} interleaved rounds (every configuration and
workload once per round, a fresh interpreter and database file each). {tasks} no-op tasks per
end-to-end run and {enqueue} calls per enqueue run, after one warm-up call. End to end: calls
made back to back, then every result awaited in call order; tasks/s from the first call to the
last result; CPU per task = utime + stime of the caller and of every worker process (/proc),
the caller's also alone.
Workers: taskgate `runner start` (ProcessRunner 2 x 1 thread, or ThreadRunner 4 threads); Huey
`huey_consumer -k process -w 2` or `-k thread -w 4`. Huey defaults: SqliteHuey as shipped
(WAL, SQLite's default synchronous=FULL), default consumer polling (0.1 s x1.15 to 10 s) and
result polling (50 ms x1.15 to 1 s). Huey matched: synchronous=NORMAL as taskgate's SQLite,
result polls from 1 ms doubling to 20 ms, consumer -d 0.001 -m 0.02 -b 2. Memory: memory:// and
MemoryHuey with 4 worker threads in the caller's process. WAL pages: one process, one
connection, automatic checkpoints off, -wal file size growth in frames (one page each: 2 KB in
taskgate's files, 4 KB in Huey's), per registration and per task (register, claim and finish or
dequeue and execute, read the result); WAL KB: the same growth in bytes. Drains
(taskgate only): the backlog registered first, then 2 worker processes; from the first result
to the last; the hot-key one calls a KEYS task with one key (one runs at a time)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    parser.add_argument("--quick", action="store_true", help="1 round, 1,000 tasks")
    parser.add_argument("--tasks", type=int, help="tasks per run (default 5,000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--huey-python", help="Huey venv's interpreter")
    parser.add_argument("--only", help="comma-separated system:config pairs to run")
    parser.add_argument("--agent", nargs=3, metavar=("SYSTEM", "CONFIG", "WORKLOAD"))
    args = parser.parse_args(argv)
    tasks = args.tasks or (1000 if args.quick else 5000)
    if args.agent:
        import embedded  # as a module: worker processes import tasks from it by that name

        system, config, workload = args.agent
        print(json.dumps(embedded.run_agent(system, config, workload, tasks)))
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    configs = CONFIGS
    if args.only:
        configs = [c for c in CONFIGS if f"{c[0]}:{c[1]}" in args.only.split(",")]
    pythons = {"taskgate": sys.executable, "huey": ""}
    if any(system == "huey" for system, _ in configs):
        pythons["huey"] = huey_python(args.huey_python)
    samples: dict[tuple[str, str, str, str], list[float]] = {}
    for number in range(rounds):
        for system, config in configs:
            workloads = MEMORY_WORKLOADS if config == "memory" else SQLITE_WORKLOADS
            if (system, config) == ("taskgate", "sqlite"):
                workloads = [*workloads, *DRAINS]
            for workload in workloads:
                figures = measure(pythons[system], system, config, workload, tasks)
                for name, value in figures.items():
                    label, unit = name.split("|")
                    samples.setdefault((system, config, label, unit), []).append(value)
                print(f"[round {number + 1}] {system} {config} {workload}: {figures}", flush=True)
    rows = [
        {"system": s, "config": c, "workload": w, "unit": u, "value": statistics.median(v)}
        for (s, c, w, u), v in samples.items()
    ]
    print_table(rows)
    if args.json:
        method = METHOD.format(rounds=rounds, tasks=tasks, enqueue=tasks)
        Path(args.json).write_text(json.dumps({"rows": rows, "method": method}, indent=2) + "\n")
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    """Rows by workload, each Huey row with taskgate's advantage on the same store: its rate
    over Huey's, or Huey's cost (µs, pages) over its (above 1: taskgate does better)."""
    values = {(r["system"], r["config"], r["workload"]): r["value"] for r in rows}
    print(f"\n{'workload':<42} {'system / config':<26} {'value':>10}  taskgate advantage")
    for row in sorted(rows, key=lambda r: (r["workload"], r["config"], r["system"])):
        store = "memory" if row["config"] == "memory" else "sqlite"
        own = values.get(("taskgate", store, row["workload"]))
        advantage = ""
        if own and row["value"] and row["system"] == "huey":
            ratio = own / row["value"] if row["unit"].endswith("/s") else row["value"] / own
            advantage = f"{ratio:.2f}x"
        name = f"{row['system']} {row['config']}"
        print(f"{row['workload']:<42} {name:<26} {row['value']:>10.1f}  {advantage}")


if __name__ == "__main__":
    sys.exit(main())
