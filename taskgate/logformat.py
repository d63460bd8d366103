"""How taskgate's programs (the CLI and ProcessRunner worker processes) write log lines.

The library itself never configures logging; programs do, and they all share this format, so
a runner's stderr reads as one log whichever process wrote a line.
"""

from __future__ import annotations

import logging
import sys

PLAIN_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
"""One line per record: time, level, logger, message (files, pipes, journald)."""


def make_log_handler() -> logging.Handler:
    """Rich output when stderr is a terminal; plain one-line records (never wrapped) otherwise."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        rich_handler = RichHandler(
            console=Console(stderr=True), show_path=False, log_time_format="[%X]"
        )
        rich_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        return rich_handler
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter(PLAIN_FORMAT))
    return plain
