"""How taskgate's programs (the CLI and ProcessRunner worker processes) write log lines.

The library itself never configures logging; programs do, and they all share this format, so
a runner's stderr reads as one log whichever process wrote a line. Two formats:

- ``plain`` (default): rich output on a terminal, one plain line per record otherwise;
- ``json``: one JSON object per line (:class:`JsonFormatter`), for log shippers.

The CLI takes ``--log-format`` (or ``TASKGATE_LOG_FORMAT``); a ProcessRunner passes the format
its own handler uses to its worker processes in that same variable.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from taskgate.logfields import LIFECYCLE_KEYS

PLAIN_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
"""One line per record: time, level, logger, message (files, pipes, journald)."""

LOG_FORMATS = ("plain", "json")
LOG_FORMAT_ENV = "TASKGATE_LOG_FORMAT"
"""The log format of a program (the CLI's ``--log-format``, a worker process's format)."""
HANDLER_NAME = "taskgate-cli"
"""The name of the handler the CLI puts on the root logger (replaced, never added twice)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line.

    Keys: ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message`` (arguments
    applied), then those of :data:`~taskgate.logfields.LIFECYCLE_KEYS` the record has (every
    lifecycle line has all four, None when unknown), then ``exc_info`` (the formatted
    traceback) and ``stack_info`` when present. Values JSON cannot hold are written as
    ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in LIFECYCLE_KEYS:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def make_log_handler(log_format: str = "plain") -> logging.Handler:
    """A stderr handler writing ``log_format`` (see the module's doc).

    Raises:
        ValueError: ``log_format`` is not one of :data:`LOG_FORMATS`.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        return handler
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


def format_in_use() -> str | None:
    """The format this program's root handlers write: ``"json"`` when one uses
    :class:`JsonFormatter`, ``"plain"`` when the CLI's handler (:data:`HANDLER_NAME`) writes
    plain lines, None when neither (a program with its own logging set-up)."""
    handlers = logging.getLogger().handlers
    if any(isinstance(handler.formatter, JsonFormatter) for handler in handlers):
        return "json"
    if any(handler.get_name() == HANDLER_NAME for handler in handlers):
        return "plain"
    return None
