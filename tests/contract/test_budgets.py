"""The budget path of the backend contract (the "Budgets" section of backends/base.py), driven
directly with hand-built records, on every backend."""

from __future__ import annotations

import time
import uuid

import pytest

from taskgate.backends.base import Backend
from taskgate.record import (
    Budget,
    ConcurrencyPlan,
    InvocationRecord,
    LimitOverride,
    Outcome,
    OutcomeKind,
    Rate,
)
from taskgate.status import InvocationStatus as S

RUNNER = "runner-a"
LEASE = 30.0
WAIT = 15.0
SUCCESS = Outcome(OutcomeKind.SUCCESS, b"result")
RETRY = Outcome(OutcomeKind.RETRY, b"error")

A = Budget("limit a", "a", concurrency=1)
B = Budget("limit b", "b", concurrency=1)


def record(
    *budgets: Budget, priority: int = 0, drop: bool = False, reg: str | None = None
) -> InvocationRecord:
    plan = ConcurrencyPlan(
        registration_key=reg,
        drop_when_blocked=drop,
        budgets=tuple(sorted(budgets, key=lambda b: b.key)),
    )
    return InvocationRecord(
        invocation_id=f"inv-{uuid.uuid4().hex[:10]}",
        task_id="tests.task",
        arguments=b"args",
        plan=plan,
        max_retries=5,
        priority=priority,
    )


def registered(backend: Backend, *records: InvocationRecord) -> list[str]:
    for r in records:
        assert backend.register(r).created
    return [r.invocation_id for r in records]


def claim(backend: Backend, max_count: int = 10, timeout: float = 0) -> dict[str, int]:
    """Claimed ids with their attempts."""
    return {c.invocation_id: c.attempt for c in backend.claim(RUNNER, max_count, LEASE, timeout)}


def finish(backend: Backend, claimed: dict[str, int], invocation_id: str) -> None:
    assert backend.finish(invocation_id, RUNNER, claimed[invocation_id], SUCCESS)


def status(backend: Backend, invocation_id: str) -> S:
    found = backend.get(invocation_id)
    assert found is not None
    return found.status


def holders(backend: Backend, key: str) -> list[str]:
    usage = {u.key: u for u in backend.budget_usage()}
    return [h.invocation_id for h in usage[key].holders] if key in usage else []


def test_admission_takes_every_budget_or_none(backend: Backend) -> None:
    [on_b] = registered(backend, record(B))
    claimed = claim(backend)
    assert list(claimed) == [on_b]
    [both] = registered(backend, record(A, B))
    assert claim(backend) == {}
    assert status(backend, both) is S.CONCURRENCY_CONTROLLED
    assert holders(backend, "limit a") == []  # refused by b: it took nothing from a
    [on_a] = registered(backend, record(A))
    claimed |= claim(backend)
    assert on_a in claimed  # a was free: admitted although `both` waits
    finish(backend, claimed, on_b)
    assert claim(backend) == {}  # woken by b, refused by a: parked again, still holding nothing
    assert status(backend, both) is S.CONCURRENCY_CONTROLLED
    assert holders(backend, "limit b") == []
    finish(backend, claimed, on_a)
    claimed = claim(backend)
    assert list(claimed) == [both]
    assert holders(backend, "limit a") == [both] and holders(backend, "limit b") == [both]
    history = backend.get(both)
    assert history is not None
    # A woken waiter that parks again adds no history entry.
    assert [t.status for t in history.history] == [
        S.REGISTERED,
        S.CONCURRENCY_CONTROLLED,
        S.RUNNING,
    ]
    finish(backend, claimed, both)
    assert backend.budget_usage() == []


def test_waiters_are_ordered_by_priority_then_call_order(backend: Backend) -> None:
    [holder] = registered(backend, record(A))
    claimed = claim(backend)
    low1, high, low2 = registered(backend, record(A), record(A, priority=5), record(A))
    assert claim(backend) == {}
    order = []
    current = holder
    for _ in range(3):
        finish(backend, claimed, current)
        claimed = claim(backend)
        [current] = claimed
        order.append(current)
    assert order == [high, low1, low2]


def test_fair_values_take_turns(backend: Backend) -> None:
    [holder] = registered(backend, record(A))
    claimed = claim(backend)
    fair_a = Budget("limit a", "a", concurrency=1, fair="t='a'")
    fair_b = Budget("limit a", "a", concurrency=1, fair="t='b'")
    a1, a2, a3, b1 = registered(
        backend, record(fair_a), record(fair_a), record(fair_a), record(fair_b)
    )
    assert claim(backend) == {}
    order = []
    current = holder
    for _ in range(4):
        finish(backend, claimed, current)
        claimed = claim(backend)
        [current] = claimed
        order.append(current)
    assert order == [a1, b1, a2, a3]


def test_a_rate_waiter_is_claimable_at_its_instant_without_polling(backend: Backend) -> None:
    rate = Budget("limit r", "r", rate=Rate(1, 0.3))
    [first] = registered(backend, record(rate))
    claimed = claim(backend)
    assert list(claimed) == [first]
    [second] = registered(backend, record(rate))
    assert claim(backend) == {}
    assert status(backend, second) is S.CONCURRENCY_CONTROLLED
    blocked = backend.blocked_by(second)
    assert blocked is not None and blocked.scope_key == "limit r" and blocked.holders == ()
    assert blocked.ready_at is not None and blocked.ready_at > time.time() - 0.001
    [usage] = backend.budget_usage("r")
    assert (usage.window_starts, usage.waiting, usage.holders) == (1, 1, ())
    # Nothing else happens: the blocked claim itself wakes when the window admits a start.
    assert list(claim(backend, timeout=WAIT)) == [second]
    assert time.time() >= blocked.ready_at - 0.001


def test_every_start_counts_retries_included(backend: Backend) -> None:
    rate = Budget("limit r", "r", rate=Rate(2, 60.0))
    [only] = registered(backend, record(rate))
    claimed = claim(backend)
    assert backend.finish(only, RUNNER, claimed[only], RETRY)
    claimed = claim(backend)
    assert backend.finish(only, RUNNER, claimed[only], RETRY)
    assert claim(backend) == {}
    assert status(backend, only) is S.CONCURRENCY_CONTROLLED
    assert backend.budget_usage()[0].window_starts == 2


def test_an_override_applies_at_once_and_wakes_waiters(backend: Backend) -> None:
    [holder] = registered(backend, record(A))
    claimed = claim(backend)
    [waiter] = registered(backend, record(A))
    assert claim(backend) == {}
    backend.set_limit_override("a", LimitOverride(2, None))
    assert backend.limit_overrides() == {"a": LimitOverride(2, None)}
    claimed |= claim(backend)
    assert waiter in claimed
    backend.set_limit_override("a", LimitOverride(1, None))  # lowered: both keep running
    assert sorted(holders(backend, "limit a")) == sorted([holder, waiter])
    backend.reset_limit_override("a")
    assert backend.limit_overrides() == {}
    [third] = registered(backend, record(A))
    assert claim(backend) == {}
    finish(backend, claimed, holder)
    assert claim(backend) == {}  # one holder left, declared concurrency 1: still waits
    finish(backend, claimed, waiter)
    assert list(claim(backend)) == [third]


def test_an_override_of_a_rate_wakes_rate_waiters(backend: Backend) -> None:
    rate = Budget("limit r", "r", rate=Rate(1, 60.0))
    registered(backend, record(rate))
    claim(backend)
    [waiter] = registered(backend, record(rate))
    assert claim(backend) == {}
    backend.set_limit_override("r", LimitOverride(None, Rate(5, 60.0)))
    assert list(claim(backend)) == [waiter]


def test_a_hand_back_frees_every_budget_and_goes_first(backend: Backend) -> None:
    [holder] = registered(backend, record(A, B))
    claimed = claim(backend)
    [waiter] = registered(backend, record(A))
    assert claim(backend) == {}
    assert backend.release(holder, RUNNER, claimed[holder])
    assert list(claim(backend)) == [holder]
    assert status(backend, waiter) is S.CONCURRENCY_CONTROLLED


def test_recovering_a_dead_runner_frees_its_budgets(backend: Backend) -> None:
    [holder] = registered(backend, record(A, B))
    assert list(backend.claim("dead-runner", 1, LEASE, 0)) != []
    [waiter] = registered(backend, record(B))
    assert claim(backend) == {}
    assert backend.recover_runner("dead-runner") == [holder]
    claimed = claim(backend)
    assert list(claimed) == [holder]  # first in line again
    finish(backend, claimed, holder)
    assert list(claim(backend)) == [waiter]


def test_a_refused_record_that_drops_takes_nothing(backend: Backend) -> None:
    [holder] = registered(backend, record(B))
    claim(backend)
    [dropped] = registered(backend, record(A, B, drop=True, reg="k"))
    assert claim(backend) == {}
    assert status(backend, dropped) is S.CONCURRENCY_CONTROLLED_FINAL
    assert holders(backend, "limit a") == [] and holders(backend, "limit b") == [holder]
    assert backend.register(record(A, reg="k")).created  # its registration key was freed


def test_stats_count_budget_waiters_and_purge_clears_everything(backend: Backend) -> None:
    keyed = Budget("limit t#t='x'", "t", concurrency=1)
    registered(backend, record(keyed))
    claim(backend)
    registered(backend, record(keyed), record(keyed))
    assert claim(backend) == {}
    assert backend.stats().parked_by_key == {"limit t#t='x'": 2}
    backend.set_limit_override("t", LimitOverride(1, None))
    backend.purge()
    assert backend.stats().parked_by_key == {}
    assert backend.budget_usage() == []
    assert backend.limit_overrides() == {}


@pytest.mark.parametrize("limit", ["a", None])
def test_budget_usage_filters_by_limit(backend: Backend, limit: str | None) -> None:
    registered(backend, record(A), record(B))
    claim(backend)
    keys = [u.key for u in backend.budget_usage(limit)]
    assert keys == (["limit a"] if limit else ["limit a", "limit b"])


# --- lost wake-ups found in review: capacity passed on, rate waiters re-armed -------------

C = Budget("limit c", "c", concurrency=1)


def test_a_woken_waiter_refused_by_an_earlier_budget_passes_its_capacity_on(
    backend: Backend,
) -> None:
    """W waits on C (the later budget), is woken, then refused by B (earlier in key order):
    Y, waiting on C alone, must be woken since C is free."""
    [h] = registered(backend, record(C))
    held = claim(backend)
    assert list(held) == [h]
    [w] = registered(backend, record(B, C))
    assert claim(backend) == {}  # W parks on C (B free, C full)
    [y] = registered(backend, record(C))
    assert claim(backend) == {}  # Y parks on C after W
    [z] = registered(backend, record(B))
    zc = claim(backend)
    assert list(zc) == [z]  # Z holds B
    finish(backend, held, h)  # C free: wakes W
    got: dict[str, int] = {}
    deadline = time.time() + 2
    while time.time() < deadline and y not in got:
        got.update(claim(backend, max_count=1, timeout=0.2))
    assert w not in got
    assert y in got, (status(backend, y), backend.blocked_by(y), backend.budget_usage())


RATE_R = Budget("limit r", "r", rate=Rate(2, 0.5))


def test_rate_waiters_never_stall_when_claims_come_one_at_a_time(backend: Backend) -> None:
    """Six invocations under 2 starts per 0.5 s, claimed one at a time with pauses (a runner
    whose threads are busy): all start within a few windows, none finishing."""
    ids = registered(backend, *(record(RATE_R) for _ in range(6)))
    started = dict(claim(backend))
    assert len(started) == 2
    time.sleep(0.6)
    started.update(claim(backend, max_count=1))  # a timed wake-up wakes 2, one is claimed
    time.sleep(0.6)  # the next one fires while the other woken waiter is unclaimed
    deadline = time.time() + 4
    while time.time() < deadline and len(started) < 6:
        started.update(claim(backend, max_count=1, timeout=0.3))
    left = [i for i in ids if i not in started]
    assert not left, [(status(backend, i), backend.blocked_by(i)) for i in left]


def test_rate_waiters_left_behind_start_after_the_others_finish(backend: Backend) -> None:
    """The same, then every started invocation finishes: do the left ones start now?"""
    ids = registered(backend, *(record(RATE_R) for _ in range(6)))
    started = dict(claim(backend))
    time.sleep(0.6)
    started.update(claim(backend, max_count=1))
    time.sleep(0.6)
    deadline = time.time() + 2
    while time.time() < deadline and len(started) < 6:
        started.update(claim(backend, max_count=1, timeout=0.3))
    stalled = [i for i in ids if i not in started]
    for invocation_id in list(started):
        finish(backend, started, invocation_id)
    deadline = time.time() + 3
    while time.time() < deadline and len(started) < 6:
        started.update(claim(backend, max_count=1, timeout=0.3))
    left = [i for i in ids if i not in started]
    assert not left, (stalled, left)
