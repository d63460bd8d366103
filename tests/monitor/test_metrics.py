"""``GET /metrics``: ``taskgate_`` metrics with the right values, from counters; every
backend."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from taskgate import App, Invocation, InvocationStatus
from taskgate.monitor import create_monitor_app
from tests.conftest import WAIT, running, wait_for_status
from tests.monitor.support import BASE_URL, LOOPBACK_CLIENT, announce, counters

S = InvocationStatus


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_counts_queues_and_runners(app: App, monitor: TestClient) -> None:
    @app.task
    def add(a: int) -> int:
        return a

    add(1)
    add(2)
    announce(app, "runner-a")
    announce(app, "runner-b")
    values = samples(monitor)
    assert values[("taskgate_invocations", (("status", "registered"), ("task", add.task_id)))] == 2
    assert values[("taskgate_queue_depth", (("queue", "default"),))] == 2
    assert values[("taskgate_runners", ())] == 2
    assert all(name.startswith("taskgate_") for name, _ in values)


def total(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of the samples of ``name`` that carry ``labels`` (whatever their others)."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in values.items() if n == name and wanted <= set(found))


def test_run_counters_and_duration_histogram_per_runner(app: App, monitor: TestClient) -> None:
    """Each runner's counters are a series of their own (label ``runner_id``): a runner that
    stops ends its series instead of making a sum over runners go down."""
    announce(app, "runner-a", tasks={"tasks.a": counters(2, 1, [0.003, 0.2, 7.0])})
    announce(app, "runner-b", tasks={"tasks.a": counters(1, 0, [0.2])})
    values = samples(monitor)
    a = (("runner_id", "runner-a"), ("task", "tasks.a"))
    b = (("runner_id", "runner-b"), ("task", "tasks.a"))
    assert values[("taskgate_runs_total", (("outcome", "success"), *a))] == 2
    assert values[("taskgate_runs_total", (("outcome", "failed"), *a))] == 1
    assert values[("taskgate_runs_total", (("outcome", "success"), *b))] == 1
    bucket = "taskgate_run_duration_seconds_bucket"
    assert values[(bucket, (("le", "0.005"), *a))] == 1
    assert values[(bucket, (("le", "0.1"), *a))] == 1
    assert values[(bucket, (("le", "0.25"), *a))] == 2  # cumulative
    assert values[(bucket, (("le", "10.0"), *a))] == 3
    assert values[(bucket, (("le", "+Inf"), *a))] == 3
    assert values[(bucket, (("le", "0.25"), *b))] == 1
    assert values[("taskgate_run_duration_seconds_count", a)] == 3
    assert abs(values[("taskgate_run_duration_seconds_sum", a)] - 7.203) < 1e-9
    assert total(values, "taskgate_run_duration_seconds_count", task="tasks.a") == 4

    app.backend.forget_runner("runner-b")  # it stops: its series end, runner-a's stay
    values = samples(monitor)
    assert values[("taskgate_runs_total", (("outcome", "success"), *a))] == 2
    assert total(values, "taskgate_runs_total", runner_id="runner-b") == 0


def test_limit_slots_held_waiting_and_capacity(app: App, monitor: TestClient) -> None:
    gate = threading.Event()
    limit = app.limit("api", concurrency=1, key="tenant")

    @app.task(limits=[limit])
    def call(tenant: str) -> None:
        gate.wait(WAIT)

    with running(app.runner):
        first = call("acme")
        wait_for_status(first, S.RUNNING)
        second = call("acme")
        wait_for_status(second, S.CONCURRENCY_CONTROLLED)
        third = call("zenith")
        wait_for_status(third, S.RUNNING)
        fourth = call("zenith")
        wait_for_status(fourth, S.CONCURRENCY_CONTROLLED)
        values = samples(monitor)
        # Per limit, summed over its key values: one series per limit, however many values.
        labels = (("limit", "api"),)
        assert values[("taskgate_limit_slots_held", labels)] == 2
        assert values[("taskgate_limit_waiting", labels)] == 2
        assert values[("taskgate_limit_capacity", labels)] == 1
        limit_series = [found for name, found in values if name.startswith("taskgate_limit_")]
        assert all(dict(found).keys() == {"limit"} for found in limit_series)
        gate.set()
        second.get_result(WAIT)
        fourth.get_result(WAIT)


def test_the_monitor_registry_is_its_own(app: App, monitor: TestClient) -> None:
    from prometheus_client import REGISTRY

    monitor.get("/metrics")
    assert REGISTRY.get_sample_value("taskgate_runners") is None


def test_a_real_runners_counts_reach_metrics_and_the_overview(
    make_app: Callable[..., App],
) -> None:
    # A short lease: the runner announces its counters at every renewal (a third of it).
    app = make_app(lease_seconds=0.6)

    @app.task
    def maybe(fail: bool) -> None:
        if fail:
            raise ValueError("no")

    calls = [maybe(False), maybe(False), maybe(True)]
    with (
        running(app.runner),
        TestClient(create_monitor_app(app), base_url=BASE_URL, client=LOOPBACK_CLIENT) as client,
    ):
        for call in calls:
            _settle(call)
        deadline = time.monotonic() + WAIT
        while total(samples(client), "taskgate_runs_total", outcome="failed") != 1:
            assert time.monotonic() < deadline, "the runner's counters never reached /metrics"
            time.sleep(0.05)
        values = samples(client)
        assert total(values, "taskgate_runs_total", outcome="success", task=maybe.task_id) == 2
        assert total(values, "taskgate_run_duration_seconds_count", task=maybe.task_id) == 3
        throughput = client.get("/api/overview").json()["throughput"]
        assert sum(m["finished"] for m in throughput) == 3
        assert sum(m["failed"] for m in throughput) == 1


def _settle(call: Invocation[None]) -> None:
    """Wait until ``call`` is final, whatever its outcome."""
    with contextlib.suppress(ValueError):
        call.get_result(WAIT)
