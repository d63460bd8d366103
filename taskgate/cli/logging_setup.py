"""The log handler of ``taskgate runner start`` (the library itself never configures handlers)."""

from __future__ import annotations

import logging

from taskgate.logformat import make_log_handler

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HANDLER_NAME = "taskgate-cli"


def configure_logging(level: str) -> None:
    """Send log records of ``level`` and above to stderr (replacing a previous CLI handler)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    handler = make_log_handler()
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level.upper())
