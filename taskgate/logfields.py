"""The structured context of lifecycle log lines: which invocation, task, attempt and runner.

Every line about one invocation's life (registered, folded, started, succeeded, failed, retried,
timed out, cancelled, interrupted, handed back, recovered, taken back) passes
``extra=log_fields(...)``: the four keys of :data:`LIFECYCLE_KEYS` are then attributes of the
``LogRecord``, None when the code that logs does not know them. A JSON log
(``taskgate --log-format json``, :mod:`taskgate.logformat`) writes them as keys; any other
handler can filter or format on them (``%(invocation_id)s``).

Lines on the hot path (a run's start and success, a registration) are at INFO or DEBUG and are
guarded by ``logger.isEnabledFor``, so the dict is built only when the line is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskgate.record import Claim

LIFECYCLE_KEYS = ("invocation_id", "task", "attempt", "runner_id")
"""The ``extra`` keys of every lifecycle line, in the order a JSON line writes them."""


def log_fields(
    invocation_id: str | None,
    task: str | None = None,
    attempt: int | None = None,
    runner_id: str | None = None,
) -> dict[str, Any]:
    """The ``extra`` of a lifecycle log line: all of :data:`LIFECYCLE_KEYS`, None if unknown."""
    return {
        "invocation_id": invocation_id,
        "task": task,
        "attempt": attempt,
        "runner_id": runner_id,
    }


def claim_fields(claim: Claim, runner_id: str | None) -> dict[str, Any]:
    """:func:`log_fields` of a claimed invocation run by ``runner_id``."""
    return {
        "invocation_id": claim.invocation_id,
        "task": claim.task_id,
        "attempt": claim.attempt,
        "runner_id": runner_id,
    }
