"""Run every workload once on one system; started by run.py with that system's own interpreter.

    <venv>/bin/python bench/compare/agent.py --system NAME --out FILE [sizes...]

It needs ``BENCH_REDIS_URL`` (the private redis-server) and ``BENCH_RUN_DIR`` (scratch) in the
environment. The figures go to ``--out`` as JSON; a workload that fails or times out is recorded
under ``errors`` and the ones after it are skipped (their workers may be wedged). Every wait is
bounded, and the workers are stopped in a ``finally`` block.

Order: (c) enqueue with no worker running, FLUSHALL, (m) enqueue ``--memory-calls`` awaited
no-ops with no worker (Redis memory per queued invocation), start the 2 workers and await them
(memory per finished one), one call to see the workers up plus a few warm-up round trips, (a)
end to end for each size (CPU per task from /proc too), (b) round trips, (d) per key, then where
the adapter has them (taskgate) its feature rows and the hot-key drains, and last, if
``--backlog`` is given and this run's rates say it fits ``--backlog-budget`` seconds, (e) the
backlog drain (which restarts the workers); stop the workers.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import random
import sys
import time
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import cpu
import redis
import workloads
from systems import common

READY_TIMEOUT_SECONDS = 120.0  # the first call after starting the workers
E2E_TIMEOUT_SECONDS = 300.0  # every result of one end-to-end batch
ROUND_TRIP_TIMEOUT_SECONDS = 30.0
KEYED_TIMEOUT_SECONDS = 300.0
WARMUP_CALLS = 100  # untimed enqueues before (c), and ...
WARMUP_ROUND_TRIPS = 10  # ... untimed round trips before (a)
MAX_DROP_REASONS = 3  # the first few exceptions of dropped (d) calls, kept in the output
KEYED_ORDER_SEED = 6  # the shuffled order of the per-key calls: the same for every system and run


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile ``pct`` (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def overlapping_pairs(records: Sequence[dict[str, Any]]) -> int:
    """How many pairs of calls of the same key ran at overlapping times."""
    by_key: dict[int, list[tuple[float, float]]] = {}
    for record in records:
        by_key.setdefault(record["key"], []).append((record["start"], record["end"]))
    pairs = 0
    for intervals in by_key.values():
        for (start_a, end_a), (start_b, end_b) in itertools.combinations(intervals, 2):
            if start_a < end_b and start_b < end_a:
                pairs += 1
    return pairs


class Agent:
    """The workloads of one system, on one run."""

    def __init__(self, system: ModuleType, workers: common.Workers) -> None:
        self.system = system
        self.workers = workers
        self.redis = redis.Redis.from_url(common.redis_url())
        self.redis_pid = int(self.redis.info("server")["process_id"])
        self.drop_reasons: list[str] = []
        self.memory_baseline = 0

    def cpu_sample(self, workers: common.Workers) -> dict[str, float]:
        """CPU seconds so far of this process, the workers' process groups and redis-server."""
        return cpu.sample(workers.pgids, self.redis_pid)

    def cpu_per_task(
        self, before: dict[str, float], workers: common.Workers, tasks: int, prefix: str
    ) -> dict[str, float]:
        """CPU per task (microseconds, by group) since ``before``."""
        return cpu.per_task_us(before, self.cpu_sample(workers), tasks, prefix)

    def wait_all(self, handles: list[Any], timeout: float) -> None:
        """Wait for each handle in order, all within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for handle in handles:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"results not all in within {timeout} s")
            self.system.wait(handle, remaining)

    def enqueue(self, calls: int) -> dict[str, float]:
        """(c) ``calls`` no-op enqueues with no worker running: calls/s."""
        for _ in range(WARMUP_CALLS):
            self.system.submit_fire()
        started = time.perf_counter()
        for _ in range(calls):
            self.system.submit_fire()
        return {"enqueue_rate": calls / (time.perf_counter() - started)}

    def warm_up(self) -> None:
        """One call to see the workers up, then a few untimed round trips."""
        self.system.wait(self.system.submit(), READY_TIMEOUT_SECONDS)
        for _ in range(WARMUP_ROUND_TRIPS):
            self.system.wait(self.system.submit(), ROUND_TRIP_TIMEOUT_SECONDS)

    def end_to_end(self, calls: int) -> dict[str, float]:
        """(a) Enqueue ``calls`` no-ops, then await every result: tasks/s over the whole span,
        and the seconds the enqueueing and the waiting took (workers run during both); and the
        CPU each process group spent per task over the same span (``cpu_e2e_<calls>_<group>``).
        """
        before = self.cpu_sample(self.workers)
        started = time.perf_counter()
        handles = [self.system.submit() for _ in range(calls)]
        enqueued = time.perf_counter()
        self.wait_all(handles, E2E_TIMEOUT_SECONDS)
        finished = time.perf_counter()
        return {
            f"e2e_{calls}": calls / (finished - started),
            f"e2e_{calls}_enqueue_s": enqueued - started,
            f"e2e_{calls}_wait_s": finished - enqueued,
            **self.cpu_per_task(before, self.workers, calls, f"cpu_e2e_{calls}"),
        }

    def round_trips(self, count: int) -> dict[str, float]:
        """(b) ``count`` sequential call-then-wait round trips: p50 and p99 in ms."""
        trips = []
        for _ in range(count):
            started = time.perf_counter()
            self.system.wait(self.system.submit(), ROUND_TRIP_TIMEOUT_SECONDS)
            trips.append(time.perf_counter() - started)
        return {"rt_p50": percentile(trips, 50) * 1000, "rt_p99": percentile(trips, 99) * 1000}

    def keyed(self, calls: int, keys: int) -> dict[str, float]:
        """(d) ``calls`` calls over ``keys`` keys, each sleeping 10 ms, in a fixed shuffled order.

        Reports the wall time to the last result, the same-key pairs that overlapped, how many
        times the task body (or its lock attempt) started, and the calls that never completed.
        """
        self.redis.delete(common.KEYED_CALLS_KEY, common.KEYED_ATTEMPTS_KEY)
        order = [seq % keys for seq in range(calls)]
        random.Random(KEYED_ORDER_SEED).shuffle(order)
        deadline = time.monotonic() + KEYED_TIMEOUT_SECONDS
        started = time.perf_counter()
        handles = [self.system.submit_keyed(key, seq) for seq, key in enumerate(order)]
        dropped = 0
        for handle in handles:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"per-key calls not all final within {KEYED_TIMEOUT_SECONDS} s")
            try:
                self.system.wait(handle, remaining)
            except TimeoutError:
                raise
            except Exception as exc:  # the system gave up on the call: a drop
                dropped += 1
                if len(self.drop_reasons) < MAX_DROP_REASONS:
                    self.drop_reasons.append(f"{type(exc).__name__}: {exc}"[:2000])
        wall = time.perf_counter() - started
        records = [json.loads(raw) for raw in self.redis.lrange(common.KEYED_CALLS_KEY, 0, -1)]
        return {
            "keyed_wall": wall,
            "keyed_overlaps": overlapping_pairs(records),
            "keyed_attempts": int(self.redis.get(common.KEYED_ATTEMPTS_KEY) or 0),
            "keyed_executions": len(records),
            "keyed_completed": len({record["seq"] for record in records}),
            "keyed_dropped": dropped,
        }


def versions(distributions: Sequence[str]) -> dict[str, str]:
    """The installed version of each distribution."""
    return {name: metadata.version(name) for name in distributions}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every workload on ``args.system``; returns the figures and any error."""
    system = importlib.import_module(f"systems.{args.system}")
    workers = common.Workers(args.system, system.worker_commands(sys.executable))
    agent = Agent(system, workers)
    figures: dict[str, float] = {}
    errors: dict[str, str] = {}
    step = "enqueue"
    try:
        agent.redis.flushall()
        figures |= agent.enqueue(args.enqueue)
        agent.redis.flushall()  # nothing consumes these; no worker is running yet
        step = "memory"
        handles, queued = workloads.memory_queued(agent, args.memory_calls)
        figures |= queued
        step = "start"
        workers.start()
        figures |= workloads.memory_finished(
            agent, handles, READY_TIMEOUT_SECONDS + E2E_TIMEOUT_SECONDS
        )
        del handles
        agent.warm_up()
        for calls in args.e2e:
            step = f"e2e_{calls}"
            figures |= agent.end_to_end(calls)
        step = "round_trips"
        figures |= agent.round_trips(args.round_trips)
        step = "keyed"
        figures |= agent.keyed(args.keyed_calls, args.keyed_keys)
        if hasattr(system, "feature_calls") and args.feature_calls:
            step = "features"
            figures |= workloads.feature_rows(agent, args.feature_calls)
        if hasattr(system, "hot_key_calls") and args.hot_calls:
            step = "hot_key"
            figures |= workloads.hot_key(agent, args.hot_calls)
        if args.backlog:
            step = "backlog"
            estimate = workloads.backlog_estimate(figures, args.backlog, args.e2e)
            if estimate is not None and estimate <= args.backlog_budget:
                figures |= workloads.backlog(agent, workers, args.backlog)
            else:
                figures["backlog_skipped_est_s"] = estimate or 0.0
    except Exception as exc:
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        try:
            workers.check_alive()
        except RuntimeError as dead:  # a crashed worker explains the failure better
            message = f"{message} ({dead})"
        errors[step] = message
    finally:
        workers.stop()
    return {
        "system": args.system,
        "versions": versions(system.DISTRIBUTIONS),
        "python": sys.version.split()[0],
        "keyed_mechanism": system.KEYED_MECHANISM,
        "variant_of": getattr(system, "VARIANT_OF", None),
        "concurrency": getattr(system, "CONCURRENCY", 2),
        "notes": list(system.NOTES),
        "figures": figures,
        "errors": errors,
        "drop_reasons": agent.drop_reasons,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--system", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--e2e", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--enqueue", type=int, default=10000)
    parser.add_argument("--keyed-calls", type=int, default=600)
    parser.add_argument("--keyed-keys", type=int, default=30)
    parser.add_argument("--memory-calls", type=int, default=1000)
    parser.add_argument("--feature-calls", type=int, default=10000, help="0: skip")
    parser.add_argument("--hot-calls", type=int, default=10000, help="0: skip")
    parser.add_argument("--backlog", type=int, default=0, help="0: skip")
    parser.add_argument("--backlog-budget", type=float, default=150.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
