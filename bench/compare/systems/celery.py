"""Celery: Redis broker and Redis result backend, one worker with ``-c 2 --pool prefork``.

Celery has no per-key exclusion, so (d) runs without one ("no mechanism").
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.result import AsyncResult

from systems import common

REQUIREMENTS = ["celery[redis]==5.7.0"]
DISTRIBUTIONS = ["celery", "kombu", "redis"]
KEYED_MECHANISM = "none"
NOTES = [
    "(c) uses a task with ignore_result=True: with results on, every send also subscribes to "
    "the result channel",
    "worker log level WARNING; prefetch, acks and gossip/mingle/heartbeat left at defaults",
]

app = Celery("bench", broker=common.redis_url(), backend=common.redis_url())
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task
def no_op() -> int:
    """Do nothing."""
    return 0


@app.task(ignore_result=True)
def no_op_fire() -> None:
    """Do nothing; no result is stored or subscribed to."""


@app.task
def keyed(key: int, seq: int) -> int:
    """(d) without any mechanism: calls of one key may overlap."""
    common.count_attempt()
    return common.keyed_body(key, seq)


def worker_commands(python: str) -> list[list[str]]:
    """One worker with 2 prefork child processes."""
    return [
        [
            python,
            *("-m", "celery", "-A", "systems.celery", "worker"),
            *("-c", "2", "--pool", "prefork", "--loglevel", "WARNING"),
        ]
    ]


def submit() -> AsyncResult:
    """Send one no-op."""
    return no_op.delay()


def submit_fire() -> None:
    """Send one no-op whose result nobody awaits."""
    no_op_fire.delay()


def submit_keyed(key: int, seq: int) -> AsyncResult:
    """Send one keyed call."""
    return keyed.delay(key, seq)


def wait(handle: AsyncResult, timeout: float) -> Any:
    """The task's result (blocking, bounded)."""
    return handle.get(timeout=timeout)
