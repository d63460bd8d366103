"""``GET /metrics``: Prometheus text computed on each scrape from the backend's counters.

A custom collector in its own registry (never prometheus_client's global one, so two monitors
in one process, or an app that exports its own metrics, never collide). Each scrape makes
three reads: ``stats()`` (counts by task and status, queue depth; the monitor's shared read,
see :mod:`taskgate.monitor.stats_cache`), ``budget_usage()`` with the
overrides (via ``app.limits()``) and ``runner_infos()`` (run counters and duration histograms
each runner keeps since it started); it never scans invocations.

Run counters (``taskgate_runs_total``, ``taskgate_run_duration_seconds``) are each live runner's
own, labelled ``runner_id``: every series only grows while its runner lives and ends when it
stops (a sum over runners would drop then, and look like a reset of every task's counter). Sum
them in queries: ``sum by (task) (rate(taskgate_runs_total[5m]))``. A restarted runner has a new
id, so a new series.

Limit gauges are per limit, summed over its key values: a label per key value (a customer id,
say) would make one series per value ever seen, without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from taskgate.app import App
from taskgate.record import DURATION_BUCKETS, BackendStats, RunnerInfo

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class TaskgateCollector(Collector):
    """The ``taskgate_*`` metrics of one app, read from its backend at each scrape.

    Args:
        app: The app whose store is read.
        read_stats: Reads the store's stats; ``app.backend.stats`` by default.
    """

    def __init__(self, app: App, read_stats: Callable[[], BackendStats] | None = None) -> None:
        self.app = app
        self.read_stats = read_stats or app.backend.stats

    def collect(self) -> Iterator[Metric]:
        """Every metric family, computed now (see the module doc for what is read)."""
        backend = self.app.backend
        stats = self.read_stats()
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
            "Invocations waiting for a budget of a limit, by limit (all its key values).",
            labels=["limit"],
        )
        held = GaugeMetricFamily(
            "taskgate_limit_slots_held",
            "Slots of a limit held by running invocations, by limit (all its key values).",
            labels=["limit"],
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
            waiting.add_metric([info.name], info.waiting)
            held.add_metric([info.name], info.slots_held)
        yield waiting
        yield held
        yield capacity


def run_metrics(infos: list[RunnerInfo]) -> Iterator[Metric]:
    """``taskgate_runs_total{runner_id,task,outcome}`` and the
    ``taskgate_run_duration_seconds{runner_id,task}`` histogram: each runner's own counters
    (buckets made cumulative here)."""
    runs = CounterMetricFamily(
        "taskgate_runs",
        "Runs ended, by runner, task and outcome (each runner counts since it started).",
        labels=["runner_id", "task", "outcome"],
    )
    durations = HistogramMetricFamily(
        "taskgate_run_duration_seconds",
        "How long runs took, by runner and task.",
        labels=["runner_id", "task"],
    )
    bounds = [*(repr(bound) for bound in DURATION_BUCKETS), "+Inf"]
    for info in sorted(infos, key=lambda info: info.runner_id):
        for task, counters in sorted(info.tasks.items()):
            for outcome, count in sorted(counters.outcomes.items()):
                runs.add_metric([info.runner_id, task, outcome], count)
            counts = [*counters.duration_counts[: len(bounds)]]
            counts += [0] * (len(bounds) - len(counts))
            cumulative: list[tuple[str, float]] = []
            running_total = 0
            for bound, count in zip(bounds, counts, strict=True):
                running_total += count
                cumulative.append((bound, running_total))
            durations.add_metric(
                [info.runner_id, task], cumulative, sum_value=counters.duration_sum
            )
    yield runs
    yield durations


def metrics_registry(
    app: App, read_stats: Callable[[], BackendStats] | None = None
) -> CollectorRegistry:
    """A registry of its own holding only :class:`TaskgateCollector` for ``app``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskgateCollector(app, read_stats))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the Prometheus text format."""
    return generate_latest(registry)
