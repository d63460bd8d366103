"""``taskgate cancel``: cancel one invocation, by id or unique prefix (API.md sections 5, 9, 12).

Exit codes: 0 when the invocation is ``CANCELLED`` now, or will be (it was running: the cancel
is requested, or was requested before), or was cancelled already (so a repeated cancel is not an
error); 1 when nothing could be cancelled (it ended otherwise already: ``SUCCESS``, ``FAILED``,
dropped; or no invocation matches the id, or a prefix matches several); 2 for a usage or
configuration error, as for every command.
"""

from __future__ import annotations

import logging

import click

from taskgate.cli.app_loading import open_app
from taskgate.cli.common import CliError, app_options, json_option, print_json
from taskgate.cli.inspect_cmd import find_record
from taskgate.cli.json_output import header
from taskgate.logfields import log_fields
from taskgate.record import CancelResult, InvocationRecord
from taskgate.status import InvocationStatus

logger = logging.getLogger(__name__)

# What ``--json`` says happened (``outcome``), by what the backend did.
OUTCOME_CANCELLED = "cancelled"
OUTCOME_REQUESTED = "cancel_requested"
OUTCOME_ALREADY_REQUESTED = "cancel_already_requested"
OUTCOME_ALREADY_CANCELLED = "already_cancelled"
OUTCOME_FINAL = "already_final"


@click.command(short_help="Cancel an invocation (a running one is interrupted).")
@click.argument("invocation_id")
@app_options
@json_option
def cancel(invocation_id: str, app_spec: str, backend_url: str | None, as_json: bool) -> None:
    """Cancel an invocation; INVOCATION_ID may be any unique prefix of the id.

    A waiting invocation (scheduled, registered, parked, waiting for a retry) becomes
    CANCELLED at once and never runs. A RUNNING one is interrupted: its runner raises in its
    body (an async one is cancelled) and it ends CANCELLED once the body stopped; its slots are
    released then. A sync body stuck inside one long C call sees the interruption only when that
    call returns. Exits 0 when it is, will be or already was cancelled; 1 when it ended
    otherwise already (success, failed, dropped) or no single invocation matches. Never creates
    a store.

    \b
    --json keys: app, backend, invocation_id, task, outcome (cancelled, cancel_requested,
    cancel_already_requested, already_cancelled, already_final), status (the status read
    after the cancel).
    """
    app = open_app(app_spec, backend_url, existing_store=True)
    record = find_record(app, invocation_id)
    # The backend's answer (not Invocation.cancel()'s bool): the CLI tells a waiting
    # invocation cancelled at once from a running one that is only asked to stop.
    result = app.backend.cancel(record.invocation_id)
    if result is CancelResult.MISSING:  # purged or expired between the lookup and the cancel
        raise CliError(
            f"no invocation {record.invocation_id!r} in app {app.app_id!r} on "
            f"{app.conf.backend_display} any more: purged, or its result expired"
        )
    after = app.backend.get(record.invocation_id) or record
    outcome = describe_outcome(result, after)
    logger.info(
        "cancel of %s (%s): %s",
        after.invocation_id,
        after.task_id,
        outcome,
        extra=log_fields(after.invocation_id, after.task_id, after.attempt, after.runner_id),
    )
    if as_json:
        print_json(
            {
                **header(app),
                "invocation_id": after.invocation_id,
                "task": after.task_id,
                "outcome": outcome,
                "status": after.status.value,
            }
        )
    else:
        click.echo(message(outcome, after))
    if outcome == OUTCOME_FINAL:
        raise click.exceptions.Exit(1)


def describe_outcome(result: CancelResult, after: InvocationRecord) -> str:
    """The ``outcome`` key for what the backend did.

    ``FINAL`` covers a cancel requested earlier as well: the record tells them apart (still
    RUNNING with ``cancel_requested``).
    """
    if result is CancelResult.CANCELLED:
        return OUTCOME_CANCELLED
    if result is CancelResult.REQUESTED:
        return OUTCOME_REQUESTED
    if after.status is InvocationStatus.RUNNING and after.cancel_requested:
        return OUTCOME_ALREADY_REQUESTED
    if after.status is InvocationStatus.CANCELLED:
        return OUTCOME_ALREADY_CANCELLED
    return OUTCOME_FINAL


def message(outcome: str, record: InvocationRecord) -> str:
    """The line ``cancel`` prints for ``outcome``."""
    name = f"{record.invocation_id} ({record.task_id})"
    if outcome == OUTCOME_CANCELLED:
        return f"cancelled {name}: it had not started and never will"
    if outcome == OUTCOME_REQUESTED:
        return (
            f"cancel requested for {name}: it is running; it stops once its body is "
            "interrupted, then it is cancelled"
        )
    if outcome == OUTCOME_ALREADY_REQUESTED:
        return (
            f"cancel already requested for {name}: it is running; it stops once its body is "
            "interrupted, then it is cancelled"
        )
    if outcome == OUTCOME_ALREADY_CANCELLED:
        return f"{name} is cancelled already"
    return f"not cancelled: {name} is already final ({record.status.value})"
