"""``taskgate limits list|set|reset``: see an app's limits and change them while it runs.

An override (``set``) is stored in the backend: every runner of the app obeys it from its next
admission on, until ``reset``. None of these commands creates a store.
"""

from __future__ import annotations

import time

import click
from rich.text import Text

from taskgate.app import App
from taskgate.cli.app_loading import open_app
from taskgate.cli.common import app_options, json_option, make_console, print_json
from taskgate.cli.limits_view import limits_json, print_limits, rate_text
from taskgate.errors import InvalidTaskOptionsError
from taskgate.limits import check_concurrency, parse_rate
from taskgate.record import Rate


@click.group()
def limits() -> None:
    """Show an app's limits, override them at run time, reset them."""


@limits.command("list", short_help="Every limit: values, slots held, waiters, starts, per key.")
@app_options
@json_option
def limits_list(app_spec: str, backend_url: str | None, as_json: bool) -> None:
    """Show every limit: effective values, slots held, waiters, rate window starts.

    Lists the limits the app declares, those overridden in the store and those in use there.
    A keyed limit gets one row per key value in use (its busiest ones; the rest summed); a
    budget's holders (invocation id prefix and runner) are listed when there are a few.
    Read-only: never creates a store (exit 2 when the SQLite file does not exist).

    \b
    --json keys: app, backend, limits [{name, key [argument names], declared, overridden,
    concurrency, rate {count, period_seconds} (null without), slots_held, waiting,
    oldest_wait_since, window_starts, budgets [{key, key_values, slots_held, holders
    [{invocation_id, runner_id, lease_expires_at}], waiting, oldest_wait_since,
    window_starts}]}]. concurrency and rate are the effective values (the override's, else
    the declared ones); counts of a limit are summed over its budgets (one per key value).
    """
    app = open_app(app_spec, backend_url, existing_store=True)
    infos = app.limits()
    if as_json:
        print_json(limits_json(app, infos))
        return
    console = make_console()
    console.print(Text(f"app {app.app_id} on {app.conf.backend_display}", style="bold"))
    print_limits(console, infos, time.time())


def _checked(name: str, concurrency: int | None, rate: str | None) -> Rate | None:
    """Check the values of ``limits set`` before anything is opened; returns the rate.

    Raises:
        click.UsageError: neither value given; click.BadParameter: an invalid one (exit 2).
    """
    if concurrency is None and rate is None:
        raise click.UsageError(
            "give --concurrency N, --rate M/P or both (to go back to the declared values, "
            "use 'taskgate limits reset NAME')"
        )
    try:
        if concurrency is not None:
            check_concurrency(name, concurrency)
    except InvalidTaskOptionsError as exc:
        raise click.BadParameter(str(exc), param_hint="'--concurrency'") from exc
    try:
        return None if rate is None else parse_rate(rate)
    except InvalidTaskOptionsError as exc:
        raise click.BadParameter(str(exc), param_hint="'--rate'") from exc


@limits.command("set", short_help="Override a limit for every runner of the app.")
@click.argument("name")
@app_options
@click.option(
    "--concurrency",
    type=int,
    metavar="N",
    help="At most N invocations using the limit run at once (per key value when keyed).",
)
@click.option(
    "--rate",
    "rate_given",
    metavar="M/P",
    help='At most M starts within any window of P: "120/m", "10/s", "5/2.5s", "100/3600".',
)
def limits_set(
    name: str,
    app_spec: str,
    backend_url: str | None,
    concurrency: int | None,
    rate_given: str | None,
) -> None:
    """Override limit NAME for every runner of the app, from their next admission on.

    Give --concurrency, --rate or both; a value left out keeps the declared one. The override
    replaces any earlier one. Raising a limit admits waiters at once; lowering it never
    interrupts running work. Exit 2 for an invalid value; never creates a store.
    """
    rate = _checked(name, concurrency, rate_given)
    app = open_app(app_spec, backend_url, existing_store=True)
    try:
        app.set_limit(name, concurrency=concurrency, rate=rate)
    except InvalidTaskOptionsError as exc:  # the name: the values were checked above
        raise click.BadParameter(str(exc), param_hint="'NAME'") from exc
    _say_now(app, name, f"limit {name!r} overridden")


@limits.command("reset", short_help="Delete a limit's override: declared values apply again.")
@click.argument("name")
@app_options
def limits_reset(name: str, app_spec: str, backend_url: str | None) -> None:
    """Delete the override of limit NAME: the declared values apply again.

    Nothing happens when NAME has no override. Never creates a store.
    """
    app = open_app(app_spec, backend_url, existing_store=True)
    try:
        app.reset_limit(name)
    except InvalidTaskOptionsError as exc:
        raise click.BadParameter(str(exc), param_hint="'NAME'") from exc
    _say_now(app, name, f"limit {name!r} reset")


def _say_now(app: App, name: str, what: str) -> None:
    """Print what was done and the limit's effective values now; warn on stderr about a name
    the app does not declare (likely a typo: no limit of this app obeys that override)."""
    info = next((i for i in app.limits() if i.name == name), None)
    where = f"app {app.app_id} on {app.conf.backend_display}"
    if info is None or not info.declared:
        click.echo(f"{what} in {where}")
        click.echo(
            f"Warning: app {app.app_id} does not declare a limit {name!r}: the override "
            "applies only to runners whose code declares it (check the name with 'taskgate "
            "limits list')",
            err=True,
        )
        return
    concurrency = "none" if info.concurrency is None else str(info.concurrency)
    rate = "none" if info.rate is None else rate_text(info.rate)
    source = "override" if info.overridden else "declared"
    click.echo(
        f"{what} in {where}: now concurrency {concurrency}, rate {rate} ({source}); "
        f"{info.slots_held} slot(s) held, {info.waiting} waiting"
    )
