"""Small helpers that turn stored values into what pages and JSON show.

Everything a page shows goes through Jinja2's autoescaping; these helpers only shorten and
format. Stored Python values (arguments, results) are shown as their ``repr``, truncated, and
decoding them never raises: a value the monitor cannot decode is shown as a message instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from taskgate.cli.limits_view import rate_json as cli_rate_json
from taskgate.cli.render import split_scope_key
from taskgate.record import Rate

# A repr longer than this is cut (arguments and results can be large).
REPR_MAX = 2000
ID_SHORT = 8


def now() -> float:
    """The wall clock (one place, so a page uses one instant for all its ages)."""
    return time.time()


def short_repr(value: Any, limit: int = REPR_MAX) -> str:
    """``repr(value)``, cut to ``limit`` characters (marked), never raising."""
    try:
        text = repr(value)
    except Exception as exc:  # a user type whose __repr__ fails
        return f"<unrepresentable {type(value).__name__}: {exc}>"
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


def decode(loads: Callable[[bytes], Any], data: bytes) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, reason)`` when ``data`` cannot be decoded."""
    try:
        return loads(data), None
    except Exception as exc:
        return None, f"<cannot decode: {exc}>"


def key_values(scope_key: str) -> str | None:
    """The key values part of a budget or running scope key (``tenant_id='42'``), or None."""
    return split_scope_key(scope_key).values


def rate_json(rate: Rate | None) -> dict[str, Any] | None:
    """A rate as the CLI's ``{count, period_seconds}`` plus its ``text``, or None."""
    fields = cli_rate_json(rate)
    return None if fields is None or rate is None else {**fields, "text": rate_text(rate)}


def rate_text(rate: Rate) -> str:
    """``120/m`` for whole units, else ``5/2.5s``."""
    for unit, seconds in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if rate.period == seconds:
            return f"{rate.count}/{unit}"
    return str(rate)


def time_text(iso_time: str | None, *, milliseconds: bool = False) -> str:
    """An ISO time (of :func:`~taskgate.cli.json_output.iso_time`) as ``2026-01-02 03:04:05
    UTC`` (the pages' form; with ``.123`` milliseconds when asked), or ``-``."""
    if not iso_time:
        return "-"
    return iso_time.replace("T", " ")[: 23 if milliseconds else 19] + " UTC"


def seconds_until(timestamp: float | None, at: float) -> float | None:
    """``timestamp - at`` rounded to milliseconds, or None."""
    return None if timestamp is None else round(timestamp - at, 3)


def seconds_since(timestamp: float | None, at: float) -> float | None:
    """``at - timestamp`` rounded to milliseconds (never negative), or None."""
    return None if timestamp is None else round(max(0.0, at - timestamp), 3)
