"""Periodic tasks (``cron=``, ``every=``): validating the options and computing ticks.

Pure: no clock, no store. :func:`next_tick` says when a periodic task next ticks after a given
instant; the runner's scheduler (:mod:`taskgate.runner.periodic`) sleeps until then and
registers the tick, at most once across all runners (``Backend.register_tick``).

- ``cron``: a standard 5-field expression (minute hour day-of-month month day-of-week),
  evaluated in UTC, so that runners on hosts in different time zones agree on the ticks.
- ``every``: seconds; the ticks lie on a grid aligned on the epoch (the multiples of
  ``every``), so that every runner computes the same ticks whenever it started.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from croniter import croniter

from taskgate.errors import InvalidTaskOptionsError

if TYPE_CHECKING:
    from taskgate.task import TaskOptions

# Below this, a periodic task ticks faster than a store can register ticks reliably.
MIN_EVERY_SECONDS = 0.01


def is_periodic(options: TaskOptions) -> bool:
    """Whether the task is called by the runners' scheduler (``cron`` or ``every`` set)."""
    return options.cron is not None or options.every is not None


def check_periodic(name: str, options: TaskOptions, func: Callable[..., Any]) -> None:
    """Validate ``cron``/``every`` of task ``name`` (decoration time).

    Raises:
        InvalidTaskOptionsError: both given; ``cron`` not a valid 5-field expression; ``every``
            not a finite number of seconds >= 0.01; either on a function with a parameter
            without default (a tick calls it with no arguments).
    """
    cron, every = options.cron, options.every
    if cron is None and every is None:
        return
    if cron is not None and every is not None:
        raise InvalidTaskOptionsError(
            f"task {name} sets both cron={cron!r} and every={every!r}; give one of them"
        )
    if cron is not None:
        _check_cron(name, cron)
    if every is not None and (
        not isinstance(every, (int, float))
        or isinstance(every, bool)
        or not math.isfinite(every)
        or every < MIN_EVERY_SECONDS
    ):
        raise InvalidTaskOptionsError(
            f"every of task {name} must be a finite number of seconds >= {MIN_EVERY_SECONDS}, "
            f"got {every!r}"
        )
    required = [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise InvalidTaskOptionsError(
            f"periodic task {name} has parameter(s) without default: {', '.join(required)}; "
            "each tick calls it with no arguments, so give every parameter a default"
        )


def _check_cron(name: str, cron: Any) -> None:
    fields = cron.split() if isinstance(cron, str) else []
    if len(fields) != 5 or not croniter.is_valid(cron):
        raise InvalidTaskOptionsError(
            f"cron of task {name} must be a 5-field cron expression (minute hour day-of-month "
            f"month day-of-week, e.g. '*/5 * * * *'), got {cron!r}"
        )


def next_tick(options: TaskOptions, after: float) -> float:
    """The first tick of a periodic task strictly after epoch seconds ``after``.

    Raises:
        ValueError: the task is not periodic.
    """
    if options.every is not None:
        every = float(options.every)
        tick = (math.floor(after / every) + 1) * every
        # Float rounding may land on (or just before) ``after`` for huge values: step once more.
        return tick if tick > after else tick + every
    if options.cron is not None:
        start = datetime.fromtimestamp(after, UTC)
        following: datetime = croniter(options.cron, start).get_next(datetime)
        return following.timestamp()
    raise ValueError("next_tick of a task with neither cron nor every")
