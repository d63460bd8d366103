"""Calls with options: ``task.with_options(delay=, eta=, priority=, queue=)``.

The core only turns ``delay``/``eta`` into ``InvocationRecord.scheduled_for`` (epoch seconds);
the backend keeps the invocation ``SCHEDULED`` on its timed structure until then (see "Timed
invocations" in :mod:`taskgate.backends.base`). ``priority`` and ``queue`` replace the task's own
on the record of that one call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar

from taskgate.call_options import check_priority, check_queue
from taskgate.errors import InvalidTaskOptionsError

if TYPE_CHECKING:
    from taskgate.invocation import Invocation
    from taskgate.task import Task

P = ParamSpec("P")
R = TypeVar("R")


class DelayedCall(Generic[P, R]):
    """What ``task.with_options(...)`` returns: calling it makes one call with those options."""

    def __init__(
        self,
        task: Task[P, R],
        delay: float | None,
        eta: float | None,
        priority: int | None = None,
        queue: str | None = None,
    ) -> None:
        self._task = task
        self._delay = delay
        self._eta = eta
        self._priority = priority
        self._queue = queue

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        """Register one call of the task, ``SCHEDULED`` until its time (see ``Task.__call__``)."""
        task = self._task
        when = self._eta
        if self._delay is not None:
            when = time.time() + self._delay  # counted from the call, not from with_options()
        return task.app._register_call(
            task,
            task._bind(args, kwargs),
            scheduled_for=when,
            priority=self._priority,
            queue=self._queue,
        )

    def __repr__(self) -> str:
        return (
            f"<DelayedCall {self._task.task_id} delay={self._delay} eta={self._eta} "
            f"priority={self._priority} queue={self._queue}>"
        )


def check_delay(task_id: str, delay: object, eta: object) -> tuple[float | None, float | None]:
    """Validate ``with_options``' ``delay`` and ``eta``: (delay seconds or None, eta or None).

    A zero delay is no delay (a normal call). ``eta`` comes back as epoch seconds.

    Raises:
        InvalidTaskOptionsError: both given; a delay or eta that is not a number (or, for eta,
            a datetime), negative, NaN or infinite; a naive datetime (its time zone unknown).
    """
    if delay is not None and eta is not None:
        raise InvalidTaskOptionsError(
            f"with_options of task {task_id} takes delay or eta, not both: pass one of them"
        )
    if delay is not None:
        seconds = _seconds(task_id, "delay", delay)
        return (seconds or None), None
    if eta is None:
        return None, None
    if isinstance(eta, datetime):
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise InvalidTaskOptionsError(
                f"eta of task {task_id} is a naive datetime ({eta.isoformat()}), whose time "
                "zone is unknown: pass an aware one, e.g. datetime.now(timezone.utc) + "
                "timedelta(seconds=30)"
            )
        return None, eta.timestamp()
    return None, _seconds(task_id, "eta", eta)


def _seconds(task_id: str, name: str, value: object) -> float:
    what = "seconds" if name == "delay" else "an aware datetime or epoch seconds"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTaskOptionsError(
            f"{name} of task {task_id} must be {what}, got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise InvalidTaskOptionsError(
            f"{name} of task {task_id} must be {what} (finite, not negative), got {value!r}"
        )
    return float(value)


def delayed(
    task: Task[P, R],
    delay: object,
    eta: object,
    *,
    priority: object = None,
    queue: object = None,
) -> Callable[P, Invocation[R]]:
    """The callable ``task.with_options(...)`` returns (every option validated now).

    Raises:
        InvalidTaskOptionsError: see :func:`check_delay`,
            :func:`~taskgate.call_options.check_priority` and
            :func:`~taskgate.call_options.check_queue`.
    """
    seconds, when = check_delay(task.task_id, delay, eta)
    checked_priority = None if priority is None else check_priority(task.task_id, priority)
    checked_queue = None if queue is None else check_queue(task.task_id, queue)
    return DelayedCall(task, seconds, when, checked_priority, checked_queue)
