"""The ``--json`` documents of ``status``, ``inspect`` and ``invocations``.

The keys are part of the command line's interface (listed in each command's --help);
new keys may be added, existing ones keep their name and meaning. Times are ISO-8601 UTC texts
with milliseconds (``null`` when unset); statuses are the lower-case status values; stored
Python values (arguments, results) are given as their ``repr`` text, since they need not be
JSON values.
"""

from __future__ import annotations

from typing import Any

from taskgate.app import App
from taskgate.cli.render import (
    STATUS_ORDER,
    describe_exception,
    finished_runs,
    format_time,
    safe_decode,
    split_scope_key,
)
from taskgate.errors import RemoteTraceback
from taskgate.record import BackendStats, BlockedBy, InvocationRecord, RunnerInfo
from taskgate.status import InvocationStatus

JsonObject = dict[str, Any]


def iso_time(timestamp: float | None) -> str | None:
    """A Unix timestamp as ISO-8601 UTC with milliseconds, or None."""
    return None if timestamp is None else format_time(timestamp)


def header(app: App) -> JsonObject:
    """The keys every document starts with: which app, on which store (password masked)."""
    return {"app": app.app_id, "backend": app.conf.backend_display}


def running_count(stats: BackendStats) -> int:
    """How many invocations are RUNNING, over every task."""
    return sum(
        count
        for (_, status), count in stats.by_task_and_status.items()
        if status is InvocationStatus.RUNNING
    )


def orphaned_count(stats: BackendStats) -> int:
    """RUNNING invocations while no runner is live: nobody renews them; recovery will."""
    return 0 if stats.runners else running_count(stats)


def status_json(
    app: App, stats: BackendStats, described: dict[str, RunnerInfo] | None = None
) -> JsonObject:
    """``status --json``: counts, live runners (with their descriptions, by runner id, when
    given), parked invocations, orphaned running work."""
    described = described or {}
    counts = sorted(
        ((task, status, n) for (task, status), n in stats.by_task_and_status.items() if n),
        key=lambda item: (item[0], STATUS_ORDER[item[1]]),
    )
    return {
        **header(app),
        "counts": [{"task": t, "status": s.value, "count": n} for t, s, n in counts],
        "total": sum(n for _, _, n in counts),
        "running": running_count(stats),
        "orphaned_running": orphaned_count(stats),
        "runners": [
            {
                "runner_id": runner_id,
                "heartbeat_expires_at": iso_time(expires_at),
                **({} if runner_id not in described else runner_json(described[runner_id])),
            }
            for runner_id, expires_at in sorted(stats.runners.items())
        ],
        "parked": [parked_json(key, n) for key, n in sorted(stats.parked_by_key.items()) if n],
    }


def runner_json(info: RunnerInfo) -> JsonObject:
    """What a described runner adds to its ``status --json`` entry."""
    return {
        "kind": info.kind,
        "host": info.host,
        "pid": info.pid,
        "threads": info.threads,
        "queues": None if info.queues is None else list(info.queues),
        "started_at": iso_time(info.started_at),
        "running": [
            {
                "invocation_id": entry.invocation_id,
                "task": entry.task_id,
                "attempt": entry.attempt,
                "started_at": iso_time(entry.started_at),
            }
            for entry in info.running
        ],
        "finished": finished_runs(info),
    }


def parked_json(scope_key: str, count: int) -> JsonObject:
    """One entry of ``status --json`` ``parked``: a scope key split into what it limits and its
    key values (``limit`` null for a task's own running scope, ``task`` null for a limit)."""
    parts = split_scope_key(scope_key)
    return {
        "scope_key": scope_key,
        "limit": parts.limit,
        "task": parts.task,
        "key_values": parts.values,
        "count": count,
    }


def blocked_json(blocked: BlockedBy) -> JsonObject:
    """``inspect --json`` ``blocked_by``: the scope key, its holders and a rate's ``ready_at``."""
    parts = split_scope_key(blocked.scope_key)
    return {
        "scope_key": blocked.scope_key,
        "limit": parts.limit,
        "key_values": parts.values,
        "holders": list(blocked.holders),
        "ready_at": iso_time(blocked.ready_at),
    }


def summary_json(record: InvocationRecord) -> JsonObject:
    """One row of ``invocations --json``."""
    return {
        "invocation_id": record.invocation_id,
        "task": record.task_id,
        "status": record.status.value,
        "attempt": record.attempt,
        "created_at": iso_time(record.created_at),
        "runner_id": record.runner_id,
        "last_runner_id": last_runner(record),
    }


def last_runner(record: InvocationRecord) -> str | None:
    """The runner of the latest transition that names one, if any."""
    return next((t.runner_id for t in reversed(record.history) if t.runner_id), None)


def record_json(app: App, record: InvocationRecord, blocked: BlockedBy | None) -> JsonObject:
    """``inspect --json``: every field of the record, its outcome and history."""
    return {
        **header(app),
        **summary_json(record),
        "num_retries": record.num_retries,
        "max_retries": record.max_retries,
        "queue": record.queue,
        "priority": record.priority,
        "scheduled_for": iso_time(record.scheduled_for),
        "cancel_requested": record.cancel_requested,
        "lease_expires_at": iso_time(record.lease_expires_at),
        "arguments": arguments_json(app, record.arguments),
        **outcome_json(app, record),
        "blocked_by": None if blocked is None else blocked_json(blocked),
        "history": [
            {
                "status": t.status.value,
                "time": iso_time(t.timestamp),
                "runner_id": t.runner_id,
            }
            for t in record.history
        ],
    }


def arguments_json(app: App, data: bytes) -> JsonObject | str:
    """``{name: repr(value)}`` of the stored arguments, or the text of a decoding problem."""
    arguments, problem = safe_decode(app.serializer.loads, data)
    if problem is not None:
        return problem
    if not isinstance(arguments, dict):
        return repr(arguments)
    return {str(name): repr(value) for name, value in arguments.items()}


def outcome_json(app: App, record: InvocationRecord) -> JsonObject:
    """``result`` (repr text), ``error`` (``module.Type: message``) and its ``traceback``."""
    result = error = traceback = None
    if record.status is InvocationStatus.SUCCESS and record.result is not None:
        value, problem = safe_decode(app.serializer.loads, record.result)
        result = problem or repr(value)
    elif record.error is not None:
        exc, problem = safe_decode(app.serializer.loads_error, record.error)
        error = problem or describe_exception(exc)
        # The runner-side traceback, when the store carries one: what `inspect` shows too.
        remote = RemoteTraceback.find(exc) if exc is not None else None
        traceback = remote.traceback if remote is not None else None
    return {"result": result, "error": error, "traceback": traceback}
