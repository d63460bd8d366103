"""``taskgate inspect`` (one invocation, by id or unique prefix) and ``taskgate invocations``."""

from __future__ import annotations

import time

import click
from rich.table import Table
from rich.text import Text

from taskgate.app import App
from taskgate.cli.app_loading import open_app
from taskgate.cli.common import CliError, app_options, json_option, make_console, print_json
from taskgate.cli.json_output import header, record_json, summary_json
from taskgate.cli.render import (
    describe_owner,
    format_time,
    history_table,
    print_blocked_by,
    record_table,
    status_text,
)
from taskgate.record import InvocationRecord
from taskgate.status import InvocationStatus

# How many matching ids an ambiguous prefix lists.
AMBIGUOUS_SHOWN = 5
DEFAULT_LIMIT = 50


@click.command(short_help="Show one invocation: record, outcome, history.")
@click.argument("invocation_id")
@app_options
@json_option
def inspect(invocation_id: str, app_spec: str, backend_url: str | None, as_json: bool) -> None:
    """Show one invocation: its record, arguments, outcome and history.

    INVOCATION_ID may be any unique prefix of the id. For a parked (CONCURRENCY_CONTROLLED)
    invocation, also what it waits for: the running scope or limit key, the invocations holding
    its slots and their runners, or, blocked by a rate, when the rate admits it; for a
    CANCELLED one whether it had run. Exits 1 when no invocation (or more than one) matches.

    \b
    --json keys: app, backend, invocation_id, task, status, attempt, created_at, runner_id,
    last_runner_id, num_retries, max_retries, queue, priority, scheduled_for (a delayed call's
    or a periodic tick's time, else null), cancel_requested (true while a cancelled running
    invocation's body is being interrupted), lease_expires_at, arguments {name: repr},
    result, error, traceback, blocked_by {scope_key, limit, key_values, holders, ready_at}
    (null unless parked; limit null for a task's own scope; ready_at null unless a rate
    blocks it), history [{status, time, runner_id}].
    """
    app = open_app(app_spec, backend_url, existing_store=True)
    record = find_record(app, invocation_id)
    if as_json:
        blocked = None
        if record.status is InvocationStatus.CONCURRENCY_CONTROLLED:
            blocked = app.backend.blocked_by(record.invocation_id)
        print_json(record_json(app, record, blocked))
        return
    console = make_console()
    console.print(Text(f"app {app.app_id} on {app.conf.backend_display}", style="bold"))
    console.print(record_table(app, record, time.time()))
    print_blocked_by(console, app, record)
    console.print(history_table(record.history))


def find_record(app: App, given: str) -> InvocationRecord:
    """The invocation whose id is ``given``, else the only one whose id starts with it.

    Raises:
        CliError: no invocation matches, or the prefix matches several (some are listed).
    """
    record = app.backend.get(given)
    if record is not None:
        return record
    matches = app.backend.find_ids(given, AMBIGUOUS_SHOWN + 1)
    if len(matches) > 1:
        shown = ", ".join(matches[:AMBIGUOUS_SHOWN])
        more = ", ..." if len(matches) > AMBIGUOUS_SHOWN else ""
        raise CliError(
            f"{given!r} is the start of several invocation ids in app {app.app_id!r} ({shown}"
            f"{more}); give more of the id"
        )
    record = app.backend.get(matches[0]) if matches else None
    if record is None:
        raise CliError(
            f"no invocation {given!r} (nor one whose id starts with it) in app {app.app_id!r} "
            f"on {app.conf.backend_display}: never registered, purged, or its result expired"
        )
    return record


@click.command(short_help="List invocations, newest first.")
@app_options
@click.option("--task", "task_id", default=None, metavar="TASK_ID", help="Only this task.")
@click.option(
    "--status",
    "status_value",
    type=click.Choice([s.value for s in InvocationStatus], case_sensitive=False),
    default=None,
    help="Only invocations in this status.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="List at most this many.",
)
@json_option
def invocations(
    app_spec: str,
    backend_url: str | None,
    task_id: str | None,
    status_value: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List invocations, newest first, optionally of one task and in one status.

    Never creates a store (exit 2 when the SQLite file does not exist).

    \b
    --json keys: app, backend, invocations [{invocation_id, task, status, attempt,
    created_at, runner_id, last_runner_id}].
    """
    app = open_app(app_spec, backend_url, existing_store=True)
    wanted = InvocationStatus(status_value.lower()) if status_value is not None else None
    records = app.backend.list_invocations(task_id, wanted, limit)
    if as_json:
        print_json({**header(app), "invocations": [summary_json(r) for r in records]})
        return
    console = make_console()
    console.print(Text(f"app {app.app_id} on {app.conf.backend_display}", style="bold"))
    if not records:
        console.print("no invocations")
        return
    console.print(invocations_table(records))


def invocations_table(records: list[InvocationRecord]) -> Table:
    """One row per invocation: id, task, status, attempt, creation time, runner."""
    table = Table(title="Invocations (newest first)")
    # Ids are what users copy from here: whole on one line; on a narrow terminal the other
    # columns fold instead.
    id_width = max(len(record.invocation_id) for record in records)
    table.add_column("Invocation", no_wrap=True, min_width=id_width)
    table.add_column("Task", overflow="fold")
    table.add_column("Status", overflow="fold")
    table.add_column("Attempt", justify="right")
    table.add_column("Created (UTC)", overflow="fold")
    table.add_column("Runner", overflow="fold")
    for record in records:
        table.add_row(
            Text(record.invocation_id),
            Text(record.task_id),
            status_text(record.status),
            str(record.attempt),
            format_time(record.created_at),
            Text(describe_owner(record)),
        )
    return table
