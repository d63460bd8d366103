"""``taskgate status`` and ``taskgate purge``: an app's store as a whole."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.text import Text

from taskgate.app import App
from taskgate.cli.app_loading import open_app
from taskgate.cli.common import app_options, json_option, make_console, print_json
from taskgate.cli.json_output import orphaned_count, status_json
from taskgate.cli.render import print_counts, print_parked, print_runners
from taskgate.cli.schedule_view import (
    periodic_entries,
    periodic_json,
    print_periodic,
    print_queues,
    queues_json,
)
from taskgate.errors import BackendStoreFormatError
from taskgate.record import BackendStats


@click.command(short_help="Counts by task and status, queues, runners, parked and periodic.")
@app_options
@json_option
def status(app_spec: str, backend_url: str | None, as_json: bool) -> None:
    """Show invocation counts by task and status, ready invocations per queue, live runners
    (what they are, run now and have finished, as their heartbeats describe them), parked
    invocations and periodic tasks.

    Parked (CONCURRENCY_CONTROLLED) invocations are counted per limit or task and key values
    (the busiest keys of each; the rest summed). RUNNING invocations while no runner is live
    are flagged as orphaned: a runner of the app takes them back once their lease expires.
    Periodic tasks (cron or every) are listed with their next tick (when a runner serving their
    queue calls them) and the last tick registered in the store. Never creates a store (exit 2
    when the SQLite file does not exist).

    \b
    --json keys: app, backend, counts [{task, status, count}], total, running,
    orphaned_running, runners [{runner_id, heartbeat_expires_at}, and for a runner that
    describes itself: kind, host, pid, threads, queues, started_at, running [{invocation_id,
    task, attempt, started_at}], finished (runs since it started)], parked [{scope_key,
    limit, task, key_values, count}] (limit: the limit's name, or null for a task's own
    running scope; task: that task's id, else null; key_values: "tenant_id='42'" or null),
    queues [{queue, ready}] (ready invocations, waiting for a runner, per queue that has
    some), periodic [{task, schedule, queue, next_tick, last_tick}] (schedule "cron EXPR" or
    "every N s"; schedule, queue and next_tick null for a task with ticks in the store that
    the app does not declare; last_tick null before the first).
    """
    app = open_app(app_spec, backend_url, existing_store=True)
    stats = app.backend.stats()
    described = {info.runner_id: info for info in app.backend.runner_infos()}
    now = time.time()
    periodic = periodic_entries(app, stats, now)
    if as_json:
        print_json(
            {
                **status_json(app, stats, described),
                "queues": queues_json(stats),
                "periodic": periodic_json(periodic),
            }
        )
        return
    console = make_console()
    console.print(Text(f"app {app.app_id} on {app.conf.backend_display}", style="bold"))
    print_counts(console, stats)
    print_queues(console, stats)
    print_runners(console, stats, now, described)
    print_orphans(console, app, stats)
    print_parked(console, stats)
    print_periodic(console, periodic, now)


def print_orphans(console: Console, app: App, stats: BackendStats) -> None:
    """Flag RUNNING invocations that no live runner holds (their runner stopped or died)."""
    orphaned = orphaned_count(stats)
    if not orphaned:
        return
    console.print(
        Text(
            f"{orphaned} RUNNING invocation(s) are orphaned: no live runner holds them (their "
            "runner was stopped at once or died). A runner of this app takes them back once "
            f"their lease expires (lease_seconds={app.conf.lease_seconds}); start one if none "
            "is running.",
            style="bold yellow",
        )
    )


@click.command(short_help="Delete every invocation, result and slot of the app.")
@app_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge(app_spec: str, backend_url: str | None, yes: bool) -> None:
    """Delete every invocation, result, queue entry and slot of the app.

    Runners of the app keep running; invocations they are executing are lost. Never creates a
    store (exit 2 when the SQLite file does not exist).
    """
    app = open_app(app_spec, backend_url, existing_store=True)
    where = f"app {app.app_id!r} on {app.conf.backend_display}"
    if not yes:
        click.confirm(
            f"Delete every invocation, result, queue entry and slot of {where}?", abort=True
        )
    try:
        count = f"{sum(app.backend.stats().by_task_and_status.values())} invocation(s)"
    except BackendStoreFormatError:  # a store of an earlier layout: purge is how it is emptied
        count = "every invocation"
    app.purge()
    click.echo(f"purged {where}: {count} deleted")
