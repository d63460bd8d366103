"""Limits (API.md section 8) through the public API, on every backend.

Task bodies record what they see (how many run at once, when they start); start instants come
from each invocation's history (the RUNNING transition is written in the admission step, on the
store's clock), so rate assertions do not depend on how fast a thread picks up its claim.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, Invocation, InvocationStatus
from taskgate.errors import ConcurrencyControlledError
from taskgate.record import LimitOverride, Rate
from taskgate.runner.base import Runner

CC = ConcurrencyControlType
S = InvocationStatus
WAIT = 15.0
RunRunner = Callable[[Runner], Any]
WaitStatus = Callable[[Any, InvocationStatus], None]


class Gauge:
    """How many bodies run at once per label; the peak, and the count each body saw on entry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.entries = 0
        self.order: list[Any] = []

    def enter(self, *labels: str, item: Any = None) -> int:
        """Count a body in under every label; returns how many bodies entered before it."""
        with self._lock:
            for label in labels:
                self.active[label] += 1
                self.peak[label] = max(self.peak[label], self.active[label])
            self.order.append(item)
            self.entries += 1
            return self.entries - 1

    def leave(self, *labels: str) -> None:
        with self._lock:
            for label in labels:
                self.active[label] -= 1


def start_time(invocation: Invocation[Any]) -> float:
    """When the invocation was admitted (its last RUNNING transition), on the store's clock."""
    return [t.timestamp for t in invocation.history if t.status is S.RUNNING][-1]


def test_a_shared_limit_caps_two_tasks_together_and_is_reached(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=8)
    shared = app.limit("shared", concurrency=3)
    gauge = Gauge()
    # The first three bodies meet at a barrier: it only trips if three run at once.
    barrier = threading.Barrier(3)

    def body(n: int) -> int:
        entered = gauge.enter("shared")
        try:
            if entered < 3:
                barrier.wait(WAIT)
            time.sleep(0.002)  # simulated work: widens the window a violation would show in
        finally:
            gauge.leave("shared")
        return n

    @app.task(limits=[shared])
    def first(n: int) -> int:
        return body(n)

    @app.task(limits=["shared"])
    def second(n: int) -> int:
        return body(n)

    invocations = [task(n) for n in range(12) for task in (first, second)]
    with run_runner(app.runner):
        results = [i.get_result(WAIT) for i in invocations]
    assert sorted(results) == sorted(n for n in range(12) for _ in "ab")
    assert gauge.peak["shared"] == 3


def test_per_key_and_global_limits_stack(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=8)
    per_tenant = app.limit("tenant", concurrency=1, key="tenant")
    total = app.limit("total", concurrency=3)
    gauge = Gauge()
    barrier = threading.Barrier(3)  # three tenants run at once: the global cap is reached

    @app.task(limits=[per_tenant, total])
    def work(tenant: str, n: int) -> int:
        entered = gauge.enter("total", tenant)
        try:
            if entered < 3:
                barrier.wait(WAIT)
            time.sleep(0.002)
        finally:
            gauge.leave("total", tenant)
        return n

    invocations = [work(tenant, n) for n in range(5) for tenant in "abcd"]
    with run_runner(app.runner):
        for invocation in invocations:
            invocation.get_result(WAIT)
    assert gauge.peak["total"] == 3
    assert all(gauge.peak[tenant] == 1 for tenant in "abcd")


def test_the_tasks_own_running_scope_is_one_more_limit(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=8)
    wide = app.limit("wide", concurrency=5)
    gauge = Gauge()

    @app.task(limits=[wide], running_concurrency=CC.KEYS, key_arguments=("key",))
    def work(key: str, n: int) -> int:
        gauge.enter(key)
        try:
            time.sleep(0.002)
        finally:
            gauge.leave(key)
        return n

    invocations = [work(key, n) for n in range(6) for key in "ab"]
    with run_runner(app.runner):
        for invocation in invocations:
            invocation.get_result(WAIT)
    assert gauge.peak == {"a": 1, "b": 1}


def test_a_rate_limit_admits_at_most_m_starts_per_window(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=8)
    count, period = 4, 0.5
    limited = app.limit("partner", rate=f"{count}/{period}s")

    @app.task(limits=[limited])
    def call(n: int) -> int:
        return n

    invocations = [call(n) for n in range(3 * count)]
    with run_runner(app.runner):
        for invocation in invocations:
            invocation.get_result(WAIT)
    starts = sorted(start_time(i) for i in invocations)
    # Never more than `count` starts within any window of `period` (1 ms of float rounding).
    for earlier, later in zip(starts, starts[count:], strict=False):
        assert later - earlier >= period - 0.001, starts
    # Not much slower than the rate allows: three windows take about 2 periods (generous bound).
    assert starts[-1] - starts[0] < 2 * period + 5.0


def test_a_keyed_rate_limit_counts_each_key_on_its_own(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=8)
    limited = app.limit("per-key", rate="2/0.4s", key="api_key")

    @app.task(limits=[limited])
    def call(api_key: str, n: int) -> int:
        return n

    invocations = {key: [call(key, n) for n in range(4)] for key in "xy"}
    with run_runner(app.runner):
        for group in invocations.values():
            for invocation in group:
                invocation.get_result(WAIT)
    for group in invocations.values():
        starts = sorted(start_time(i) for i in group)
        assert starts[2] - starts[0] >= 0.4 - 0.001 and starts[3] - starts[1] >= 0.4 - 0.001


def test_opposite_limit_orders_never_deadlock(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=4)
    one = app.limit("one", concurrency=1)
    two = app.limit("two", concurrency=2)
    gauge = Gauge()

    def body(n: int) -> int:
        gauge.enter("one", "two")
        try:
            time.sleep(0.001)
        finally:
            gauge.leave("one", "two")
        return n

    @app.task(limits=[one, two])
    def forwards(n: int) -> int:
        return body(n)

    @app.task(limits=[two, one])
    def backwards(n: int) -> int:
        return body(n)

    @app.task(limits=[two])
    def only_two(n: int) -> int:
        return n

    invocations = [task(n) for n in range(40) for task in (forwards, backwards, only_two)]
    with run_runner(app.runner):
        results = [i.get_result(WAIT) for i in invocations]
    assert results == [n for n in range(40) for _ in range(3)]
    assert gauge.peak["one"] == 1


def test_fair_by_lets_a_lone_tenant_through_a_backlog(
    make_app: Callable[..., App], run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    app = make_app(threads=4)
    llm = app.limit("llm", concurrency=1, fair_by="tenant")
    started, release = threading.Event(), threading.Event()
    order: list[tuple[str, int]] = []

    @app.task(limits=[llm])
    def ask(tenant: str, n: int) -> None:
        order.append((tenant, n))
        if n == 0:
            started.set()
            release.wait(WAIT)

    holder = ask("big", 0)
    with run_runner(app.runner):
        assert started.wait(WAIT)
        backlog = [ask("big", n) for n in range(1, 9)]
        lone = ask("small", 1)
        for invocation in [*backlog, lone]:
            wait_status(invocation, S.CONCURRENCY_CONTROLLED)
        release.set()
        for invocation in [holder, *backlog, lone]:
            invocation.get_result(WAIT)
    assert order[0] == ("big", 0)
    assert ("small", 1) in order[1:3], order


def test_fair_by_takes_turns_when_several_slots_free_at_once(
    make_app: Callable[..., App], run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    # Four slots freeing together must go round robin too: a slot is handed to one waiter at a
    # time, so wake-ups never pile up in the queue ahead of earlier ones, out of turn.
    app = make_app(threads=8)
    llm = app.limit("llm", concurrency=4, fair_by="tenant")
    release = threading.Event()

    @app.task(limits=[llm])
    def ask(tenant: str, n: int) -> None:
        if tenant == "big" and n < 4:
            release.wait(WAIT)  # the four holders free their slots together

    with run_runner(app.runner):
        big = [ask("big", n) for n in range(16)]
        for invocation in big[:4]:
            wait_status(invocation, S.RUNNING)
        small = [ask("small", n) for n in range(2)]
        # Everything else waits for a slot before any is freed: the order is the limit's alone.
        for invocation in [*big[4:], *small]:
            wait_status(invocation, S.CONCURRENCY_CONTROLLED)
        release.set()
        for invocation in [*big, *small]:
            invocation.get_result(WAIT)
    last_small = max(start_time(i) for i in small)
    ahead = sum(start_time(i) < last_small for i in big)
    # The four holders, then one turn of each tenant per freed slot: big, small, big, small.
    assert ahead <= 4 + 2, f"{ahead} big invocations started before the small tenant's last"


def test_without_fair_by_waiters_run_first_come_first_served(
    make_app: Callable[..., App], run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    app = make_app(threads=4)
    gate = app.limit("gate", concurrency=1)
    started, release = threading.Event(), threading.Event()
    order: list[int] = []

    @app.task(limits=[gate])
    def work(n: int) -> None:
        order.append(n)
        if n == 0:
            started.set()
            release.wait(WAIT)

    holder = work(0)
    with run_runner(app.runner):
        assert started.wait(WAIT)
        waiting = []
        for n in range(1, 6):
            waiting.append(work(n))
            wait_status(waiting[-1], S.CONCURRENCY_CONTROLLED)
        release.set()
        for invocation in [holder, *waiting]:
            invocation.get_result(WAIT)
    assert order == [0, 1, 2, 3, 4, 5]


def test_overrides_raise_and_lower_a_limit_live(
    make_app: Callable[..., App], run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    app = make_app(threads=8)
    app.limit("pool", concurrency=1)
    release = threading.Event()
    gauge = Gauge()
    seen_on_entry: dict[int, int] = {}

    @app.task(limits=["pool"])
    def work(n: int) -> int:
        gauge.enter("pool")
        seen_on_entry[n] = gauge.active["pool"]
        try:
            release.wait(WAIT)
        finally:
            gauge.leave("pool")
        return n

    first = [work(n) for n in range(4)]
    with run_runner(app.runner):
        wait_status(first[0], S.RUNNING)
        for invocation in first[1:]:
            wait_status(invocation, S.CONCURRENCY_CONTROLLED)
        app.set_limit("pool", concurrency=4)  # raised: the three waiters are admitted at once
        for invocation in first:
            wait_status(invocation, S.RUNNING)
        [info] = app.limits()
        assert (info.name, info.concurrency, info.overridden, info.slots_held) == (
            "pool",
            4,
            True,
            4,
        )

        app.set_limit("pool", concurrency=2)  # lowered: running work is left alone
        later = [work(n) for n in range(4, 7)]
        for invocation in later:
            wait_status(invocation, S.CONCURRENCY_CONTROLLED)
        assert all(i.status is S.RUNNING for i in first)
        assert app.limits()[0].slots_held == 4
        release.set()
        assert [i.get_result(WAIT) for i in first + later] == list(range(7))
    # Every later body was admitted under the lowered limit: at most 2 ran when it entered.
    assert all(seen_on_entry[n] <= 2 for n in range(4, 7)), seen_on_entry
    app.reset_limit("pool")
    [info] = app.limits()
    assert (info.concurrency, info.overridden) == (1, False)


def test_an_override_of_the_rate_replaces_the_declared_one(app: App) -> None:
    app.limit("api", concurrency=2, rate="10/s")
    app.set_limit("api", rate="3/m")
    [info] = app.limits()
    assert (info.concurrency, info.rate, info.overridden) == (2, Rate(3, 60.0), True)
    assert app.backend.limit_overrides() == {"api": LimitOverride(None, Rate(3, 60.0))}
    app.reset_limit("api")
    app.reset_limit("api")  # nothing to reset: no error
    [info] = app.limits()
    assert (info.rate, info.overridden) == (Rate(10, 1.0), False)


def test_dropping_when_blocked_applies_to_limits(
    app: App, run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    started, release = threading.Event(), threading.Event()
    app.limit("solo", concurrency=1)

    @app.task(limits=["solo"], reroute_on_concurrency_control=False)
    def exclusive(n: int) -> int:
        if n == 0:
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
        assert exclusive(2).get_result(WAIT) == 2


def test_blocked_by_names_the_limit_and_its_holders(
    app: App, run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    started, release = threading.Event(), threading.Event()
    tenant = app.limit("tenant", concurrency=1, key="tenant_id")

    @app.task(limits=[tenant])
    def sync(tenant_id: str) -> None:
        started.set()
        release.wait(WAIT)

    holder = sync("42")
    with run_runner(app.runner):
        assert started.wait(WAIT)
        waiter = sync("42")
        wait_status(waiter, S.CONCURRENCY_CONTROLLED)
        blocked = waiter.blocked_by()
        assert blocked is not None
        assert blocked.scope_key == "limit tenant#tenant_id='42'"
        assert blocked.holders == (holder.invocation_id,)
        assert blocked.ready_at is None
        [info] = app.limits()
        assert (info.slots_held, info.waiting, info.key) == (1, 1, ("tenant_id",))
        [budget] = info.budgets
        assert budget.key == "limit tenant#tenant_id='42'"
        assert [h.invocation_id for h in budget.holders] == [holder.invocation_id]
        assert budget.holders[0].runner_id == app.runner.runner_id
        assert budget.oldest_wait is not None and budget.oldest_wait <= time.time() + 1
        assert info.oldest_wait == budget.oldest_wait
        assert app.backend.stats().parked_by_key == {"limit tenant#tenant_id='42'": 1}
        release.set()
        waiter.get_result(WAIT)
    assert waiter.blocked_by() is None


def test_blocked_by_a_rate_says_when_it_admits_again(
    app: App, run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    app.limit("slow", rate="1/60s")

    @app.task(limits=["slow"])
    def call(n: int) -> int:
        return n

    with run_runner(app.runner):
        first = call(0)
        first.get_result(WAIT)
        waiter = call(1)
        wait_status(waiter, S.CONCURRENCY_CONTROLLED)
        blocked = waiter.blocked_by()
        assert blocked is not None
        assert (blocked.scope_key, blocked.holders) == ("limit slow", ())
        assert blocked.ready_at is not None
        assert time.time() < blocked.ready_at <= start_time(first) + 60.0 + 0.001
        [info] = app.limits()
        assert (info.window_starts, info.waiting, info.slots_held) == (1, 1, 0)


def test_limits_lists_declared_overridden_and_unused_limits(app: App) -> None:
    app.limit("b-used-nowhere", concurrency=2, key=("x", "y"))
    app.limit("a-rate", rate="5/2.5s", fair_by="tenant")
    app.set_limit("c-declared-elsewhere", concurrency=7)
    infos = app.limits()
    assert [i.name for i in infos] == ["a-rate", "b-used-nowhere", "c-declared-elsewhere"]
    a, b, c = infos
    assert (a.rate, a.concurrency, a.key, a.overridden, a.declared) == (
        Rate(5, 2.5),
        None,
        (),
        False,
        True,
    )
    assert (b.concurrency, b.key, b.slots_held, b.waiting, b.window_starts) == (
        2,
        ("x", "y"),
        0,
        0,
        0,
    )
    assert (c.concurrency, c.rate, c.overridden, c.declared) == (7, None, True, False)


def test_a_retry_and_a_failure_release_every_budget(app: App, run_runner: RunRunner) -> None:
    app.limit("one", concurrency=1)
    app.limit("per-key", concurrency=1, key="key")
    attempts: dict[int, int] = defaultdict(int)

    @app.task(limits=["one", "per-key"], max_retries=1, retry_for=(KeyError,))
    def flaky(key: str, n: int) -> int:
        attempts[n] += 1
        if n % 3 == 0 and attempts[n] == 1:
            raise KeyError("again")
        if n % 3 == 1:
            raise ValueError("boom")
        return n

    invocations = [flaky(key, n) for n, key in zip(range(12), itertools.cycle("ab"), strict=False)]
    with run_runner(app.runner):
        for n, invocation in enumerate(invocations):
            if n % 3 == 1:
                with pytest.raises(ValueError):
                    invocation.get_result(WAIT)
            else:
                assert invocation.get_result(WAIT) == n
    assert all(info.slots_held == 0 and info.waiting == 0 for info in app.limits())
