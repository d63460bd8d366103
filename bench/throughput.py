"""Throughput and latency of taskgate on one backend. Prints figures; never asserts on timing.

What is measured (each workload runs ``--repeat`` times; the table shows the median and every
run; the store is purged between workloads):

(a) enqueue     ``--tasks`` no-op calls registered with no runner running: calls/s.
(b) end to end  a ThreadRunner with ``--threads`` threads runs in a daemon thread; ``--tasks``
                no-op calls are registered, then every result is awaited. tasks/s counts from
                the first call to the last result. The no-op task returns
                ``time.time() - sent_at`` (the call-to-start latency), reported as p50/p99;
                it includes the time spent queued behind the rest of the burst.
(c) round trip  500 sequential call-then-result round trips on an idle runner: p50/p99 of the
                round trip, and of call-to-start.
(d) keyed       as (b), with ``running_concurrency=KEYS`` over 100 keys: tasks/s, and the ratio
                to the uncontrolled rate of (b) in the same run.
(f) two limits  as (b), with a task that lists two limits: one shared (``concurrency`` and
                ``rate`` far above what the run reaches) and one keyed over 100 keys (2 slots
                per key): tasks/s, and the ratio to (b) in the same run. The limits rarely
                block; this measures what admitting through them costs.
(g) delayed     with a runner running, ``DELAYED_CALLS`` no-op calls made with
                ``with_options(eta=...)``, their etas spread evenly over ``DELAYED_SPREAD_SECONDS``
                starting ``DELAYED_LEAD_SECONDS`` from the first call: p50/p99/max of the
                lateness, how long after its eta each body started (the store's clock is the
                host's here, so both sides read one clock).
(e) seed        the seed scenario: 10 x 0.1 s sleeps without running control (ideal 0.1-0.2 s)
                and 10 with ``running_concurrency=TASK`` (ideal 1.0 s, no overlap), then how long
                ``stop_runner_loop()`` plus joining the runner thread takes.

Latencies use ``time.time()`` on both sides, so they are exact within one process.

Run it (``make bench`` runs it on memory, SQLite and Redis):

    .venv/bin/python bench/throughput.py [--backend memory://] [--tasks 20000] [--threads N]
        [--runner ThreadRunner|ProcessRunner] [--processes 2] [--repeat 3]

``--backend redis`` starts a private redis-server for the run (see taskgate.testing).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from taskgate import App, ConcurrencyControlType, Invocation
from taskgate.errors import TaskgateError
from taskgate.testing import RedisServer

APP_ID = "taskgate-bench"
DEFAULT_BACKEND = "memory://"
ROUND_TRIPS = 500
KEYS = 100
SEED_CALLS = 10
SEED_SLEEP_SECONDS = 0.1
DELAYED_CALLS = 500
DELAYED_LEAD_SECONDS = 0.5
DELAYED_SPREAD_SECONDS = 1.0
# Guards against a hang: a benchmark that never returns tells nothing.
RESULT_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")

# The backend URL is replaced by ``--backend`` in main(), before the backend is first used.
app = App(app_id=APP_ID, backend=DEFAULT_BACKEND)


@app.task
def no_op(sent_at: float) -> float:
    """Do nothing; return the seconds from the call (``sent_at``) to the start of execution."""
    return time.time() - sent_at


@app.task(running_concurrency=ConcurrencyControlType.KEYS, key_arguments=("key",))
def keyed_no_op(key: int, sent_at: float) -> float:
    """:func:`no_op` under running concurrency control, one slot per ``key``."""
    return time.time() - sent_at


@app.task
def delayed_no_op(eta: float) -> float:
    """Do nothing; return the seconds from its ``eta`` to the start of execution (lateness)."""
    return time.time() - eta


# Generous on purpose: (f) measures the cost of admission through two limits, not waiting.
bench_shared = app.limit("bench-shared", concurrency=1000, rate="1000000/s")
bench_keyed = app.limit("bench-keyed", concurrency=2, key="key")


@app.task(limits=[bench_shared, bench_keyed])
def limited_no_op(key: int, sent_at: float) -> float:
    """:func:`no_op` admitted through two limits, one of them keyed by ``key``."""
    return time.time() - sent_at


class SleepResult(NamedTuple):
    start: float
    end: float


@app.task(running_concurrency=ConcurrencyControlType.DISABLED)
def sleep_without_running_concurrency(seconds: float) -> SleepResult:
    start = time.time()
    time.sleep(seconds)
    return SleepResult(start=start, end=time.time())


@app.task(running_concurrency=ConcurrencyControlType.TASK)
def sleep_with_running_concurrency(seconds: float) -> SleepResult:
    start = time.time()
    time.sleep(seconds)
    return SleepResult(start=start, end=time.time())


# --- helpers -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile ``pct`` (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def any_overlap(results: Sequence[SleepResult]) -> bool:
    """Whether any two [start, end] intervals overlap."""
    ordered = sorted(results, key=lambda r: r.start)
    return any(later.start < earlier.end for earlier, later in itertools.pairwise(ordered))


def result_of(invocation: Invocation[T]) -> T:
    """``invocation.result`` with a generous timeout: a broken backend fails, not hangs."""
    return invocation.get_result(timeout=RESULT_TIMEOUT_SECONDS)


def start_runner() -> threading.Thread:
    """Run ``app.runner.run()`` in a daemon thread; return once one round trip has completed."""
    thread = threading.Thread(target=app.runner.run, name="bench-runner", daemon=True)
    thread.start()
    result_of(no_op(time.time()))  # the workers are up and claiming
    return thread


def stop_runner(thread: threading.Thread) -> float:
    """Stop the runner and join its thread; return how long that took, in seconds."""
    started = time.perf_counter()
    app.runner.stop_runner_loop()
    thread.join(timeout=STOP_TIMEOUT_SECONDS)
    elapsed = time.perf_counter() - started
    if thread.is_alive():
        raise RuntimeError(f"the runner thread did not end within {STOP_TIMEOUT_SECONDS} s")
    return elapsed


# --- workloads ---------------------------------------------------------------------------------


def enqueue_rate(tasks: int) -> dict[str, float]:
    """(a) Register ``tasks`` no-op calls with no runner; calls per second."""
    started = time.perf_counter()
    for _ in range(tasks):
        no_op(time.time())
    elapsed = time.perf_counter() - started
    app.purge()
    return {"enqueue_rate": tasks / elapsed}


def end_to_end(tasks: int) -> dict[str, float]:
    """(b) Register ``tasks`` no-op calls on a running runner and await every result."""
    elapsed, latencies = timed_calls(lambda n: no_op(time.time()), tasks)
    return {
        "e2e_rate": tasks / elapsed,
        "e2e_start_p50": percentile(latencies, 50) * 1000,
        "e2e_start_p99": percentile(latencies, 99) * 1000,
    }


def keyed_end_to_end(tasks: int) -> dict[str, float]:
    """(d) As (b), under running concurrency control over ``KEYS`` keys."""
    elapsed, _ = timed_calls(lambda n: keyed_no_op(n % KEYS, time.time()), tasks)
    return {"keyed_rate": tasks / elapsed}


def limits_end_to_end(tasks: int) -> dict[str, float]:
    """(f) As (b), through two limits (one keyed over ``KEYS`` keys) that rarely block."""
    elapsed, _ = timed_calls(lambda n: limited_no_op(n % KEYS, time.time()), tasks)
    return {"limits_rate": tasks / elapsed}


def timed_calls(call: Callable[[int], Invocation[float]], tasks: int) -> tuple[float, list[float]]:
    """With a runner running, make ``tasks`` calls and await all; (seconds, every result)."""
    runner = start_runner()
    try:
        started = time.perf_counter()
        invocations = [call(n) for n in range(tasks)]
        results = [result_of(invocation) for invocation in invocations]
        elapsed = time.perf_counter() - started
    finally:
        stop_runner(runner)
        app.purge()
    return elapsed, results


def round_trips(count: int) -> dict[str, float]:
    """(c) ``count`` sequential call-then-result round trips on an otherwise idle runner."""
    runner = start_runner()
    trips: list[float] = []
    starts: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            starts.append(result_of(no_op(time.time())))
            trips.append(time.perf_counter() - started)
    finally:
        stop_runner(runner)
        app.purge()
    return {
        "rt_p50": percentile(trips, 50) * 1000,
        "rt_p99": percentile(trips, 99) * 1000,
        "rt_start_p50": percentile(starts, 50) * 1000,
        "rt_start_p99": percentile(starts, 99) * 1000,
    }


def delayed_lateness(count: int) -> dict[str, float]:
    """(g) ``count`` calls delayed to etas spread over a second; how late each started."""
    runner = start_runner()
    try:
        first = time.time() + DELAYED_LEAD_SECONDS
        step = DELAYED_SPREAD_SECONDS / count
        etas = [first + n * step for n in range(count)]
        invocations = [delayed_no_op.with_options(eta=eta)(eta) for eta in etas]
        lateness = [result_of(invocation) for invocation in invocations]
    finally:
        stop_runner(runner)
        app.purge()
    return {
        "delayed_p50": percentile(lateness, 50) * 1000,
        "delayed_p99": percentile(lateness, 99) * 1000,
        "delayed_max": max(lateness) * 1000,
    }


def timed_batch(task: Callable[[float], Invocation[SleepResult]]) -> tuple[float, bool]:
    """Call ``task`` ``SEED_CALLS`` times, await all; return (wall seconds, any overlap)."""
    started = time.perf_counter()
    invocations = [task(SEED_SLEEP_SECONDS) for _ in range(SEED_CALLS)]
    results = [result_of(invocation) for invocation in invocations]
    return time.perf_counter() - started, any_overlap(results)


def seed_scenario() -> dict[str, float]:
    """(e) The seed scenario's two sleep batches, then the runner's stop time."""
    runner = start_runner()
    try:
        free_wall, free_overlap = timed_batch(sleep_without_running_concurrency)
        controlled_wall, controlled_overlap = timed_batch(sleep_with_running_concurrency)
    finally:
        stop_seconds = stop_runner(runner)
        app.purge()
    return {
        "seed_free_wall": free_wall,
        "seed_free_overlap": float(free_overlap),
        "seed_task_wall": controlled_wall,
        "seed_task_overlap": float(controlled_overlap),
        "seed_stop": stop_seconds,
    }


# --- reporting ---------------------------------------------------------------------------------


@dataclass
class Metric:
    """One row of the final table: what it is, how to print it, and the value of every run."""

    workload: str
    label: str
    unit: str
    fmt: str  # a format spec for numbers, or "flag" for yes/no values
    runs: list[float] = field(default_factory=list)

    def render(self, value: float) -> str:
        if self.fmt == "flag":
            return "yes" if value else "no"
        return format(value, self.fmt)

    def median(self) -> str:
        if self.fmt == "flag":
            flags = {self.render(v) for v in self.runs}
            return flags.pop() if len(flags) == 1 else "mixed"
        return self.render(statistics.median(self.runs))


def build_metrics(tasks: int) -> dict[str, Metric]:
    """The table's rows, in print order, keyed as the workloads report them."""
    trips = f"(c) {ROUND_TRIPS} round trips"
    seed = f"(e) seed {SEED_CALLS} x {SEED_SLEEP_SECONDS} s"
    delayed = f"(g) {DELAYED_CALLS} delayed calls"
    return {
        "enqueue_rate": Metric(f"(a) enqueue {tasks}", "rate", "calls/s", ",.0f"),
        "e2e_rate": Metric(f"(b) end to end {tasks}", "rate", "tasks/s", ",.0f"),
        "e2e_start_p50": Metric("", "call-to-start p50", "ms", ".3f"),
        "e2e_start_p99": Metric("", "call-to-start p99", "ms", ".3f"),
        "rt_p50": Metric(trips, "round trip p50", "ms", ".3f"),
        "rt_p99": Metric("", "round trip p99", "ms", ".3f"),
        "rt_start_p50": Metric("", "call-to-start p50", "ms", ".3f"),
        "rt_start_p99": Metric("", "call-to-start p99", "ms", ".3f"),
        "keyed_rate": Metric(f"(d) KEYS over {KEYS} keys", "rate", "tasks/s", ",.0f"),
        "keyed_ratio": Metric("", "ratio to (b)", "", ".2f"),
        "limits_rate": Metric(f"(f) two limits, {KEYS} keys", "rate", "tasks/s", ",.0f"),
        "limits_ratio": Metric("", "ratio to (b)", "", ".2f"),
        "delayed_p50": Metric(delayed, "lateness after eta p50", "ms", ".3f"),
        "delayed_p99": Metric("", "lateness after eta p99", "ms", ".3f"),
        "delayed_max": Metric("", "lateness after eta max", "ms", ".3f"),
        "seed_free_wall": Metric(seed, "no control: wall (0.1-0.2)", "s", ".3f"),
        "seed_free_overlap": Metric("", "no control: overlapped", "", "flag"),
        "seed_task_wall": Metric("", "TASK control: wall (1.0)", "s", ".3f"),
        "seed_task_overlap": Metric("", "TASK control: overlapped", "", "flag"),
        "seed_stop": Metric("", "stop_runner_loop + join", "s", ".3f"),
    }


def format_table(metrics: Sequence[Metric]) -> str:
    """A plain-text table, numbers right-aligned, one row per metric."""
    header = ("workload", "metric", "unit", "median", "runs")
    run_width = max(len(m.render(v)) for m in metrics for v in m.runs)
    rows = [
        (
            m.workload,
            m.label,
            m.unit,
            m.median(),
            "  ".join(f"{m.render(v):>{run_width}}" for v in m.runs),
        )
        for m in metrics
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    aligns = ("<", "<", "<", ">", "<")

    def line(cells: Sequence[str]) -> str:
        parts = (f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True))
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", default=DEFAULT_BACKEND, help="backend URL (%(default)s)")
    parser.add_argument("--tasks", type=int, default=20000, help="calls in (a) and (b)")
    parser.add_argument(
        "--runner", choices=("ThreadRunner", "ProcessRunner"), default="ThreadRunner"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads (per process for ProcessRunner)"
    )
    parser.add_argument("--processes", type=int, default=2, help="ProcessRunner processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each workload")
    args = parser.parse_args(argv)
    if min(args.tasks, args.threads or 1, args.repeat, args.processes) < 1:
        parser.error("--tasks, --threads, --processes and --repeat must be at least 1")
    return args


def run_round(tasks: int) -> dict[str, float]:
    """One run of every workload, in order."""
    figures: dict[str, float] = {}
    figures |= enqueue_rate(tasks)
    figures |= end_to_end(tasks)
    figures |= keyed_end_to_end(tasks)
    figures["keyed_ratio"] = figures["keyed_rate"] / figures["e2e_rate"]
    figures |= limits_end_to_end(tasks)
    figures["limits_ratio"] = figures["limits_rate"] / figures["e2e_rate"]
    figures |= round_trips(ROUND_TRIPS)
    figures |= delayed_lateness(DELAYED_CALLS)
    figures |= seed_scenario()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend != "redis":
        return bench(args)
    with RedisServer() as server:
        args.backend = server.url
        return bench(args)


def bench(args: argparse.Namespace) -> int:
    """Run every workload ``--repeat`` times on ``--backend`` and print the table."""
    app.conf.backend = args.backend
    app.conf.threads = args.threads  # read when the runner starts
    app.conf.runner_cls = args.runner
    app.conf.processes = args.processes
    metrics = build_metrics(args.tasks)
    shape = f"{args.processes} processes x " if args.runner == "ProcessRunner" else ""
    threads = args.threads or app.runner.threads  # type: ignore[attr-defined]
    print(
        f"taskgate bench: backend {args.backend}, {args.tasks} tasks, {args.runner} "
        f"({shape}{threads} threads)"
    )
    try:
        app.purge()  # a persistent store may hold leftovers of an interrupted run
        for number in range(1, args.repeat + 1):
            started = time.perf_counter()
            for key, value in run_round(args.tasks).items():
                metrics[key].runs.append(value)
            print(f"run {number}/{args.repeat} done in {time.perf_counter() - started:.1f} s")
    except TaskgateError as exc:
        print(f"benchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_table(list(metrics.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
