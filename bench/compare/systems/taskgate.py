"""taskgate: the Redis backend and its ProcessRunner (2 processes x 1 thread).

Installed editable from this repository, so every run measures the working tree's code.
"""

from __future__ import annotations

from collections.abc import Callable
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


FEATURE_KEYS = 100  # the keyed limit's keys, as in the two-limit figure
PRIORITIES = 10  # the priority workload cycles through 0..9
TINY_DELAY_SECONDS = 0.001  # delay 0 is a plain call; any positive delay goes through SCHEDULED

# Generous on purpose: the two-limit row measures what admitting through two budgets and a rate
# window costs, not waiting for them (as workload (f) of bench/throughput.py).
shared_limit = app.limit("bench-shared", concurrency=1000, rate="1000000/s")
keyed_limit = app.limit("bench-keyed", concurrency=2, key="key")


@app.task(limits=[shared_limit, keyed_limit])
def limited_no_op(key: int) -> int:
    """A no-op admitted through two limits, one of them keyed by ``key``."""
    return 0


@app.task(running_concurrency=ConcurrencyControlType.KEYS, key_arguments=("key",))
def keyed_no_op(key: int) -> int:
    """A no-op with one running call per ``key`` (the hot-key row uses one key only)."""
    return 0


@app.task
def gate() -> int:
    """Hold a worker until released (see ``common.gate_body``)."""
    return common.gate_body()


def feature_calls() -> dict[str, Callable[[int], Invocation[Any]]]:
    """Call shapes set beside the plain call end to end; ``plain`` first is the baseline."""
    delayed = no_op.with_options(delay=TINY_DELAY_SECONDS)
    prioritized = [no_op.with_options(priority=p) for p in range(PRIORITIES)]
    return {
        "plain": lambda seq: no_op(),
        "limits2": lambda seq: limited_no_op(seq % FEATURE_KEYS),
        "delayed": lambda seq: delayed(),
        "priority": lambda seq: prioritized[seq % PRIORITIES](),
    }


def hot_key_calls() -> dict[str, Callable[[int], Invocation[Any]]]:
    """The uncontrolled no-op, then a KEYS task whose calls all have key 0."""
    return {"uncontrolled": lambda seq: no_op(), "hot_key": lambda seq: keyed_no_op(0)}


def submit_gate() -> Invocation[Any]:
    """Register one gate call."""
    return gate()


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
