"""The ``taskgate`` command line: run a runner, and look at or clear an app's invocations.

Every command takes ``--app module:attr`` (or ``TASKGATE_APP``), the import path of a
:class:`~taskgate.App`, loaded the way Celery loads ``-A``: the current directory is put first on
``sys.path`` so that ``taskgate runner start --app tasks:app`` finds ``./tasks.py``.

Exit codes: 0 on success, 1 when the operation failed (unknown invocation, unreachable backend,
declined confirmation), 2 for a usage or configuration error (bad ``--app``, an app that cannot
be loaded, a runner that cannot work with the backend).

The library never configures logging handlers; ``taskgate runner start`` does, on stderr: rich
output on a terminal, plain ``time level logger: message`` lines otherwise (files, pipes, log
collectors).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from taskgate import __version__, locate
from taskgate.app import App
from taskgate.errors import ConfigError, TaskFailedError, TaskgateError
from taskgate.record import BackendStats, InvocationRecord, Transition
from taskgate.runner import Runner
from taskgate.settings import RUNNER_CLASSES
from taskgate.status import InvocationStatus

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HANDLER_NAME = "taskgate-cli"
STATUS_ORDER = {status: index for index, status in enumerate(InvocationStatus)}
STATUS_STYLES = {
    InvocationStatus.REGISTERED: "blue",
    InvocationStatus.CONCURRENCY_CONTROLLED: "yellow",
    InvocationStatus.CONCURRENCY_CONTROLLED_FINAL: "magenta",
    InvocationStatus.RUNNING: "cyan",
    InvocationStatus.RETRY: "yellow",
    InvocationStatus.SUCCESS: "green",
    InvocationStatus.FAILED: "red",
}


class CliError(click.ClickException):
    """A failure reported as ``Error: <message>`` on stderr, exit code 1, no traceback."""

    exit_code = EXIT_FAILURE


class CliConfigError(CliError):
    """A usage or configuration error, reported like :class:`CliError` with exit code 2."""

    exit_code = EXIT_USAGE


class AppLoadError(CliConfigError):
    """``--app`` is malformed, or does not lead to a :class:`~taskgate.App`."""


# --- loading the app ---------------------------------------------------------------------------


def load_app(spec: str) -> App:
    """Import the :class:`~taskgate.App` named by ``spec`` (``"module:attr"``).

    The current directory is inserted first on ``sys.path`` (as Celery does), so a module next to
    the caller is found. The lookup itself is :func:`taskgate.locate.load_app`, the one
    ProcessRunner workers use, so whatever the command line accepts, workers accept too.

    Args:
        spec: ``"package.module:attribute"``.

    Returns:
        The app object.

    Raises:
        AppLoadError: ``spec`` is malformed, the module cannot be imported, the attribute is
            missing, or it is not a :class:`~taskgate.App`.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return locate.load_app(spec)
    except ConfigError as exc:
        cause = exc.__cause__
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        hint = (
            f"; searched the current directory ({cwd}) and PYTHONPATH"
            if isinstance(cause, ImportError)
            else ""
        )
        raise AppLoadError(f"--app: {exc}{detail}{hint}") from exc


def app_option(command: F) -> F:
    """Add the ``--app`` option shared by every command."""
    return click.option(
        "--app",
        "app_spec",
        required=True,
        envvar="TASKGATE_APP",
        show_envvar=True,
        metavar="MODULE:ATTR",
        help="The taskgate.App to use, as module:attribute (e.g. tasks:app).",
    )(command)


# --- formatting --------------------------------------------------------------------------------


def make_console() -> Console:
    """A console on the current stdout (so a redirected or captured stdout is honoured)."""
    return Console(file=sys.stdout, highlight=False)


def format_time(timestamp: float | None) -> str:
    """A Unix timestamp as ISO-8601 UTC with milliseconds, or ``-``."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")


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


# --- the command group -------------------------------------------------------------------------


class TaskgateGroup(click.Group):
    """The root group: turns taskgate errors into clean messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a :class:`ConfigError` exits 2, any other taskgate error 1."""
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise CliConfigError(str(exc)) from exc
        except TaskgateError as exc:
            raise CliError(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=TaskgateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="taskgate")
def cli() -> None:
    """taskgate: distributed tasks with concurrency control.

    Exit codes: 0 success, 1 failure, 2 usage or configuration error.
    """


# --- runner start ------------------------------------------------------------------------------


@cli.group()
def runner() -> None:
    """Run runners that execute invocations."""


@runner.command("start")
@app_option
@click.option(
    "--runner",
    "runner_cls",
    type=click.Choice(RUNNER_CLASSES, case_sensitive=False),
    default=None,
    help="Runner class; default the app's runner_cls setting (TASKGATE_RUNNER_CLS).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes of a ProcessRunner; default the app's setting (the CPU count).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads (per process for a ProcessRunner); default the app's setting.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Level of the log lines written to stderr.",
)
def runner_start(
    app_spec: str,
    runner_cls: str | None,
    processes: int | None,
    threads: int | None,
    log_level: str,
) -> None:
    """Run a runner in the foreground until SIGINT or SIGTERM.

    The first signal stops claiming work and lets running tasks finish within the app's
    shutdown_grace_seconds (the rest go back to the queue); a second signal stops at once.
    """
    app = load_app(app_spec)
    apply_runner_options(app, runner_cls, processes, threads)
    the_runner = build_runner(app)
    configure_logging(log_level)
    logger.info(
        "taskgate %s runner %s starting: app %s, backend %s, %s",
        __version__,
        the_runner.runner_id,
        app.app_id,
        app.conf.backend_url,
        describe_runner(app),
    )
    try:
        the_runner.run()
    except BaseException:
        logger.error("runner %s exited with an error", the_runner.runner_id)
        raise
    logger.info("runner %s exited cleanly", the_runner.runner_id)


def apply_runner_options(
    app: App, runner_cls: str | None, processes: int | None, threads: int | None
) -> None:
    """Write the command-line options that were given onto ``app.conf``."""
    if runner_cls is not None:
        app.conf.runner_cls = runner_cls
    if processes is not None:
        app.conf.processes = processes
    if threads is not None:
        app.conf.threads = threads


def build_runner(app: App) -> Runner:
    """The app's runner, built now so that a runner that cannot work fails before it starts.

    Raises:
        ConfigError: the runner cannot work with the backend (ProcessRunner on ``memory://``).
    """
    # The backend first, outside App.runner: an invalid backend URL is reported as such, and
    # (before App had separate locks) a runner that checks the backend deadlocked building it.
    _ = app.backend
    return app.runner


def describe_runner(app: App) -> str:
    """The runner class and its size, for the start line."""
    built = app.runner
    threads = getattr(built, "threads", app.conf.threads)
    if app.conf.runner_cls == "ProcessRunner":
        return f"{type(built).__name__}, processes {app.conf.processes}, threads {threads}"
    return f"{type(built).__name__}, threads {threads}"


def configure_logging(level: str) -> None:
    """Send log records of ``level`` and above to stderr (replacing a previous CLI handler)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    handler = make_log_handler()
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level.upper())


def make_log_handler() -> logging.Handler:
    """Rich output on a terminal; plain one-line records (never wrapped) otherwise."""
    if sys.stderr.isatty():
        rich_handler = RichHandler(
            console=Console(stderr=True), show_path=False, log_time_format="[%X]"
        )
        rich_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        return rich_handler
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    return plain


# --- status ------------------------------------------------------------------------------------


@cli.command()
@app_option
def status(app_spec: str) -> None:
    """Show invocation counts by task and status, live runners and parked invocations."""
    app = load_app(app_spec)
    stats = app.backend.stats()
    console = make_console()
    console.print(Text(f"app {app.app_id} on {app.conf.backend_url}", style="bold"))
    print_counts(console, stats)
    print_runners(console, stats, time.time())
    print_parked(console, stats)


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


def print_runners(console: Console, stats: BackendStats, now: float) -> None:
    """The table of live runners and when their heartbeat expires."""
    if not stats.runners:
        console.print("no live runners")
        return
    table = Table(title="Live runners")
    table.add_column("Runner")
    table.add_column("Heartbeat expires (UTC)")
    table.add_column("Seconds left", justify="right")
    for runner_id, expires_at in sorted(stats.runners.items()):
        table.add_row(Text(runner_id), format_time(expires_at), f"{expires_at - now:.1f}")
    console.print(table)


def print_parked(console: Console, stats: BackendStats) -> None:
    """The table of invocations parked (CONCURRENCY_CONTROLLED) per running key."""
    parked = {key: n for key, n in stats.parked_by_key.items() if n}
    if not parked:
        console.print("no parked invocations")
        return
    table = Table(title="Parked invocations (waiting for a running slot)")
    table.add_column("Running key")
    table.add_column("Parked", justify="right")
    for key, count in sorted(parked.items()):
        table.add_row(Text(key), str(count))
    console.print(table)


# --- inspect -----------------------------------------------------------------------------------


@cli.command()
@click.argument("invocation_id")
@app_option
def inspect(invocation_id: str, app_spec: str) -> None:
    """Show one invocation: its record, arguments, outcome and history.

    For an invocation waiting for a running slot, also the scope key and the invocations holding
    the slots. Exits 1 when no such invocation exists.
    """
    app = load_app(app_spec)
    record = app.backend.get(invocation_id)
    if record is None:
        raise CliError(
            f"no invocation {invocation_id!r} in app {app.app_id!r} on {app.conf.backend_url}: "
            "never registered, purged, or its result expired"
        )
    console = make_console()
    console.print(record_table(app, record, time.time()))
    print_blocked_by(console, app, record)
    console.print(history_table(record.history))


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
        ("runner", Text(describe_owner(record))),
        ("lease expires", Text(format_expiry(record.lease_expires_at, now))),
        ("created", Text(format_time(record.created_at))),
        ("arguments", Text(format_arguments(app, record.arguments))),
        *outcome_rows(app, record),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


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
    """The result or error rows: the value on SUCCESS, the exception on FAILED (or a retry)."""
    if record.status is InvocationStatus.SUCCESS and record.result is not None:
        value, problem = safe_decode(app.serializer.loads, record.result)
        return [("result", Text(problem or repr(value), style="green"))]
    if record.status is InvocationStatus.CONCURRENCY_CONTROLLED_FINAL:
        return [("outcome", Text("dropped: its running scope was at its limit", style="magenta"))]
    if record.error is not None:
        label = "error" if record.status.is_final else "last error"
        exc, problem = safe_decode(app.serializer.loads_error, record.error)
        return [(label, Text(problem or describe_exception(exc), style="red"))]
    return []


def print_blocked_by(console: Console, app: App, record: InvocationRecord) -> None:
    """For a parked invocation: its running scope key and who holds the slots."""
    if record.status is not InvocationStatus.CONCURRENCY_CONTROLLED:
        return
    blocked = app.backend.blocked_by(record.invocation_id)
    if blocked is None:  # it got its slot between the two reads
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("waiting for", Text(blocked.scope_key))
    holders = "\n".join(blocked.holders) or "(none: it is next in line)"
    table.add_row("slots held by", Text(holders))
    console.print(table)


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


# --- purge -------------------------------------------------------------------------------------


@cli.command()
@app_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge(app_spec: str, yes: bool) -> None:
    """Delete every invocation, result, queue entry and slot of the app.

    Runners of the app keep running; invocations they are executing are lost.
    """
    app = load_app(app_spec)
    where = f"app {app.app_id!r} on {app.conf.backend_url}"
    if not yes:
        click.confirm(
            f"Delete every invocation, result, queue entry and slot of {where}?", abort=True
        )
    count = sum(app.backend.stats().by_task_and_status.values())
    app.purge()
    click.echo(f"purged {where}: {count} invocation(s) deleted")


def main() -> None:
    """Entry point of the ``taskgate`` console script and of ``python -m taskgate``."""
    cli()


__all__ = ["AppLoadError", "CliConfigError", "CliError", "cli", "load_app", "main"]
