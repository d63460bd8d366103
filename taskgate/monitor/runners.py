"""What the runners page and ``/api/runners`` show: each live runner as it describes itself.

One read (``runner_infos()``): id, host, pid, kind, threads, queues, when it started, its last
heartbeat, what it runs now and what it has counted since it started.
"""

from __future__ import annotations

from typing import Any

from taskgate.app import App
from taskgate.cli.json_output import iso_time
from taskgate.monitor.format import seconds_since
from taskgate.record import RunnerInfo

JsonObject = dict[str, Any]


def runners_data(app: App, at: float) -> JsonObject:
    """Every live runner (what ``/api/runners`` returns).

    Keys: generated_at, runners [{runner_id, host, pid, kind, threads, queues (null: every
    queue), started_at, heartbeat_at, heartbeat_age_seconds, running [{invocation_id, task,
    attempt, started_at, running_seconds}], finished, failed}] (finished and failed: runs
    counted since the runner started).
    """
    return {
        "generated_at": iso_time(at),
        "runners": [runner_json(info, at) for info in app.backend.runner_infos()],
    }


def runner_json(info: RunnerInfo, at: float) -> JsonObject:
    """One runner's description."""
    outcomes = [counters.outcomes for counters in info.tasks.values()]
    return {
        "runner_id": info.runner_id,
        "host": info.host,
        "pid": info.pid,
        "kind": info.kind,
        "threads": info.threads,
        "queues": list(info.queues) if info.queues is not None else None,
        "started_at": iso_time(info.started_at),
        "heartbeat_at": iso_time(info.heartbeat_at),
        "heartbeat_age_seconds": seconds_since(info.heartbeat_at, at),
        "running": [
            {
                "invocation_id": entry.invocation_id,
                "task": entry.task_id,
                "attempt": entry.attempt,
                "started_at": iso_time(entry.started_at),
                "running_seconds": seconds_since(entry.started_at, at),
            }
            for entry in sorted(info.running, key=lambda e: e.started_at)
        ],
        "finished": sum(sum(o.values()) for o in outcomes),
        "failed": sum(o.get("failed", 0) for o in outcomes),
    }
