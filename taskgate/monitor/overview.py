"""What the overview page and ``/api/overview`` show: counts, queues, throughput, runners.

Two reads: ``stats()`` (counts by task and status, queue depth, parked invocations) and the
runners' own descriptions (``runner_infos()``, one small record per live runner), whose
per-minute counters are summed for the throughput and latency charts. No invocation record is
loaded. What ``stats()`` costs depends on the store: Redis keeps the counts as counters (a
read of a few small keys, whatever the number of invocations); SQLite counts the app's rows
(``COUNT(*) GROUP BY task_id, status``: linear in the invocations stored, about 200 ms at
200,000); the memory store counts its records in the process. So the monitor shares one
``stats()`` read between the overview, the limits page and ``/metrics`` for a second
(:mod:`taskgate.monitor.stats_cache`), however many tabs and scrapes ask.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from taskgate.app import App
from taskgate.cli.json_output import iso_time
from taskgate.monitor.format import seconds_since
from taskgate.record import MINUTES_KEPT, BackendStats, RunnerInfo
from taskgate.status import InvocationStatus

JsonObject = dict[str, Any]

STATUSES = [status.value for status in InvocationStatus]


def overview_data(
    app: App, at: float, read_stats: Callable[[], BackendStats] | None = None
) -> JsonObject:
    """The overview as a JSON-ready document (what ``/api/overview`` returns).

    Keys: app, backend, generated_at, statuses (column order), counts [{task, status,
    count}], tasks [{task, counts {status: n}, total}], totals {status: n}, total,
    queue_depth {queue: n}, waiting_for_slots, throughput [{minute_start, finished, failed,
    mean_duration_seconds}] (the last 15 minutes, oldest first, summed over live runners),
    runners [{runner_id, host, pid, kind, threads, running, heartbeat_age_seconds}] (all but
    the id null for a live runner that has not described itself). ``read_stats`` reads the
    store's stats (the monitor's shared read), ``app.backend.stats`` by default.
    """
    backend = app.backend
    stats = (read_stats or backend.stats)()
    infos = backend.runner_infos()
    return {
        "app": app.app_id,
        "backend": app.conf.backend_display,
        "generated_at": iso_time(at),
        "statuses": STATUSES,
        **counts_data(stats),
        "queue_depth": dict(sorted(stats.queue_depth.items())),
        "waiting_for_slots": sum(stats.parked_by_key.values()),
        "throughput": throughput(infos, at),
        "runners": runners_summary(stats, infos, at),
    }


def runners_summary(stats: BackendStats, infos: list[RunnerInfo], at: float) -> list[JsonObject]:
    """One entry per live runner: its description, or (a runner that renews its leases but
    has not described itself, such as one of an older version) its id alone."""
    described = {info.runner_id for info in infos}
    rows: list[JsonObject] = [
        {
            "runner_id": info.runner_id,
            "host": info.host,
            "pid": info.pid,
            "kind": info.kind,
            "threads": info.threads,
            "running": len(info.running),
            "heartbeat_age_seconds": seconds_since(info.heartbeat_at, at),
        }
        for info in infos
    ]
    rows += [
        {
            "runner_id": runner_id,
            "host": None,
            "pid": None,
            "kind": None,
            "threads": None,
            "running": None,
            "heartbeat_age_seconds": None,
        }
        for runner_id in sorted(set(stats.runners) - described)
    ]
    return rows


def counts_data(stats: BackendStats) -> JsonObject:
    """Counts by task and status, as a flat list and as one row per task."""
    per_task: dict[str, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for (task, status), count in stats.by_task_and_status.items():
        if count:
            per_task[task][status.value] = count
            totals[status.value] += count
    counts = [
        {"task": task, "status": status, "count": per_task[task][status]}
        for task in sorted(per_task)
        for status in STATUSES
        if status in per_task[task]
    ]
    tasks = [
        {"task": task, "counts": per_task[task], "total": sum(per_task[task].values())}
        for task in sorted(per_task)
    ]
    return {"counts": counts, "tasks": tasks, "totals": totals, "total": sum(totals.values())}


def throughput(infos: list[RunnerInfo], at: float) -> list[JsonObject]:
    """Finished and failed runs and their mean duration per minute, for the last
    :data:`MINUTES_KEPT` minutes (oldest first, empty minutes included), over ``infos``."""
    last = int(at // 60)
    first = last - MINUTES_KEPT + 1
    finished: dict[int, int] = defaultdict(int)
    failed: dict[int, int] = defaultdict(int)
    seconds: dict[int, float] = defaultdict(float)
    for info in infos:
        for minute in info.minutes:
            if first <= minute.minute <= last:
                finished[minute.minute] += minute.finished
                failed[minute.minute] += minute.failed
                seconds[minute.minute] += minute.duration_sum
    return [
        {
            "minute_start": iso_time(minute * 60.0),
            "finished": finished[minute],
            "failed": failed[minute],
            "mean_duration_seconds": (
                round(seconds[minute] / finished[minute], 6) if finished[minute] else None
            ),
        }
        for minute in range(first, last + 1)
    ]
