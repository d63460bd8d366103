"""What ``taskgate status`` shows of scheduling: ready depth per queue and the periodic tasks.

Tables for the text output and the ``--json`` entries, from one
:class:`~taskgate.record.BackendStats` read and the app's declared tasks.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rich.console import Console
from rich.table import Table
from rich.text import Text

from taskgate.app import App
from taskgate.cli.render import format_expiry, format_time
from taskgate.record import BackendStats
from taskgate.schedule import next_tick


class PeriodicEntry(NamedTuple):
    """One periodic task as ``status`` shows it.

    Attributes:
        task_id: The task.
        schedule: ``cron */5 * * * *`` or ``every 10 s``; None for a task the store has ticks
            of but this app does not declare (renamed, or declared elsewhere).
        queue: The task's queue (None when not declared here).
        next_tick: Epoch seconds of its next tick after now (None when not declared here); it
            is called then if a runner of the app serves its queue.
        last_tick: The last tick registered in the store (None before the first).
    """

    task_id: str
    schedule: str | None
    queue: str | None
    next_tick: float | None
    last_tick: float | None


def periodic_entries(app: App, stats: BackendStats, now: float) -> list[PeriodicEntry]:
    """The app's tasks with ``cron`` or ``every``, and any other task the store has ticks of."""
    entries: list[PeriodicEntry] = []
    for task_id, task in sorted(app.tasks.items()):
        options = task.options
        if options.cron is not None:
            schedule = f"cron {options.cron}"
        elif options.every is not None:
            schedule = f"every {options.every:g} s"
        else:
            continue
        entries.append(
            PeriodicEntry(
                task_id,
                schedule,
                options.queue,
                next_tick(options, now),
                stats.periodic_ticks.get(task_id),
            )
        )
    declared = {entry.task_id for entry in entries}
    for task_id, last in sorted(stats.periodic_ticks.items()):
        if task_id not in declared:
            entries.append(PeriodicEntry(task_id, None, None, None, last))
    return entries


def print_queues(console: Console, stats: BackendStats) -> None:
    """The table of ready invocations (waiting for a runner) per queue."""
    depths = {queue: n for queue, n in stats.queue_depth.items() if n}
    if not depths:
        console.print("no ready invocations in any queue")
        return
    table = Table(title="Queues")
    table.add_column("Queue")
    table.add_column("Ready (waiting for a runner)", justify="right")
    for queue, count in sorted(depths.items()):
        table.add_row(Text(queue), str(count))
    console.print(table)


def print_periodic(console: Console, entries: list[PeriodicEntry], now: float) -> None:
    """The table of periodic tasks: schedule, queue, next tick and last registered tick."""
    if not entries:
        return
    table = Table(title="Periodic tasks")
    table.add_column("Task", overflow="fold")
    table.add_column("Schedule")
    table.add_column("Queue")
    table.add_column("Next tick (UTC)")
    table.add_column("Last tick registered (UTC)")
    for entry in entries:
        table.add_row(
            Text(entry.task_id),
            Text(entry.schedule or "(not declared by this app)"),
            Text(entry.queue or "-"),
            format_expiry(entry.next_tick, now),
            format_time(entry.last_tick),
        )
    console.print(table)


def queues_json(stats: BackendStats) -> list[dict[str, Any]]:
    """``status --json`` ``queues``: ``[{queue, ready}]`` for each queue with ready work."""
    return [
        {"queue": queue, "ready": count}
        for queue, count in sorted(stats.queue_depth.items())
        if count
    ]


def periodic_json(entries: list[PeriodicEntry]) -> list[dict[str, Any]]:
    """``status --json`` ``periodic``: ``[{task, schedule, queue, next_tick, last_tick}]``."""
    return [
        {
            "task": entry.task_id,
            "schedule": entry.schedule,
            "queue": entry.queue,
            "next_tick": None if entry.next_tick is None else format_time(entry.next_tick),
            "last_tick": None if entry.last_tick is None else format_time(entry.last_tick),
        }
        for entry in entries
    ]
