"""The log handler of ``taskgate`` commands that log (the library never configures handlers)."""

from __future__ import annotations

import logging

import click

from taskgate.logformat import HANDLER_NAME, LOG_FORMATS, make_log_handler

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT_META = "taskgate.log_format"
"""Where the root group keeps ``--log-format`` in ``click.Context.meta`` (shared by subcommands)."""
__all__ = ["HANDLER_NAME", "LOG_FORMATS", "LOG_LEVELS", "chosen_log_format", "configure_logging"]


def chosen_log_format() -> str:
    """The global ``--log-format`` (or ``TASKGATE_LOG_FORMAT``) of the running command."""
    context = click.get_current_context(silent=True)
    return "plain" if context is None else str(context.meta.get(LOG_FORMAT_META, "plain"))


def configure_logging(level: str, log_format: str = "plain") -> None:
    """Send log records of ``level`` and above to stderr in ``log_format`` (``plain`` or
    ``json``), replacing a previous CLI handler."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    handler = make_log_handler(log_format)
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level.upper())
