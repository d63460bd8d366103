"""CPU per end-to-end task on Redis, per process group. Prints figures; never asserts on timing.

A private redis-server (taskgate.testing.RedisServer; ``--binary`` picks one) serves a
ProcessRunner of ``--processes`` workers started from this process (the supervisor is a thread
here, as in bench/throughput.py). After a warm-up, ``--tasks`` no-op calls are registered and
every result awaited; around that burst it reads, from /proc (utime + stime):

- caller:  this process (the calls, the result waits, and the runner's supervisor thread),
- workers: the worker processes (children of this process other than redis-server),
- server:  redis-server (cross-checked with its ``INFO cpu``),

and ``INFO commandstats`` (``CONFIG RESETSTAT`` before the burst): calls per task and usec per
call of every command and script. CPU time is load-independent enough to compare runs on a
busy machine; the rate is printed but is wall-clock and noisy.

    .venv/bin/python bench/redis_cpu.py [--tasks 10000] [--processes 2] [--repeat 3]
        [--binary /usr/bin/redis-server] [--workload plain|limits|delayed|priorities]

``--workload`` picks the calls as bench-compare's taskgate rows do: plain no-ops, a task with
two limits (one keyed, over 100 keys), delayed calls (1 ms) or priorities cycling 0-9.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

# bench/compare/cpu.py: the /proc parsing that bench-compare uses too.
sys.path.insert(0, str(Path(__file__).parent / "compare"))
import cpu

from taskgate import App, Invocation
from taskgate.testing import RedisServer

APP_ID = "taskgate-redis-cpu"
WARMUP_TASKS = 500
RESULT_TIMEOUT_SECONDS = 120.0

app = App(app_id=APP_ID, backend="memory://")


@app.task
def no_op() -> None:
    """Do nothing."""


# Generous on purpose, as bench-compare's two-limit row: admissions never wait, so the figure is
# what admitting through two budgets and a rate window costs.
shared_limit = app.limit("bench-shared", concurrency=1000, rate="1000000/s")
keyed_limit = app.limit("bench-keyed", concurrency=2, key="key")


@app.task(limits=[shared_limit, keyed_limit])
def limited_no_op(key: int) -> None:
    """Do nothing, admitted through two limits, one of them keyed by ``key``."""


_delayed = no_op.with_options(delay=0.001)  # any positive delay goes through SCHEDULED
_prioritized = [no_op.with_options(priority=p) for p in range(10)]

# The calls of each workload (bench-compare's taskgate rows), by call number.
WORKLOADS: dict[str, Callable[[int], Invocation[None]]] = {
    "plain": lambda seq: no_op(),
    "limits": lambda seq: limited_no_op(seq % 100),
    "delayed": lambda seq: _delayed(),
    "priorities": lambda seq: _prioritized[seq % 10](),
}


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its own threads, not its children), in seconds.

    Raises:
        OSError: ``pid`` is gone.
    """
    stat = cpu.read_stat(pid)
    if stat is None:
        raise ProcessLookupError(pid)
    return stat.own / cpu.TICKS_PER_SECOND


def children(pid: int) -> set[int]:
    """The direct children of ``pid`` (every thread's)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


def group_cpu(pids: set[int]) -> dict[int, float]:
    """CPU seconds per pid of ``pids`` (gone ones left out)."""
    figures = {}
    for pid in pids:
        try:
            figures[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return figures


def command_stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """INFO commandstats: command -> (calls, usec)."""
    info = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in info.items()
    }


def server_info_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def one_run(
    server: RedisServer, client: redis.Redis, tasks: int, workload: str
) -> dict[str, object]:
    """Start a runner, warm up, measure a burst of ``tasks`` calls of ``workload``, stop the
    runner."""
    call = WORKLOADS[workload]
    assert server.process is not None
    thread = threading.Thread(target=app.runner.run, name="cpu-runner", daemon=True)
    thread.start()
    for invocation in [call(seq) for seq in range(WARMUP_TASKS)]:
        invocation.get_result(timeout=RESULT_TIMEOUT_SECONDS)
    workers = children(os.getpid()) - {server.process.pid}
    client.config_resetstat()
    before_workers = group_cpu(workers)
    before_server = cpu_seconds(server.process.pid)
    before_info = server_info_cpu(client)
    before_caller = cpu_seconds(os.getpid())
    started = time.perf_counter()
    for invocation in [call(seq) for seq in range(tasks)]:
        invocation.get_result(timeout=RESULT_TIMEOUT_SECONDS)
    elapsed = time.perf_counter() - started
    after_caller = cpu_seconds(os.getpid())
    after_workers = group_cpu(workers)
    after_server = cpu_seconds(server.process.pid)
    after_info = server_info_cpu(client)
    stats = command_stats(client)
    app.runner.stop_runner_loop()
    thread.join(timeout=60)
    app.purge()
    micros = 1e6 / tasks
    return {
        "rate": tasks / elapsed,
        "caller": (after_caller - before_caller) * micros,
        "workers": sum(after_workers[p] - before_workers[p] for p in after_workers) * micros,
        "server": (after_server - before_server) * micros,
        "server_info": (after_info - before_info) * micros,
        "stats": stats,
    }


def print_stats(stats: dict[str, tuple[int, int]], tasks: int) -> None:
    rows = sorted(stats.items(), key=lambda item: -item[1][1])
    print(f"  {'command':<28}{'calls/task':>11}{'usec/call':>11}{'usec/task':>11}")
    for name, (calls, usec) in rows:
        if name in ("config", "info"):
            continue
        print(f"  {name:<28}{calls / tasks:>11.3f}{usec / calls:>11.2f}{usec / tasks:>11.1f}")
    total = sum(u for n, (_, u) in stats.items() if n not in ("config", "info"))
    print(f"  {'total (in commands)':<50}{total / tasks:>11.1f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workload", choices=tuple(WORKLOADS), default="plain")
    parser.add_argument("--binary", default=None, help="redis-server (default: taskgate.testing's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with RedisServer(binary=args.binary) as server:
        app.conf.backend = server.url
        app.conf.runner_cls = "ProcessRunner"
        app.conf.processes = args.processes
        client = redis.Redis.from_url(server.url)
        version = client.info("server")["redis_version"]
        print(
            f"redis_cpu: redis-server {version}, {args.tasks} {args.workload} no-op tasks, "
            f"ProcessRunner {args.processes} processes; CPU us per task"
        )
        runs = [one_run(server, client, args.tasks, args.workload) for _ in range(args.repeat)]
        print(
            f"  {'run':<6}{'caller':>9}{'workers':>9}{'server':>9}{'(INFO)':>9}{'total':>9}"
            f"{'tasks/s':>9}"
        )
        keys = ("caller", "workers", "server", "server_info")
        for number, run in enumerate(runs, 1):
            cells = [float(run[k]) for k in keys]  # type: ignore[arg-type]
            total = cells[0] + cells[1] + cells[2]
            print(
                f"  {number:<6}"
                + "".join(f"{c:>9.0f}" for c in cells)
                + f"{total:>9.0f}{float(run['rate']):>9.0f}"  # type: ignore[arg-type]
            )
        medians = [statistics.median(float(r[k]) for r in runs) for k in keys]  # type: ignore[arg-type]
        print(
            f"  {'median':<6}"
            + "".join(f"{c:>9.0f}" for c in medians)
            + f"{medians[0] + medians[1] + medians[2]:>9.0f}"
        )
        print("commandstats of the last run:")
        print_stats(runs[-1]["stats"], args.tasks)  # type: ignore[arg-type]
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
