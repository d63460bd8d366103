"""``taskgate runner start``: run a runner in the foreground and say how it stopped."""

from __future__ import annotations

import logging

import click

from taskgate import __version__
from taskgate.app import App
from taskgate.cli.app_loading import open_app
from taskgate.cli.common import EXIT_FAILURE, app_options
from taskgate.cli.logging_setup import LOG_LEVELS, chosen_log_format, configure_logging
from taskgate.errors import ConfigError
from taskgate.runner import Runner
from taskgate.settings import RUNNER_CLASSES
from taskgate.status import InvocationStatus

# The CLI logs as "taskgate.cli", the name users filter on, wherever its code lives.
logger = logging.getLogger("taskgate.cli")

# How many RUNNING invocations are looked through to count those a forced ProcessRunner left.
LEFT_RUNNING_SCAN = 10_000


@click.group()
def runner() -> None:
    """Run runners that execute invocations."""


@runner.command("start")
@app_options
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
    "--queues",
    default=None,
    metavar="A,B",
    help="Serve only these queues (comma-separated); default the app's queues setting "
    "(TASKGATE_QUEUES), else every queue.",
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
    backend_url: str | None,
    runner_cls: str | None,
    processes: int | None,
    threads: int | None,
    queues: str | None,
    log_level: str,
) -> None:
    """Run a runner in the foreground until SIGINT or SIGTERM.

    The first signal (Ctrl-C) stops claiming work and lets running tasks finish within the app's
    shutdown_grace_seconds (the rest go back to the queue); a second signal stops at once,
    leaving the tasks still running to lease recovery. Exits 0 after a clean stop, 1 when a
    forced stop left invocations RUNNING (another runner takes them back once their lease
    expires).
    """
    app = open_app(app_spec, backend_url, existing_store=False)
    apply_runner_options(app, runner_cls, processes, threads)
    apply_queues(app, queues)
    the_runner = build_runner(app)
    configure_logging(log_level, chosen_log_format())
    log_start(app, the_runner)
    try:
        the_runner.run()
    except BaseException:
        logger.error("runner %s exited with an error", the_runner.runner_id)
        raise
    left = left_running(app, the_runner)
    if left:
        logger.error(
            "runner %s was stopped at once and left %s invocation(s) RUNNING; a runner of this "
            "app takes them back when their lease expires (lease_seconds=%s); exit code %s",
            the_runner.runner_id,
            left,
            app.conf.lease_seconds,
            EXIT_FAILURE,
        )
        raise click.exceptions.Exit(EXIT_FAILURE)
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


def apply_queues(app: App, queues: str | None) -> None:
    """Write ``--queues a,b`` onto ``app.conf.queues``.

    Raises:
        click.BadParameter: a name that is not a valid queue name.
    """
    if queues is None:
        return
    try:
        app.conf.queues = tuple(queues.split(","))
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--queues") from None


def build_runner(app: App) -> Runner:
    """The app's runner, built now so that a runner that cannot work fails before it starts.

    Raises:
        ConfigError: the runner cannot work with the backend (ProcessRunner on ``memory://``).
    """
    # The backend first, outside App.runner: an invalid backend URL is reported as such, and
    # (before App had separate locks) a runner that checks the backend deadlocked building it.
    _ = app.backend
    return app.runner


def log_start(app: App, the_runner: Runner) -> None:
    """The start-up lines: what runs, where, which tasks, and a warning for a private store."""
    logger.info(
        "taskgate %s runner %s starting: app %s, backend %s, %s",
        __version__,
        the_runner.runner_id,
        app.app_id,
        app.conf.backend_display,
        describe_runner(app),
    )
    logger.info(
        "runner %s tasks: %s",
        the_runner.runner_id,
        ", ".join(sorted(app.tasks))
        or "none registered at import of the app's module (the module of a task is imported "
        "when one of its invocations is claimed)",
    )
    if not app.backend.supports_processes:
        logger.warning(
            "backend %s lives in this process: no other process can submit work to this "
            "runner; use sqlite:///path.db or redis://host:port/db to share it",
            app.conf.backend_display,
        )


def describe_runner(app: App) -> str:
    """The runner class and its size, for the start line."""
    built = app.runner
    threads = getattr(built, "threads", app.conf.threads)
    queues = "every queue" if app.conf.queues is None else f"queues {','.join(app.conf.queues)}"
    if app.conf.runner_cls == "ProcessRunner":
        return (
            f"{type(built).__name__}, processes {app.conf.processes}, threads {threads}, {queues}"
        )
    return f"{type(built).__name__}, threads {threads}, {queues}"


def left_running(app: App, the_runner: Runner) -> int:
    """How many invocations a stop left ``RUNNING`` under this runner (or its workers).

    Only a forced stop leaves any (a graceful one hands them back). A ThreadRunner counts them
    itself; a ProcessRunner's work was held by its worker processes, so the store is asked.
    """
    if not the_runner.stop_was_forced:
        return 0
    if the_runner.left_running is not None:
        return the_runner.left_running
    own = the_runner.runner_id
    running = app.backend.list_invocations(None, InvocationStatus.RUNNING, LEFT_RUNNING_SCAN)
    return sum(
        1
        for record in running
        if record.runner_id is not None
        and (record.runner_id == own or record.runner_id.startswith(f"{own}-"))
    )
