"""Validation of the options that say where and how one call runs: ``queue``, ``priority``
and ``timeout`` (task options, API.md section 3; ``queue`` and ``priority`` also per call with
``task.with_options``). Each check raises
:class:`~taskgate.errors.InvalidTaskOptionsError` naming the task and the bad value.
"""

from __future__ import annotations

import math

from taskgate.errors import InvalidTaskOptionsError

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
"""Priorities are bounded: the Redis backend orders a queue by one score,
``-priority * 2**40 + sequence``, exact in a double only while the priority stays this small."""

QUEUE_MAX_LENGTH = 100
"""Queue names are short: they are part of store keys and of ``--queues a,b`` lists."""


def check_priority(task_id: str, value: object) -> int:
    """``value`` as a priority: an int within [:data:`PRIORITY_MIN`, :data:`PRIORITY_MAX`]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTaskOptionsError(
            f"priority of task {task_id} must be an int, got {type(value).__name__} {value!r}"
        )
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise InvalidTaskOptionsError(
            f"priority of task {task_id} must be within [{PRIORITY_MIN}, {PRIORITY_MAX}] "
            f"(higher runs first), got {value}"
        )
    return value


def check_queue(task_id: str, value: object) -> str:
    """``value`` as a queue name: a non-empty text of at most :data:`QUEUE_MAX_LENGTH`
    characters, without whitespace or commas (``--queues`` lists are comma-separated)."""
    if not isinstance(value, str):
        raise InvalidTaskOptionsError(
            f"queue of task {task_id} must be a queue name (str), got "
            f"{type(value).__name__} {value!r}"
        )
    if not value or len(value) > QUEUE_MAX_LENGTH:
        raise InvalidTaskOptionsError(
            f"queue of task {task_id} must be 1 to {QUEUE_MAX_LENGTH} characters long, "
            f"got {value!r}"
        )
    if "," in value or any(c.isspace() for c in value):
        raise InvalidTaskOptionsError(
            f"queue of task {task_id} must not contain whitespace or commas, got {value!r}"
        )
    return value


def check_timeout(task_id: str, value: object) -> float | None:
    """``value`` as a run timeout: None (no timeout) or a finite number of seconds > 0."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidTaskOptionsError(
            f"timeout of task {task_id} must be None or a finite number of seconds > 0, "
            f"got {value!r}"
        )
    return float(value)
