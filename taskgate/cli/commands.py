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
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from taskgate import __version__, locate
from taskgate.app import App
from taskgate.cli.render import (
    history_table,
    print_blocked_by,
    print_counts,
    print_parked,
    print_runners,
    record_table,
)
from taskgate.errors import ConfigError, TaskgateError
from taskgate.logformat import make_log_handler
from taskgate.runner import Runner
from taskgate.settings import RUNNER_CLASSES

# The CLI logs as "taskgate.cli", the name users filter on, wherever its code lives.
logger = logging.getLogger("taskgate.cli")

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HANDLER_NAME = "taskgate-cli"


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
