"""How long a retry waits: ``retry_delay``, doubled per retry by ``retry_backoff``."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskgate.task import TaskOptions


def retry_delay(
    options: TaskOptions,
    num_retries: int,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds the retry after ``num_retries`` earlier retries waits before it is claimable.

    Without back-off it is ``retry_delay``. With ``retry_backoff`` it is "full jitter": a random
    time between 0 and ``min(retry_backoff_max, retry_delay * 2**num_retries)``, so retries of
    many invocations failing together spread out instead of hitting the failing service at once.

    Args:
        options: The task's options.
        num_retries: Retries already made (0 for the first retry).
        uniform: Draws a number between its two bounds; tests pass a deterministic one.
    """
    if not options.retry_backoff:
        return float(options.retry_delay)
    # 2.0**n raises OverflowError past 1023; far below that the product already passes any cap
    # (and a product that overflows is inf, which min() caps).
    doublings = min(num_retries, 512)
    ceiling = min(float(options.retry_backoff_max), options.retry_delay * 2.0**doublings)
    return max(0.0, min(ceiling, uniform(0.0, ceiling)))
