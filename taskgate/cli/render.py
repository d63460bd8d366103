"""Rendering for the command line: rich tables of counts, runners, records and histories."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from rich.console import Console
from rich.table import Table
from rich.text import Text

from taskgate.app import App
from taskgate.errors import RemoteTraceback, TaskFailedError
from taskgate.record import BackendStats, InvocationRecord, RunnerInfo, Transition
from taskgate.status import InvocationStatus

# Key values shown per limit or task in a table; the rest are summed in one row.
KEY_ROWS = 20
# Slot holders listed by ``inspect`` (one lookup each); the rest are counted.
HOLDERS_SHOWN = 10
LIMIT_PREFIX = "limit "

STATUS_ORDER = {status: index for index, status in enumerate(InvocationStatus)}
STATUS_STYLES = {
    InvocationStatus.SCHEDULED: "blue",
    InvocationStatus.REGISTERED: "blue",
    InvocationStatus.CONCURRENCY_CONTROLLED: "yellow",
    InvocationStatus.CONCURRENCY_CONTROLLED_FINAL: "magenta",
    InvocationStatus.RUNNING: "cyan",
    InvocationStatus.RETRY: "yellow",
    InvocationStatus.SUCCESS: "green",
    InvocationStatus.FAILED: "red",
    InvocationStatus.CANCELLED: "bright_black",
}


def format_time(timestamp: float | None) -> str:
    """A Unix timestamp as ISO-8601 UTC with milliseconds, or ``-``."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")


class ScopeKeyParts(NamedTuple):
    """A running scope key or budget key split into what it limits and its key values."""

    limit: str | None
    """The limit's name, for a budget key (``limit tenant#...``); else None."""
    task: str | None
    """The task's id, for a task's own running scope key (``tasks.sync#...``); else None."""
    values: str | None
    """The key values (``tenant_id='42'``), or None for a key without values."""

    @property
    def label(self) -> str:
        """``limit tenant`` or ``task tasks.sync``."""
        return f"limit {self.limit}" if self.limit is not None else f"task {self.task}"


def split_scope_key(key: str) -> ScopeKeyParts:
    """Split ``limit tenant#tenant_id='42'`` or ``tasks.sync#customer=42`` at its first ``#``.

    Neither limit names nor task ids hold a ``#``, so the first one ends the name.
    """
    name, sep, values = key.partition("#")
    if name.startswith(LIMIT_PREFIX):
        return ScopeKeyParts(name[len(LIMIT_PREFIX) :], None, values if sep else None)
    return ScopeKeyParts(None, name, values if sep else None)


def format_age(since: float | None, now: float) -> str:
    """How long ago ``since`` was, in the largest fitting unit (``4.2 s``, ``3 min``), or ``-``."""
    return "-" if since is None else format_duration(now - since)


def format_duration(seconds: float | None) -> str:
    """A duration in the largest fitting unit (``4.2 s``, ``3 min``, ``1.5 h``; a negative one
    counts as 0), or ``-``."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_expiry(expires_at: float | None, now: float) -> str:
    """When a lease expires, as ISO-8601 UTC plus the seconds left (or past)."""
    if expires_at is None:
        return "-"
    left = expires_at - now
    relative = f"in {left:.1f} s" if left >= 0 else f"expired {-left:.1f} s ago"
    return f"{format_time(expires_at)} ({relative})"


def status_text(status: InvocationStatus) -> Text:
    """A status name, coloured by kind."""
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def describe_exception(exc: BaseException) -> str:
    """``module.Type: message`` for an exception rebuilt from the store."""
    if isinstance(exc, TaskFailedError):
        return str(exc)
    exc_type = type(exc)
    name = exc_type.__qualname__
    if exc_type.__module__ != "builtins":
        name = f"{exc_type.__module__}.{name}"
    return f"{name}: {exc}"


def safe_decode(decode: Callable[[bytes], Any], data: bytes) -> tuple[Any, str | None]:
    """Decode stored data; on failure return ``(None, reason)`` instead of raising."""
    try:
        return decode(data), None
    except Exception as exc:
        return None, f"<cannot decode: {exc}>"


def print_counts(console: Console, stats: BackendStats) -> None:
    """The table of invocation counts by task and status."""
    counts = {key: n for key, n in stats.by_task_and_status.items() if n}
    if not counts:
        console.print("no invocations")
        return
    table = Table(title="Invocations")
    table.add_column("Task")
    table.add_column("Status")
    table.add_column("Count", justify="right")
    for task_id, task_status in sorted(counts, key=lambda k: (k[0], STATUS_ORDER[k[1]])):
        count = counts[(task_id, task_status)]
        table.add_row(Text(task_id), status_text(task_status), str(count))
    table.add_section()
    table.add_row(Text("total", style="bold"), "", str(sum(counts.values())))
    console.print(table)


def print_runners(
    console: Console,
    stats: BackendStats,
    now: float,
    described: dict[str, RunnerInfo] | None = None,
) -> None:
    """The table of live runners, when their heartbeat expires and, for those that describe
    themselves (``described``, by runner id), what they are, run now and have finished."""
    if not stats.runners:
        console.print("no live runners")
        return
    described = described or {}
    table = Table(title="Live runners")
    table.add_column("Runner")
    table.add_column("Heartbeat expires (UTC)")
    table.add_column("Seconds left", justify="right")
    if described:
        table.add_column("Kind")
        table.add_column("Host (pid)", overflow="fold")
        table.add_column("Threads", justify="right")
        table.add_column("Running", justify="right")
        table.add_column("Finished", justify="right")
    for runner_id, expires_at in sorted(stats.runners.items()):
        row: list[Text | str] = [
            Text(runner_id),
            format_time(expires_at),
            f"{expires_at - now:.1f}",
        ]
        info = described.get(runner_id)
        if info is not None:
            row += [
                info.kind,
                Text(f"{info.host} ({info.pid})"),
                str(info.threads),
                str(len(info.running)),
                str(finished_runs(info)),
            ]
        elif described:
            row += ["-"] * 5
        table.add_row(*row)
    console.print(table)


def finished_runs(info: RunnerInfo) -> int:
    """Runs a runner finished since it started, whatever their outcome."""
    return sum(sum(counters.outcomes.values()) for counters in info.tasks.values())


def print_parked(console: Console, stats: BackendStats) -> None:
    """The table of invocations waiting (CONCURRENCY_CONTROLLED) per limit or task, and key.

    Each scope shows its busiest :data:`KEY_ROWS` key values; the others are summed in one row,
    so that the table stays short with thousands of keys.
    """
    by_scope: dict[str, list[tuple[str | None, int]]] = defaultdict(list)
    for key, count in stats.parked_by_key.items():
        if count:
            parts = split_scope_key(key)
            by_scope[parts.label].append((parts.values, count))
    if not by_scope:
        console.print("no parked invocations")
        return
    table = Table(title="Parked invocations")
    table.add_column("Waiting for", overflow="fold")
    table.add_column("Key values", overflow="fold")
    table.add_column("Waiting", justify="right")
    for label in sorted(by_scope):
        rows = sorted(by_scope[label], key=lambda row: (-row[1], row[0] or ""))
        shown: list[tuple[Text, str]] = [(Text(v or "-"), str(n)) for v, n in rows[:KEY_ROWS]]
        rest = rows[KEY_ROWS:]
        if rest:
            more = Text(f"... {len(rest)} more key values", style="italic")
            shown.append((more, str(sum(n for _, n in rest))))
        for index, (values, waiting) in enumerate(shown):
            first, last = index == 0, index == len(shown) - 1
            table.add_row(Text(label if first else ""), values, waiting, end_section=last)
    console.print(table)


def record_table(app: App, record: InvocationRecord, now: float) -> Table:
    """The fields of one invocation as a two-column grid."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, Text]] = [
        ("invocation", Text(record.invocation_id)),
        ("task", Text(record.task_id)),
        ("status", status_text(record.status)),
        ("attempt", Text(str(record.attempt))),
        ("retries", Text(f"{record.num_retries} of max {record.max_retries}")),
        ("queue", Text(f"{record.queue}, priority {record.priority}")),
        *schedule_rows(record, now),
        ("runner", Text(describe_owner(record))),
        ("lease expires", Text(format_expiry(record.lease_expires_at, now))),
        ("created", Text(format_time(record.created_at))),
        ("arguments", Text(format_arguments(app, record.arguments))),
        *outcome_rows(app, record),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def schedule_rows(record: InvocationRecord, now: float) -> list[tuple[str, Text]]:
    """``scheduled for`` (a delayed call or a periodic tick) and a pending ``cancel requested``."""
    rows: list[tuple[str, Text]] = []
    if record.scheduled_for is not None:
        rows.append(("scheduled for", Text(format_expiry(record.scheduled_for, now))))
    if record.cancel_requested and not record.status.is_final:
        rows.append(
            ("cancel requested", Text("yes: it ends CANCELLED once its body stopped", "magenta"))
        )
    return rows


def describe_owner(record: InvocationRecord) -> str:
    """The runner that owns the invocation now, else the last one that ran it."""
    if record.runner_id is not None:
        return record.runner_id
    last = next((t.runner_id for t in reversed(record.history) if t.runner_id), None)
    return f"- (last run by {last})" if last else "-"


def format_arguments(app: App, data: bytes) -> str:
    """The stored call arguments as ``name=value`` lines."""
    arguments, problem = safe_decode(app.serializer.loads, data)
    if problem is not None:
        return problem
    if not isinstance(arguments, dict) or not arguments:
        return "(none)" if not arguments else repr(arguments)
    return "\n".join(f"{name}={value!r}" for name, value in arguments.items())


def outcome_rows(app: App, record: InvocationRecord) -> list[tuple[str, Text]]:
    """The result or error rows: the value on SUCCESS; on FAILED (or a retry) the exception and
    the traceback the runner recorded."""
    if record.status is InvocationStatus.SUCCESS and record.result is not None:
        value, problem = safe_decode(app.serializer.loads, record.result)
        return [("result", Text(problem or repr(value), style="green"))]
    if record.status is InvocationStatus.CONCURRENCY_CONTROLLED_FINAL:
        return [
            ("outcome", Text("dropped: its running scope or a limit was full", style="magenta"))
        ]
    if record.status is InvocationStatus.CANCELLED:
        ran = any(t.status is InvocationStatus.RUNNING for t in record.history)
        how = "its run was interrupted" if ran else "it never ran"
        return [("outcome", Text(f"cancelled: {how}", style="bright_black"))]
    if record.error is not None:
        last = "" if record.status.is_final else "last "
        exc, problem = safe_decode(app.serializer.loads_error, record.error)
        if problem is not None:
            return [(f"{last}error", Text(problem, style="red"))]
        rows = [(f"{last}error", Text(describe_exception(exc), style="red"))]
        remote = RemoteTraceback.find(exc)
        if remote is not None:
            rows.append((f"{last}traceback", Text(remote.traceback.rstrip())))
        return rows
    return []


def print_blocked_by(console: Console, app: App, record: InvocationRecord) -> None:
    """For a parked invocation: the running scope or limit budget it waits for, who holds the
    slots (with their runners), and when a rate that blocks it next admits it."""
    if record.status is not InvocationStatus.CONCURRENCY_CONTROLLED:
        return
    blocked = app.backend.blocked_by(record.invocation_id)
    if blocked is None:  # it got its slot between the two reads
        return
    now = time.time()
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("waiting for", Text(blocked.scope_key))
    if blocked.ready_at is not None:
        table.add_row("blocked by", Text("its rate: the window is full"))
        table.add_row("ready at", Text(format_expiry(blocked.ready_at, now)))
    else:
        table.add_row("slots held by", Text(describe_holders(app, blocked.holders)))
    console.print(table)


def describe_holders(app: App, holders: Sequence[str]) -> str:
    """The first :data:`HOLDERS_SHOWN` holders, one a line with the runner that runs each."""
    if not holders:
        return "(none: it is next in line)"
    lines = []
    for holder in holders[:HOLDERS_SHOWN]:
        held = app.backend.get(holder)
        runner_id = held.runner_id if held is not None else None
        lines.append(f"{holder} on {runner_id}" if runner_id else holder)
    if len(holders) > HOLDERS_SHOWN:
        lines.append(f"... and {len(holders) - HOLDERS_SHOWN} more")
    return "\n".join(lines)


def history_table(history: Iterable[Transition]) -> Table:
    """The status transitions, oldest first."""
    table = Table(title="History")
    table.add_column("Status")
    table.add_column("Time (UTC)")
    table.add_column("Runner")
    for transition in history:
        table.add_row(
            status_text(transition.status),
            format_time(transition.timestamp),
            Text(transition.runner_id or "-"),
        )
    return table
