"""Pynenc: the pynenc-redis plugin and a PersistentProcessRunner with 2 processes.

(d) uses Pynenc's own ``running_concurrency=KEYS`` (with ``reroute_on_concurrency_control=True``,
so that blocked calls wait instead of being dropped, which is Pynenc's default).
"""

from __future__ import annotations

import time
from typing import Any

from pynenc import ConcurrencyControlType, PynencBuilder
from pynenc.invocation import DistributedInvocation

from systems import common

REQUIREMENTS = ["pynenc==0.1.1", "pynenc-redis==0.1.5"]
DISTRIBUTIONS = ["pynenc", "pynenc-redis", "redis"]
KEYED_MECHANISM = (
    "running_concurrency=KEYS, key_arguments=('key',), reroute_on_concurrency_control=True"
)
NOTES = [
    "PersistentProcessRunner(num_processes=2): long-lived processes (ProcessRunner forks one "
    "per invocation)",
    "runner_tuning() at its documented defaults (10 ms loop and result-poll sleeps; the config "
    "defaults are 100 ms)",
    "cached_status_time=0.01 (default 0.1 s: a handle re-reads a non-final status at most every "
    "100 ms, which alone sets a 100 ms floor on every round trip)",
    "(d): reroute_on_concurrency_control=True (the default drops a blocked call)",
    "logging level warning",
]

app = (
    PynencBuilder()
    .app_id("bench_compare")
    .redis(url=common.redis_url())
    .persistent_process_runner(num_processes=2)
    .runner_tuning()
    .custom_config(cached_status_time=0.01)
    .logging_level("warning")
    .build()
)


@app.task
def no_op() -> int:
    """Do nothing."""
    return 0


@app.task(
    running_concurrency=ConcurrencyControlType.KEYS,
    key_arguments=("key",),
    reroute_on_concurrency_control=True,
)
def keyed(key: int, seq: int) -> int:
    """(d): one call of ``key`` at a time, across both processes."""
    common.count_attempt()
    return common.keyed_body(key, seq)


def worker_commands(python: str) -> list[list[str]]:
    """One ``pynenc runner start`` (its PersistentProcessRunner spawns the 2 processes)."""
    return [[python, "-m", "pynenc", "--app", "systems.pynenc.app", "runner", "start"]]


def submit() -> DistributedInvocation[Any, Any]:
    """Register one no-op invocation."""
    return no_op()


submit_fire = submit


def submit_keyed(key: int, seq: int) -> DistributedInvocation[Any, Any]:
    """Register one keyed call."""
    return keyed(key, seq)


def wait(handle: DistributedInvocation[Any, Any], timeout: float) -> Any:
    """``handle.result`` (the same wait loop as Pynenc's own) with a deadline added."""
    deadline = time.monotonic() + timeout
    if not handle.status.is_final():
        app.orchestrator.waiting_for_results(None, [handle.invocation_id])
    while not handle.status.is_final():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"invocation {handle.invocation_id} not final after {timeout} s")
        app.runner.waiting_for_results(None, [handle.invocation_id])
    return handle.result
