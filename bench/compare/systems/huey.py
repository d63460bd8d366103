"""Huey: ``RedisHuey`` and a consumer with 2 worker processes (``-k process -w 2``).

(d) uses ``huey.lock_task`` per key. A call that finds its key locked raises
``TaskLockedException``; the task's retries (``retry_delay=0``: straight back on the queue) make
every call eventually run, and the attempt counter shows how many tries that took.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huey import RedisHuey
from huey.api import Result
from huey.exceptions import ResultTimeout

from systems import common

REQUIREMENTS = ["huey==3.5.4", "redis==8.1.0"]
DISTRIBUTIONS = ["huey", "redis"]
KEYED_MECHANISM = "lock_task per key; TaskLockedException -> retry (retries=10000, retry_delay=0)"
NOTES = [
    "RedisHuey(notify_result=True): result waits block on BLPOP instead of polling "
    "(the documented low-latency option; the default polls from 50 ms with backoff)",
    "consumer -q (minimal logging)",
]

huey = RedisHuey("bench", url=common.redis_url(), notify_result=True)


@huey.task()
def no_op() -> int:
    """Do nothing (returns 0: Huey does not store a ``None`` result by default)."""
    return 0


@huey.task(retries=10_000, retry_delay=0)
def keyed(key: int, seq: int) -> int:
    """(d): one call of ``key`` at a time, or TaskLockedException (and a retry)."""
    common.count_attempt()
    with huey.lock_task(f"bench-key-{key}"):
        return common.keyed_body(key, seq)


def worker_commands(python: str) -> list[list[str]]:
    """One consumer with 2 worker processes."""
    consumer = str(Path(python).parent / "huey_consumer")
    return [[python, consumer, "systems.huey.huey", "-k", "process", "-w", "2", "-q"]]


def submit() -> Result:
    """Enqueue one no-op."""
    return no_op()


def submit_fire() -> None:
    """Enqueue one no-op whose result nobody awaits."""
    no_op()


def submit_keyed(key: int, seq: int) -> Result:
    """Enqueue one keyed call."""
    return keyed(key, seq)


def wait(handle: Result, timeout: float) -> Any:
    """The task's result (blocking on BLPOP in slices, bounded)."""
    return common.wait_in_slices(
        lambda seconds: handle.get(blocking=True, timeout=seconds), timeout, (ResultTimeout,)
    )


def wait_kept(handle: Result, timeout: float) -> Any:
    """As :func:`wait`, but the result stays stored (``preserve=True``; Huey's default read
    deletes it): for the memory figures."""
    return common.wait_in_slices(
        lambda seconds: handle.get(blocking=True, timeout=seconds, preserve=True),
        timeout,
        (ResultTimeout,),
    )
