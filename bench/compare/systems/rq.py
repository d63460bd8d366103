"""RQ: two ``rq worker`` processes (the default forking ``Worker``) on one queue.

(d) uses ``RateLimit(key, concurrency=1)``, new in RQ 3.0: a job whose key is at its limit
waits in a rate-limited registry and is queued when the key frees, so nothing is retried.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue, RateLimit
from rq.job import Job
from rq.results import Result

from systems import common

REQUIREMENTS = ["rq==3.0.0"]
DISTRIBUTIONS = ["rq", "redis"]
KEYED_MECHANISM = "RateLimit(key, concurrency=1) at enqueue (RQ >= 3.0; waits, no retries)"
NOTES = [
    "the default Worker class (forks a work horse per job), with the task module imported before "
    "the fork (RQ's performance notes); workers run with --quiet",
]

QUEUE = "bench"
connection = Redis.from_url(common.redis_url())
queue = Queue(QUEUE, connection=connection)


def no_op() -> int:
    """Do nothing."""
    return 0


def keyed(key: int, seq: int) -> int:
    """(d): the rate limit given at enqueue keeps calls of one key apart."""
    common.count_attempt()
    return common.keyed_body(key, seq)


def worker_commands(python: str) -> list[list[str]]:
    """Two independent ``rq worker`` processes on the queue, this module imported up front.

    Preloading the task module before the fork is RQ's documented performance practice: the
    work horse forked for each job then finds it already imported.
    """
    preload = "import systems.rq, sys; from rq.cli import main; sys.exit(main())"
    command = [python, "-c", preload, "worker", "--url", common.redis_url(), "--quiet", QUEUE]
    return [command, command]


def submit() -> Job:
    """Enqueue one no-op."""
    return queue.enqueue(no_op)


submit_fire = submit


def submit_keyed(key: int, seq: int) -> Job:
    """Enqueue one keyed call under its key's rate limit."""
    return queue.enqueue(keyed, key, seq, rate_limit=RateLimit(f"bench-key-{key}", 1))


class NoResultYet(Exception):
    """A blocking read of the job's result stream ended empty."""


def wait(handle: Job, timeout: float) -> Any:
    """The job's return value (blocks on its result stream in slices of whole seconds)."""

    def attempt(seconds: float) -> Result:
        result = handle.latest_result(timeout=max(1, int(seconds)))
        if result is None:
            raise NoResultYet
        return result

    result = common.wait_in_slices(attempt, timeout, (NoResultYet,))
    if result.type != Result.Type.SUCCESSFUL:
        raise RuntimeError(f"job {handle.id} ended {result.type.name}: {result.exc_string}")
    return result.return_value
