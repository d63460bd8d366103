"""The app of ``bench/monitor.py`` and how it fills a store the way a busy deployment looks.

The monitor process imports it by module path (``monitor_store:app``); the backend URL comes
from ``BENCH_MONITOR_BACKEND``. :func:`fill` makes, through the backend's own operations (the
ones runners use: ``register_many`` through ``parallelize``, ``claim``, ``finish``,
``renew``, ``announce_runner``):

- ``finished`` final invocations over four tasks, one in twenty ``FAILED`` with a real
  traceback, the rest ``SUCCESS``;
- ``waiting`` calls of ``ingest`` parked ``CONCURRENCY_CONTROLLED`` behind ``TENANTS`` tenant
  slots (the ``tenant`` limit, one run per tenant), each slot held by a ``RUNNING`` invocation
  of one of ``RUNNERS`` runners that describe themselves (``RunnerInfo``) as live.

Nothing runs the bodies: the fake runners claim and finish directly, which is what a runner
does around a body, minus the body.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from taskgate import App
from taskgate.record import (
    DURATION_BUCKETS,
    MinuteCounters,
    Outcome,
    OutcomeKind,
    RunnerInfo,
    RunningEntry,
    TaskRunCounters,
)

app = App("bench-monitor", backend=os.environ.get("BENCH_MONITOR_BACKEND", "memory://"))
tenant = app.limit("tenant", concurrency=1, key="tenant_id")

TENANTS = 100
RUNNERS = 4
BATCH = 1000
LEASE_SECONDS = 3600.0  # the fake runners never renew during a run: nothing is recovered


@app.task
def resize(image: int) -> int:
    return image


@app.task
def notify(user: int) -> int:
    return user


@app.task
def report(day: int) -> int:
    return day


@app.task
def export(account: int) -> int:
    return account


@app.task(limits=[tenant])
def ingest(tenant_id: str, batch: int) -> int:
    return batch


FINISHED_TASKS = (resize, notify, report, export)


def _failure_payload(n: int) -> bytes:
    """A serialized exception with a real traceback, as a runner stores it."""
    try:
        raise ValueError(f"row {n} of the input has 3 columns, expected 4")
    except ValueError as exc:
        return app.serializer.dumps_error(exc)


def _runner_id(n: int) -> str:
    return f"bench-runner-{n}"


def fill_finished(count: int, progress: Callable[[int], None]) -> None:
    """Register ``count`` calls in batches; claim and finish each batch (one in 20 FAILED)."""
    backend = app.backend
    success = app.serializer.dumps(None)
    failure = _failure_payload(0)
    done = 0
    while done < count:
        size = min(BATCH, count - done)
        task = FINISHED_TASKS[(done // BATCH) % len(FINISHED_TASKS)]
        task.parallelize([(done + n,) for n in range(size)])
        runner_id = _runner_id(done // BATCH % RUNNERS)
        claimed = 0
        while claimed < size:
            claims = backend.claim(runner_id, size - claimed, LEASE_SECONDS, 0)
            for n, claim in enumerate(claims, claimed):
                failed = n % 20 == 0
                outcome = Outcome(
                    OutcomeKind.FAILED if failed else OutcomeKind.SUCCESS,
                    failure if failed else success,
                )
                backend.finish(claim.invocation_id, runner_id, claim.attempt, outcome)
            claimed += len(claims)
        done += size
        progress(done)


def fill_waiting(count: int) -> list[tuple[str, str, int]]:
    """``count`` parked ``ingest`` calls behind ``TENANTS`` held slots; the holders as
    (invocation id, runner id, attempt)."""
    calls = [(f"tenant-{n % TENANTS:03d}", n) for n in range(count + TENANTS)]
    for start in range(0, len(calls), BATCH):
        ingest.parallelize(calls[start : start + BATCH])
    holders: list[tuple[str, str, int]] = []
    n = 0
    while True:
        runner_id = _runner_id(n % RUNNERS)
        claims = app.backend.claim(runner_id, BATCH, LEASE_SECONDS, 0)
        if not claims and not app.backend.stats().queue_depth.get("default"):
            break
        holders.extend((claim.invocation_id, runner_id, claim.attempt) for claim in claims)
        n += 1
    return holders


def announce(holders: list[tuple[str, str, int]]) -> None:
    """Every fake runner renews its claims and announces itself, with plausible counters."""
    now = time.time()
    minute = int(now // 60)
    buckets = len(DURATION_BUCKETS) + 1
    for n in range(RUNNERS):
        runner_id = _runner_id(n)
        mine = [(i, a) for i, r, a in holders if r == runner_id]
        app.backend.renew(runner_id, mine, LEASE_SECONDS)
        info = RunnerInfo(
            runner_id=runner_id,
            host=socket.gethostname(),
            pid=10_000 + n,
            kind="thread",
            threads=8,
            queues=None,
            started_at=now - 3600,
            heartbeat_at=now,
            running=tuple(RunningEntry(i, ingest.task_id, a, now - 30) for i, a in mine[:8]),
            tasks={
                task.task_id: TaskRunCounters(
                    {"success": 23_750, "failed": 1_250},
                    tuple(25_000 if b == 2 else 0 for b in range(buckets)),
                    25_000 * 0.004,
                )
                for task in FINISHED_TASKS
            },
            minutes=tuple(
                MinuteCounters(minute - m, 400 + 10 * m, 20, 1.6) for m in range(14, -1, -1)
            ),
        )
        app.backend.announce_runner(info, LEASE_SECONDS)
