"""``GET /metrics``: Prometheus text computed on each scrape from the backend's counters.

A custom collector in its own registry (never prometheus_client's global one, so two monitors
in one process, or an app that exports its own metrics, never collide). Each scrape makes
three reads: ``stats()`` (counts by task and status, queue depth), ``budget_usage()`` with the
overrides (via ``app.limits()``) and ``runner_infos()`` (run counters and duration histograms
each runner keeps since it started); it never scans invocations.

Run counters (``taskgate_runs_total``, ``taskgate_run_duration_seconds``) are sums over the live
runners: a runner that stops takes its counts with it, which Prometheus' ``rate()`` and
``increase()`` treat as a counter reset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from taskgate.app import App
from taskgate.cli.render import split_scope_key
from taskgate.record import DURATION_BUCKETS, RunnerInfo

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class TaskgateCollector(Collector):
    """The ``taskgate_*`` metrics of one app, read from its backend at each scrape."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        """Every metric family, computed now (see the module doc for what is read)."""
        backend = self.app.backend
        stats = backend.stats()
        invocations = GaugeMetricFamily(
            "taskgate_invocations",
            "Invocations stored, by task and status.",
            labels=["task", "status"],
        )
        for (task, status), count in sorted(stats.by_task_and_status.items()):
            invocations.add_metric([task, status.value], count)
        yield invocations

        depth = GaugeMetricFamily(
            "taskgate_queue_depth",
            "Invocations ready to run, waiting for a runner, by queue.",
            labels=["queue"],
        )
        for queue, count in sorted(stats.queue_depth.items()):
            depth.add_metric([queue], count)
        yield depth
        yield from self._limits()

        infos = backend.runner_infos()
        runners = GaugeMetricFamily("taskgate_runners", "Live runners.")
        runners.add_metric([], len({*stats.runners, *(info.runner_id for info in infos)}))
        yield runners
        yield from run_metrics(infos)

    def _limits(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "taskgate_limit_waiting",
            "Invocations waiting for a budget of a limit, by limit and key values.",
            labels=["limit", "key"],
        )
        held = GaugeMetricFamily(
            "taskgate_limit_slots_held",
            "Slots of a limit held by running invocations, by limit and key values.",
            labels=["limit", "key"],
        )
        capacity = GaugeMetricFamily(
            "taskgate_limit_capacity",
            "Effective concurrency of a limit (per key value for a keyed limit), override "
            "applied; limits without a concurrency are left out.",
            labels=["limit"],
        )
        for info in self.app.limits():
            if info.concurrency is not None:
                capacity.add_metric([info.name], info.concurrency)
            for budget in info.budgets:
                key = split_scope_key(budget.key).values or ""
                waiting.add_metric([info.name, key], budget.waiting)
                held.add_metric([info.name, key], len(budget.holders))
        yield waiting
        yield held
        yield capacity


def run_metrics(infos: list[RunnerInfo]) -> Iterator[Metric]:
    """``taskgate_runs_total{task,outcome}`` and the ``taskgate_run_duration_seconds{task}``
    histogram, summed over the runners' counters (buckets made cumulative here)."""
    outcomes: dict[tuple[str, str], int] = defaultdict(int)
    buckets: dict[str, list[int]] = {}
    sums: dict[str, float] = defaultdict(float)
    for info in infos:
        for task, counters in info.tasks.items():
            for outcome, count in counters.outcomes.items():
                outcomes[(task, outcome)] += count
            totals = buckets.setdefault(task, [0] * (len(DURATION_BUCKETS) + 1))
            for index, count in enumerate(counters.duration_counts[: len(totals)]):
                totals[index] += count
            sums[task] += counters.duration_sum
    runs = CounterMetricFamily(
        "taskgate_runs", "Runs ended, by task and outcome.", labels=["task", "outcome"]
    )
    for (task, outcome), count in sorted(outcomes.items()):
        runs.add_metric([task, outcome], count)
    yield runs
    durations = HistogramMetricFamily(
        "taskgate_run_duration_seconds", "How long runs took, by task.", labels=["task"]
    )
    for task, counts in sorted(buckets.items()):
        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), counts, strict=True):
            total += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
        durations.add_metric([task], cumulative, sum_value=sums[task])
    yield durations


def metrics_registry(app: App) -> CollectorRegistry:
    """A registry of its own holding only :class:`TaskgateCollector` for ``app``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskgateCollector(app))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the Prometheus text format."""
    return generate_latest(registry)
