"""Reading stored runner descriptions (``Backend.runner_infos``), skipping malformed ones.

A description is JSON written by a runner's heartbeat (:meth:`RunnerInfo.to_json`). One that
cannot be read (written by another version of taskgate, edited by hand, truncated) describes
one runner: it must not break every reader of all the others (the monitor's pages, ``/metrics``,
``taskgate status``). It is skipped, logged at WARNING the first time in a process and at DEBUG
afterwards (a reader polls every few seconds); it expires with its TTL like any description.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from taskgate.record import RunnerInfo

logger = logging.getLogger(__name__)

_warned = False


def read_descriptions(stored: Iterable[str | bytes]) -> list[RunnerInfo]:
    """The descriptions in ``stored`` that can be read, in the same order."""
    described = []
    for text in stored:
        try:
            described.append(RunnerInfo.from_json(text))
        except Exception as exc:  # json's ValueError, KeyError, TypeError on a wrong shape...
            _skipped(text, exc)
    return described


def _skipped(text: str | bytes, exc: Exception) -> None:
    global _warned
    sample = text[:80] if isinstance(text, str) else text[:80].decode("utf-8", "replace")
    level = logging.DEBUG if _warned else logging.WARNING
    _warned = True  # no lock: two threads logging the first WARNING is harmless
    logger.log(
        level,
        "skipping a runner description that cannot be read (%s: %s): %r",
        type(exc).__name__,
        exc,
        sample,
    )
