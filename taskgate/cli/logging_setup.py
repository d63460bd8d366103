"""The log handler of ``taskgate runner start`` (the library itself never configures handlers)."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

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
