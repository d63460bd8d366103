"""The ``taskgate`` command line: run a runner, and look at or clear an app's invocations.

Every command takes ``--app module:attr`` (or ``TASKGATE_APP``), the import path of a
:class:`~taskgate.App`, loaded the way Celery loads ``-A``: the current directory is put first on
``sys.path`` so that ``taskgate runner start --app tasks:app`` finds ``./tasks.py``; and
``--backend URL``, which replaces the app's backend setting (and ``TASKGATE_BACKEND``).

Exit codes: 0 on success, 1 when the operation failed (unknown or ambiguous invocation,
unreachable backend, declined confirmation, a forced runner stop that left invocations
running, a cancel of an invocation that had ended otherwise already), 2 for a usage or
configuration error (bad ``--app``, an app that cannot be loaded, invalid settings, a store
that does not exist for a command that never creates one, a runner that cannot work with the
backend).

The commands live by concern in ``runner_cmd`` (``runner start``), ``status_cmd`` (``status``,
``purge``), ``inspect_cmd`` (``inspect``, ``invocations``), ``cancel_cmd`` (``cancel``) and
``limits_cmd`` (``limits list``, ``set``, ``reset``) and ``monitor_cmd`` (``monitor``); this
module is the root group.
"""

from __future__ import annotations

from typing import Any

import click

from taskgate import __version__
from taskgate.cli.app_loading import load_app
from taskgate.cli.cancel_cmd import cancel
from taskgate.cli.common import AppLoadError, CliConfigError, CliError
from taskgate.cli.inspect_cmd import inspect, invocations
from taskgate.cli.limits_cmd import limits
from taskgate.cli.monitor_cmd import monitor
from taskgate.cli.runner_cmd import runner
from taskgate.cli.status_cmd import purge, status
from taskgate.errors import ConfigError, TaskgateError


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


for command in (runner, status, inspect, invocations, cancel, limits, monitor, purge):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``taskgate`` console script and of ``python -m taskgate``."""
    cli()


__all__ = ["AppLoadError", "CliConfigError", "CliError", "cli", "load_app", "main"]
