"""RunMetrics: per-thread accumulators merged at snapshot time (taskgate/runner/metrics.py)."""

from __future__ import annotations

import threading
import time

import pytest

from taskgate.record import DURATION_BUCKETS, MINUTES_KEPT, Claim, OutcomeKind
from taskgate.runner import metrics as metrics_module
from taskgate.runner.metrics import RunMetrics

K = OutcomeKind


def claim(n: int) -> Claim:
    return Claim(f"inv-{n}", "tests.task", b"", 1, 0, 0)


def test_outcomes_durations_and_sums_are_counted_per_task() -> None:
    metrics = RunMetrics()
    counts = metrics.accumulator()
    # Durations fall in the bucket whose upper bound is the first >= them (Prometheus "le").
    for duration, kind in ((0.001, K.SUCCESS), (0.004, K.SUCCESS), (0.3, K.FAILED), (400, K.RETRY)):
        counts.finish("tests.a", kind, time.monotonic() - duration)
    counts.finish("tests.b", K.CANCELLED, time.monotonic())
    tasks, minutes = metrics.counters()
    a = tasks["tests.a"]
    assert a.outcomes == {"success": 2, "failed": 1, "retry": 1}
    expected = [0] * (len(DURATION_BUCKETS) + 1)
    expected[0] = 2  # 0.001 and 0.004 (<= 0.005)
    expected[DURATION_BUCKETS.index(0.5)] = 1
    expected[-1] = 1  # past the last bound
    assert list(a.duration_counts) == expected
    assert a.duration_sum == pytest.approx(400.305, abs=0.01)
    assert tasks["tests.b"].outcomes == {"cancelled": 1}
    [minute] = minutes
    assert (minute.finished, minute.failed) == (5, 1)
    assert minute.minute == int(time.time() // 60) or minute.minute == int(time.time() // 60) - 1


def test_accumulators_of_many_threads_add_up_and_retired_ones_stay_counted() -> None:
    metrics = RunMetrics()

    def work(n: int) -> None:
        counts = metrics.accumulator()
        for i in range(1000):
            counts.finish("tests.task", K.SUCCESS, counts.begin(claim(i)))
        if n % 2:
            metrics.retire(counts)  # a stand-in that ended

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tasks, minutes = metrics.counters()
    assert tasks["tests.task"].outcomes == {"success": 6000}
    assert sum(tasks["tests.task"].duration_counts) == 6000
    assert sum(m.finished for m in minutes) == 6000
    assert metrics.running() == ()


def test_what_runs_is_shown_with_its_wall_clock_start() -> None:
    metrics = RunMetrics()
    worker, loop = metrics.accumulator(), metrics.accumulator()
    before = time.time()
    worker.begin(claim(1))
    loop.running["inv-2"] = (claim(2), time.monotonic())
    entries = metrics.running()
    assert [e.invocation_id for e in entries] == ["inv-1", "inv-2"]
    assert all(before - 0.1 <= e.started_at <= time.time() + 0.1 for e in entries)
    worker.finish("tests.task", K.SUCCESS, worker.started)
    assert [e.invocation_id for e in metrics.running()] == ["inv-2"]


def test_only_the_last_minutes_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = RunMetrics()
    counts = metrics.accumulator()
    clock = [1_000_000.0]
    monkeypatch.setattr(metrics_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(metrics_module.time, "time", lambda: clock[0])
    counts._wall_offset = 0.0
    metrics._wall_offset = 0.0
    for _ in range(MINUTES_KEPT + 5):
        counts.finish("tests.task", K.FAILED, clock[0])
        clock[0] += 60
    clock[0] -= 60
    _, minutes = metrics.counters()
    assert len(minutes) == MINUTES_KEPT
    assert [m.minute for m in minutes] == sorted(m.minute for m in minutes)
    assert minutes[-1].minute == int(clock[0] // 60)
    assert all((m.finished, m.failed) == (1, 1) for m in minutes)


def test_a_description_carries_the_runner_and_its_counters() -> None:
    metrics = RunMetrics()
    counts = metrics.accumulator()
    counts.finish("tests.task", K.SUCCESS, counts.begin(claim(1)))
    info = metrics.describe("runner-1", "thread", 4, frozenset({"b", "a"}), 123.0)
    assert (info.runner_id, info.kind, info.threads, info.queues) == (
        "runner-1",
        "thread",
        4,
        ("a", "b"),
    )
    assert info.started_at == 123.0 and info.tasks["tests.task"].outcomes == {"success": 1}
    assert type(info).from_json(info.to_json()) == info
