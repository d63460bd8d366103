"""Running concurrency (API.md section 4, U1-U4) through the public API, on every backend."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.errors import ConcurrencyControlledError
from taskgate.runner.base import Runner

CC = ConcurrencyControlType
S = InvocationStatus
WAIT = 15.0
RunRunner = Callable[[Runner], Any]
WaitStatus = Callable[[Any, InvocationStatus], None]


class Gauge:
    """Counts how many task bodies run at once, per key, and remembers the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.order: list[Any] = []

    def enter(self, key: str, label: Any = None) -> None:
        with self._lock:
            self.active[key] += 1
            self.peak[key] = max(self.peak[key], self.active[key])
            self.order.append(label)

    def leave(self, key: str) -> None:
        with self._lock:
            self.active[key] -= 1


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_u1_never_more_than_the_limit_per_key_while_keys_run_in_parallel(
    make_app: Callable[..., App], run_runner: RunRunner, limit: int
) -> None:
    app = make_app(threads=8)
    gauge = Gauge()
    # Each key's first `limit` bodies meet at a barrier: it only trips if `limit` run at once.
    barriers = {key: threading.Barrier(limit) for key in "ab"}

    @app.task(running_concurrency=CC.KEYS, key_arguments=("key",), running_limit=limit)
    def work(key: str, n: int) -> int:
        gauge.enter(key)
        try:
            if n < limit:
                barriers[key].wait(WAIT)
            time.sleep(0.002)  # simulated work: widens the window a violation would show in
        finally:
            gauge.leave(key)
        return n

    invocations = [work(key, n) for n in range(12) for key in "ab"]
    with run_runner(app.runner):
        results = [i.get_result(WAIT) for i in invocations]
    assert sorted(results) == sorted(n for n in range(12) for _ in "ab")
    assert gauge.peak == {"a": limit, "b": limit}


def test_u1_task_scope_serialises_every_call(app: App, run_runner: RunRunner) -> None:
    intervals: list[tuple[float, float]] = []

    @app.task(running_concurrency=CC.TASK)
    def nap() -> None:
        start = time.monotonic()
        time.sleep(0.01)
        intervals.append((start, time.monotonic()))

    invocations = [nap() for _ in range(10)]
    with run_runner(app.runner):
        for invocation in invocations:
            invocation.get_result(WAIT)
    intervals.sort()
    assert len(intervals) == 10
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(intervals))


def test_u1_arguments_scope_separates_only_equal_arguments(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=4)
    gauge = Gauge()
    both_running = threading.Barrier(2)

    @app.task(running_concurrency=CC.ARGUMENTS)
    def per_args(x: int, n: int = 0) -> None:
        gauge.enter(f"{x}-{n}")
        try:
            if n == 0:
                both_running.wait(WAIT)  # x=1 and x=2 run at the same time
            time.sleep(0.002)
        finally:
            gauge.leave(f"{x}-{n}")

    invocations = [per_args(1), per_args(2)] + [per_args(3, n=1) for _ in range(6)]
    with run_runner(app.runner):
        for invocation in invocations:
            invocation.get_result(WAIT)
    assert gauge.peak["3-1"] == 1


def test_u2_parked_invocations_wait_in_order_without_holding_threads(
    make_app: Callable[..., App], run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    app = make_app(threads=2)
    started, release = threading.Event(), threading.Event()
    order: list[int] = []

    @app.task(running_concurrency=CC.KEYS, key_arguments=("key",))
    def job(key: str, n: int) -> int:
        order.append(n)
        if n == 0:
            started.set()
            release.wait(WAIT)
        return n

    holder = job("k", 0)
    with run_runner(app.runner):
        assert started.wait(WAIT)
        parked = [job("k", n) for n in range(1, 5)]
        for invocation in parked:
            wait_status(invocation, S.CONCURRENCY_CONTROLLED)
        blocked = parked[0].blocked_by()
        assert blocked is not None and blocked.holders == (holder.invocation_id,)
        assert job.task_id in blocked.scope_key
        # One thread is busy with the holder; four parked invocations hold none, so another
        # key still runs on the second thread.
        assert job("other", 99).get_result(WAIT) == 99
        release.set()
        assert [i.get_result(WAIT) for i in parked] == [1, 2, 3, 4]
    assert order == [0, 99, 1, 2, 3, 4]
    assert parked[0].blocked_by() is None
    history = [t.status for t in parked[0].history]
    assert history == [S.REGISTERED, S.CONCURRENCY_CONTROLLED, S.RUNNING, S.SUCCESS]


def test_u3_dropping_when_blocked(app: App, run_runner: RunRunner, wait_status: WaitStatus) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task(running_concurrency=CC.TASK, reroute_on_concurrency_control=False)
    def exclusive(n: int) -> int:
        started.set()
        release.wait(WAIT)
        return n

    holder = exclusive(0)
    with run_runner(app.runner):
        assert started.wait(WAIT)
        dropped = exclusive(1)
        with pytest.raises(ConcurrencyControlledError):
            dropped.get_result(WAIT)
        assert dropped.status is S.CONCURRENCY_CONTROLLED_FINAL
        release.set()
        assert holder.get_result(WAIT) == 0
        # With the slot free again, the next call runs.
        assert exclusive(2).get_result(WAIT) == 2


@pytest.mark.parametrize("ending", ["success", "failure", "retry"])
def test_u4_slot_is_released_when_the_holder_leaves_running(
    app: App, run_runner: RunRunner, wait_status: WaitStatus, ending: str
) -> None:
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    @app.task(running_concurrency=CC.TASK, max_retries=1, retry_for=(KeyError,))
    def holder_task(name: str) -> str:
        order.append(name)
        if name == "holder" and not started.is_set():
            started.set()
            release.wait(WAIT)
            if ending == "failure":
                raise ValueError("boom")
            if ending == "retry":
                raise KeyError("again")
        return name

    holder = holder_task("holder")
    with run_runner(app.runner):
        assert started.wait(WAIT)
        waiter = holder_task("waiter")
        wait_status(waiter, S.CONCURRENCY_CONTROLLED)
        release.set()
        assert waiter.get_result(WAIT) == "waiter"
        if ending == "failure":
            with pytest.raises(ValueError, match="boom"):
                holder.get_result(WAIT)
        else:
            assert holder.get_result(WAIT) == "holder"
    expected = ["holder", "waiter", "holder"] if ending == "retry" else ["holder", "waiter"]
    assert order == expected


def test_u4_slot_of_a_dead_runner_is_recovered(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(lease_seconds=0.3)

    @app.task(running_concurrency=CC.TASK)
    def guarded(n: int) -> int:
        return n

    lost = guarded(1)
    waiter = guarded(2)
    # A runner that claims the first invocation and dies: it never renews or finishes.
    [claim] = app.backend.claim("dead-runner", 1, 0.3, 0)
    assert claim.invocation_id == lost.invocation_id
    with run_runner(app.runner):
        assert lost.get_result(WAIT) == 1
        assert waiter.get_result(WAIT) == 2
    assert not app.backend.finish(claim.invocation_id, "dead-runner", claim.attempt, _ok(app))
    assert lost.attempt == 2
    runners = [t.runner_id for t in lost.history if t.status is S.RUNNING]
    assert runners[0] == "dead-runner" and runners[1] == app.runner.runner_id


def _ok(app: App) -> Any:
    from taskgate.record import Outcome, OutcomeKind

    return Outcome(OutcomeKind.SUCCESS, app.serializer.dumps("late"))


def test_a_retry_claimed_again_by_the_same_worker_keeps_its_lease(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    # The worker reports the failed attempt and claims the retry in one call; the retry used
    # to drop out of the runner's renewals, so its lease expired mid-run and it ran twice.
    app = make_app(threads=1, lease_seconds=0.3)
    runs: list[int] = []

    @app.task(running_concurrency=CC.TASK, max_retries=1, retry_for=(KeyError,))
    def flaky() -> int:
        attempt = flaky.invocation.attempt
        runs.append(attempt)
        if attempt == 1:
            raise KeyError("once")
        time.sleep(1.0)  # simulated work, longer than three leases
        return attempt

    invocation = flaky()
    with run_runner(app.runner):
        assert invocation.get_result(WAIT) == 2
    assert runs == [1, 2]
    assert invocation.history[-1].status is S.SUCCESS
    record = app.backend.get(invocation.invocation_id)
    assert record is not None and record.num_recoveries == 0
