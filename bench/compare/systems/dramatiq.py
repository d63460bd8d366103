"""Dramatiq: Redis broker, Results middleware with its RedisBackend, 2 processes x 1 thread.

(d) uses ``ConcurrentRateLimiter`` (limit 1 per key, Redis rate-limit backend). A call that finds
its key taken raises ``RateLimitExceeded``, and the Retries middleware re-enqueues it after a
backoff, so every call eventually runs; the attempt counter shows how many tries that took.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from dramatiq.rate_limits import ConcurrentRateLimiter
from dramatiq.rate_limits.backends import RedisBackend as RateLimitBackend
from dramatiq.results import Results, ResultTimeout
from dramatiq.results.backends import RedisBackend as ResultBackend

from systems import common

REQUIREMENTS = ["dramatiq[redis]==2.2.1"]
DISTRIBUTIONS = ["dramatiq", "redis"]
KEYED_MECHANISM = (
    "ConcurrentRateLimiter(limit=1) per key; RateLimitExceeded -> retry "
    "(max_retries=10000, backoff 10-100 ms)"
)
NOTES = [
    "--threads 1 (default 8), so that 2 processes run 2 tasks at a time like every other system",
    "(d): max_retries=10000, min_backoff=10 ms, max_backoff=100 ms on the keyed actor "
    "(defaults: 20 retries, 15 s minimum backoff)",
    "store_results=True only on actors whose results are awaited; logging at the CLI default",
]

broker = RedisBroker(url=common.redis_url())
result_backend = ResultBackend(url=common.redis_url())
broker.add_middleware(Results(backend=result_backend))
dramatiq.set_broker(broker)
limiter_backend = RateLimitBackend(url=common.redis_url())


@dramatiq.actor(store_results=True)
def no_op() -> int:
    """Do nothing."""
    return 0


@dramatiq.actor
def no_op_fire() -> None:
    """Do nothing; no result stored."""


@dramatiq.actor(store_results=True, max_retries=10_000, min_backoff=10, max_backoff=100)
def keyed(key: int, seq: int) -> int:
    """(d): one call of ``key`` at a time, or RateLimitExceeded (and a retry)."""
    common.count_attempt()
    mutex = ConcurrentRateLimiter(limiter_backend, f"bench-key-{key}", limit=1)
    with mutex.acquire():
        return common.keyed_body(key, seq)


def worker_commands(python: str) -> list[list[str]]:
    """One ``dramatiq`` master with 2 worker processes of 1 thread each."""
    return [[python, "-m", "dramatiq", "systems.dramatiq", "--processes", "2", "--threads", "1"]]


def submit() -> Message[Any]:
    """Send one no-op."""
    return no_op.send()


def submit_fire() -> None:
    """Send one no-op whose result nobody awaits."""
    no_op_fire.send()


def submit_keyed(key: int, seq: int) -> Message[Any]:
    """Send one keyed call."""
    return keyed.send(key, seq)


def wait(handle: Message[Any], timeout: float) -> Any:
    """The message's result (blocking in slices of whole seconds, bounded)."""

    def attempt(seconds: float) -> Any:
        milliseconds = max(1000, int(seconds * 1000))  # below 1 s it would not block at all
        return handle.get_result(backend=result_backend, block=True, timeout=milliseconds)

    return common.wait_in_slices(attempt, timeout, (ResultTimeout,))
