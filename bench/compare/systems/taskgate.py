"""taskgate: the Redis backend and its ProcessRunner (2 processes x 1 thread).

Installed editable from this repository, so every run measures the working tree's code.
"""

from __future__ import annotations

from typing import Any

from systems import common
from taskgate import App, ConcurrencyControlType, Invocation

REQUIREMENTS = ["-e", "{repo}[redis]"]
DISTRIBUTIONS = ["taskgate", "redis", "hiredis"]
KEYED_MECHANISM = "running_concurrency=KEYS, key_arguments=('key',) (waits, no retries)"
NOTES = [
    "runner log level WARNING",
    "otherwise defaults: handing new calls to waiting runners and reading results ahead are "
    "built in, not settings",
]

app = App("bench-compare", backend=common.redis_url())


@app.task
def no_op() -> int:
    """Do nothing."""
    return 0


@app.task(running_concurrency=ConcurrencyControlType.KEYS, key_arguments=("key",))
def keyed(key: int, seq: int) -> int:
    """(d): one call of ``key`` at a time, across both processes."""
    common.count_attempt()
    return common.keyed_body(key, seq)


def worker_commands(python: str) -> list[list[str]]:
    """One ``taskgate runner start`` with a 2-process ProcessRunner."""
    return [
        [
            python,
            *("-m", "taskgate", "runner", "start", "--app", "systems.taskgate:app"),
            *("--runner", "ProcessRunner", "--processes", "2", "--threads", "1"),
            *("--log-level", "WARNING"),
        ]
    ]


def submit() -> Invocation[Any]:
    """Register one no-op invocation."""
    return no_op()


submit_fire = submit


def submit_keyed(key: int, seq: int) -> Invocation[Any]:
    """Register one call of the keyed task."""
    return keyed(key, seq)


def wait(handle: Invocation[Any], timeout: float) -> Any:
    """The invocation's result (blocking, bounded)."""
    return handle.get_result(timeout=timeout)
