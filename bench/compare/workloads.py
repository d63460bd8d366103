"""The load-independent workloads of ``agent.py``: Redis memory per invocation, the backlog
drain, and taskgate's own rows (hot key, two limits, delays, priorities).

Every function takes the :class:`agent.Agent` of the run (its system adapter, its Redis
client, its CPU sampling) and returns flat figures (name -> float) for ``results.json``.
Every wait is bounded; a timeout raises and ends the agent's run like any other failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from systems import common

if TYPE_CHECKING:
    from agent import Agent

DRAIN_TIMEOUT_SECONDS = 300.0  # the results of one memory batch or one gated drain
GATE_START_TIMEOUT_SECONDS = 30.0
GATES = 2  # one per worker process: both held, so the backlog waits in the queue


def used_memory(agent: Agent) -> int:
    """Redis ``used_memory`` in bytes."""
    return int(agent.redis.info("memory")["used_memory"])


# --- Redis memory per invocation ---------------------------------------------------------------


def memory_queued(agent: Agent, calls: int) -> tuple[list[Any], dict[str, float]]:
    """Enqueue ``calls`` no-ops with no worker running (after a FLUSHALL): the handles, and
    ``used_memory`` growth per queued invocation in bytes (``mem_queued_b``)."""
    agent.redis.flushall()
    agent.memory_baseline = used_memory(agent)
    handles = [agent.system.submit() for _ in range(calls)]
    queued = used_memory(agent) - agent.memory_baseline
    return handles, {"mem_queued_b": queued / calls}


def memory_finished(agent: Agent, handles: list[Any], timeout: float) -> dict[str, float]:
    """``used_memory`` growth per finished invocation, results kept (``mem_finished_b``).

    With the workers just started, first await the invocations :func:`memory_queued` left (so
    that every worker is up and has registered whatever it keeps about itself), then make as
    many calls again and await them: the growth over that second batch, divided by its calls,
    is what a finished invocation leaves in Redis, without the workers' own records. The
    adapter's ``wait_kept`` (``wait`` when it has none) reads each result without deleting it.
    """
    wait_kept = getattr(agent.system, "wait_kept", agent.system.wait)

    def await_all(batch: list[Any]) -> None:
        deadline = time.monotonic() + timeout
        for handle in batch:
            wait_kept(handle, max(0.001, deadline - time.monotonic()))

    await_all(handles)
    before = used_memory(agent)
    await_all([agent.system.submit() for _ in handles])
    return {"mem_finished_b": (used_memory(agent) - before) / len(handles)}


# --- the backlog drain -------------------------------------------------------------------------


def backlog_estimate(figures: dict[str, float], calls: int, e2e_sizes: list[int]) -> float | None:
    """Seconds a backlog of ``calls`` would take at this run's measured enqueue and end-to-end
    rates (enqueue, then drain at the end-to-end rate), or None when either is missing."""
    enqueue = figures.get("enqueue_rate")
    sizes = [size for size in e2e_sizes if f"e2e_{size}" in figures]
    if not enqueue or not sizes:
        return None
    drain = figures[f"e2e_{max(sizes)}"]
    return calls / enqueue + calls / drain


def backlog(agent: Agent, workers: common.Workers, calls: int) -> dict[str, float]:
    """Stop the workers, FLUSHALL, enqueue ``calls`` no-ops, then start the workers and await
    every result: ``backlog_rate`` in tasks/s from the workers' start to the last result
    (their start-up included, as a user restarting a fleet would see it), the enqueue rate,
    queued memory per invocation at that size, and CPU per task of the drain."""
    workers.stop()
    agent.redis.flushall()
    baseline = used_memory(agent)
    started = time.perf_counter()
    handles = [agent.system.submit() for _ in range(calls)]
    enqueue_s = time.perf_counter() - started
    figures = {
        "backlog_enqueue_rate": calls / enqueue_s,
        "backlog_mem_queued_b": (used_memory(agent) - baseline) / calls,
    }
    before = agent.cpu_sample(workers)
    started = time.perf_counter()
    workers.start()
    agent.wait_all(handles, timeout=DRAIN_TIMEOUT_SECONDS * 3)
    drain_s = time.perf_counter() - started
    figures |= agent.cpu_per_task(before, workers, calls, "cpu_backlog")
    figures["backlog_rate"] = calls / drain_s
    return figures


# --- taskgate's own rows -------------------------------------------------------------------------


def feature_rows(agent: Agent, calls: int) -> dict[str, float]:
    """End to end (as (a)) for each call shape of the adapter's ``feature_calls()``: tasks/s
    (``feat_<name>``) and CPU per task (``cpu_feat_<name>_<group>``).

    The first shape (the plain call, the baseline) runs both first and last, and its figures
    are the mean of the two, so that a drift of the machine during the rows biases no side.
    """
    shapes = list(agent.system.feature_calls().items())
    runs: dict[str, list[dict[str, float]]] = {}
    for name, call in [*shapes, shapes[0]]:
        before = agent.cpu_sample(agent.workers)
        started = time.perf_counter()
        handles = [call(seq) for seq in range(calls)]
        agent.wait_all(handles, DRAIN_TIMEOUT_SECONDS)
        run = {f"feat_{name}": calls / (time.perf_counter() - started)}
        run |= agent.cpu_per_task(before, agent.workers, calls, f"cpu_feat_{name}")
        runs.setdefault(name, []).append(run)
    return {
        key: sum(run[key] for run in name_runs) / len(name_runs)
        for name_runs in runs.values()
        for key in name_runs[0]
    }


def gated_drain(
    agent: Agent, call: Callable[[int], Any], calls: int, name: str
) -> dict[str, float]:
    """Drain a backlog of ``calls`` made by ``call`` while the workers are busy: seconds.

    Both worker processes first run a gate task that waits for a release key, so the backlog
    queues behind them with every worker already up; the clock starts when the gates are
    released and stops at the last result. Worker start-up and the enqueueing are outside.
    Returns ``hot_<name>`` (tasks/s) and the CPU per task over the same span
    (``cpu_hot_<name>_<group>``).
    """
    agent.redis.delete(common.GATE_STARTED_KEY, common.GATE_RELEASE_KEY)
    gates = [agent.system.submit_gate() for _ in range(GATES)]
    deadline = time.monotonic() + GATE_START_TIMEOUT_SECONDS
    while int(agent.redis.get(common.GATE_STARTED_KEY) or 0) < GATES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {GATES} gate tasks did not both start")
        time.sleep(0.01)
    handles = [call(seq) for seq in range(calls)]
    before = agent.cpu_sample(agent.workers)
    started = time.perf_counter()
    agent.redis.set(common.GATE_RELEASE_KEY, 1)
    agent.wait_all(handles, DRAIN_TIMEOUT_SECONDS)
    figures = {f"hot_{name}": calls / (time.perf_counter() - started)}
    figures |= agent.cpu_per_task(before, agent.workers, calls, f"cpu_hot_{name}")
    agent.wait_all(gates, DRAIN_TIMEOUT_SECONDS)
    return figures


def hot_key(agent: Agent, calls: int) -> dict[str, float]:
    """A backlog of a KEYS task whose calls all share ONE key, and the same backlog of the
    uncontrolled no-op, each drained behind gates (:func:`gated_drain`): tasks/s and CPU per
    task of each."""
    figures: dict[str, float] = {}
    for name, call in agent.system.hot_key_calls().items():
        figures |= gated_drain(agent, call, calls, name)
    return figures
