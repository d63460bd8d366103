"""What every command shares: exit codes, error types, the common options and output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(click.ClickException):
    """A failure reported as ``Error: <message>`` on stderr, exit code 1, no traceback."""

    exit_code = EXIT_FAILURE


class CliConfigError(CliError):
    """A usage or configuration error, reported like :class:`CliError` with exit code 2."""

    exit_code = EXIT_USAGE


class AppLoadError(CliConfigError):
    """``--app`` is malformed, or does not lead to a :class:`~taskgate.App`."""


class AppImportError(AppLoadError):
    """The app's module was found but raised while being imported.

    The message is preceded by the traceback of that failure (the user's code is at fault, and
    its traceback is what they need), with the import machinery's frames left out.
    """

    def __init__(self, message: str, traceback_text: str) -> None:
        super().__init__(message)
        self.traceback_text = traceback_text

    def show(self, file: Any = None) -> None:
        """Print the traceback, then ``Error: <message>``, on stderr."""
        click.echo(self.traceback_text.rstrip("\n"), file=file, err=True)
        super().show(file)


def app_options(command: F) -> F:
    """Add ``--app`` and ``--backend``, which every command takes."""
    command = click.option(
        "--backend",
        "backend_url",
        default=None,
        metavar="URL",
        help=(
            "Backend URL to use instead of TASKGATE_BACKEND and the app's own setting. A "
            "password here is readable by every local user (the command line is public): "
            "pass one in TASKGATE_BACKEND instead."
        ),
    )(command)
    return click.option(
        "--app",
        "app_spec",
        required=True,
        envvar="TASKGATE_APP",
        show_envvar=True,
        metavar="MODULE:ATTR",
        help="The taskgate.App to use, as module:attribute (e.g. tasks:app).",
    )(command)


def json_option(command: F) -> F:
    """Add ``--json``: print one JSON document (keys listed in the command's help) instead."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (stable keys, times as ISO-8601 UTC) instead of tables.",
    )(command)


def make_console() -> Console:
    """A console on the current stdout (so a redirected or captured stdout is honoured)."""
    return Console(file=sys.stdout, highlight=False)


def print_json(document: Any) -> None:
    """``document`` as indented JSON on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))
