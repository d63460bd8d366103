"""The budget path of the backend contract (base.py, "Budgets (limits)"), on every backend: the
cases the Redis backend was built against (test_budget_contract.py and test_budgets.py have more).

Records are built by hand with ``plan.budgets``: admission all or none, waiting order,
fairness, rate windows and their timed wake-ups, overrides, what ``blocked_by``, ``stats`` and
``budget_usage`` report, and that releasing (finish, retry, hand-back, recovery) frees every
slot and wakes the next waiter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

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

NewRecord = Callable[..., InvocationRecord]
RUNNER = "runner-a"
LEASE = 30.0
WAIT = 15.0
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")
RETRY = Outcome(OutcomeKind.RETRY, b"error")

A = Budget("limit a", "a", concurrency=1)
B = Budget("limit b", "b", concurrency=1)


def with_budgets(
    new_record: NewRecord, *budgets: Budget, drop: bool = False, priority: int = 0
) -> InvocationRecord:
    record = new_record(priority=priority)
    record.plan = ConcurrencyPlan(
        drop_when_blocked=drop, budgets=tuple(sorted(budgets, key=lambda b: b.key))
    )
    return record


def register(backend: Backend, new_record: NewRecord, *budgets: Budget, **kw: object) -> str:
    record = with_budgets(new_record, *budgets, **kw)  # type: ignore[arg-type]
    backend.register(record)
    return record.invocation_id


def claim_ids(backend: Backend, max_count: int = 10) -> list[str]:
    return [c.invocation_id for c in backend.claim(RUNNER, max_count, LEASE, 0)]


def status(backend: Backend, invocation_id: str) -> S:
    record = backend.get(invocation_id)
    assert record is not None
    return record.status


def finish(backend: Backend, invocation_id: str, outcome: Outcome = DONE) -> None:
    record = backend.get(invocation_id)
    assert record is not None
    assert backend.finish(invocation_id, RUNNER, record.attempt, outcome)


def test_budgets_and_priority_are_stored_with_the_record(
    backend: Backend, new_record: NewRecord
) -> None:
    fair = Budget("limit f", "f", concurrency=2, rate=Rate(3, 1.5), fair="tenant='x'")
    record = with_budgets(new_record, A, fair, priority=3)
    backend.register(record)
    stored = backend.get(record.invocation_id)
    assert stored is not None
    assert stored.plan.budgets == (A, fair)
    assert stored.priority == 3
    assert stored.plan.running_key is None


def test_admission_takes_every_budget_or_none(backend: Backend, new_record: NewRecord) -> None:
    holder_b = register(backend, new_record, B)
    assert claim_ids(backend) == [holder_b]
    both = register(backend, new_record, A, B)
    only_a = register(backend, new_record, A)
    # 'both' is refused by b and takes nothing from a: 'only_a' gets a.
    assert claim_ids(backend) == [only_a]
    assert status(backend, both) is S.CONCURRENCY_CONTROLLED
    blocked = backend.blocked_by(both)
    assert blocked is not None
    assert (blocked.scope_key, blocked.holders, blocked.ready_at) == ("limit b", (holder_b,), None)
    finish(backend, holder_b)
    finish(backend, only_a)
    assert claim_ids(backend) == [both]
    assert status(backend, both) is S.RUNNING


def test_a_woken_waiter_parked_again_adds_no_history_entry(
    backend: Backend, new_record: NewRecord
) -> None:
    holder_a = register(backend, new_record, A)
    holder_b = register(backend, new_record, B)
    waiter = register(backend, new_record, A, B)
    assert claim_ids(backend) == [holder_a, holder_b]
    blocked = backend.blocked_by(waiter)
    assert blocked is not None and blocked.scope_key == "limit a"
    finish(backend, holder_a)  # woken by a, refused by b: parked again on b
    assert claim_ids(backend) == []
    blocked = backend.blocked_by(waiter)
    assert blocked is not None and blocked.scope_key == "limit b"
    finish(backend, holder_b)
    assert claim_ids(backend) == [waiter]
    record = backend.get(waiter)
    assert record is not None
    assert [t.status for t in record.history] == [S.REGISTERED, S.CONCURRENCY_CONTROLLED, S.RUNNING]


def test_a_blocked_invocation_that_drops_takes_nothing(
    backend: Backend, new_record: NewRecord
) -> None:
    holder = register(backend, new_record, B)
    assert claim_ids(backend) == [holder]
    dropped = register(backend, new_record, A, B, drop=True)
    only_a = register(backend, new_record, A)
    assert claim_ids(backend) == [only_a]
    assert status(backend, dropped) is S.CONCURRENCY_CONTROLLED_FINAL


def test_waiters_go_by_priority_then_call_order(backend: Backend, new_record: NewRecord) -> None:
    holder = register(backend, new_record, A)
    assert claim_ids(backend) == [holder]
    first = register(backend, new_record, A)
    urgent = register(backend, new_record, A, priority=5)
    last = register(backend, new_record, A)
    assert claim_ids(backend) == []
    order = []
    current = holder
    for _ in range(3):
        finish(backend, current)
        [current] = claim_ids(backend)
        order.append(current)
    assert order == [urgent, first, last]


def test_fair_waiters_take_turns_across_values(backend: Backend, new_record: NewRecord) -> None:
    def fair(value: str) -> Budget:
        return Budget("limit llm", "llm", concurrency=1, fair=f"tenant='{value}'")

    holder = register(backend, new_record, fair("a"))
    assert claim_ids(backend) == [holder]
    busy = [register(backend, new_record, fair("a")) for _ in range(4)]
    lone = register(backend, new_record, fair("b"))
    assert claim_ids(backend) == []
    order = []
    current = holder
    for _ in range(5):
        finish(backend, current)
        [current] = claim_ids(backend)
        order.append(current)
    # Round robin: the lone call of tenant b starts within the next two starts.
    assert order[:2] == [busy[0], lone]
    assert order[2:] == busy[1:]


def test_finish_retry_hand_back_and_recovery_free_every_slot(
    backend: Backend, new_record: NewRecord
) -> None:
    for release in ("retry", "release", "recover"):
        holder = register(backend, new_record, A, B)
        waiter_a = register(backend, new_record, A)
        waiter_b = register(backend, new_record, B)
        assert claim_ids(backend) == [holder]
        if release == "retry":
            finish(backend, holder, RETRY)
        elif release == "release":
            assert backend.release(holder, RUNNER, 1)
        else:
            assert backend.recover(now=time.time() + LEASE + 1) == [holder]
        claimed = set(claim_ids(backend))
        if release == "retry":  # retried at the tail: the waiters go first
            assert claimed == {waiter_a, waiter_b}
        else:  # first in line again: it takes both slots back
            assert claimed == {holder}
            finish(backend, holder)
            assert set(claim_ids(backend)) == {waiter_a, waiter_b}
        for invocation_id in claimed | {waiter_a, waiter_b}:
            if status(backend, invocation_id) is S.RUNNING:
                finish(backend, invocation_id)
        if release == "retry":
            assert claim_ids(backend) == [holder]
            finish(backend, holder)
        assert backend.budget_usage() == []


def test_capacity_a_woken_waiter_leaves_goes_to_the_next(
    backend: Backend, new_record: NewRecord
) -> None:
    holder_a = register(backend, new_record, A)
    assert claim_ids(backend) == [holder_a]
    needs_both = register(backend, new_record, A, B)
    needs_a = register(backend, new_record, A)
    assert claim_ids(backend) == []
    holder_b = register(backend, new_record, B)
    assert claim_ids(backend) == [holder_b]
    finish(backend, holder_a)
    # 'needs_both' is woken by a, refused by b; a's slot must not sit idle while 'needs_a' waits.
    assert claim_ids(backend) == [needs_a]
    blocked = backend.blocked_by(needs_both)
    assert blocked is not None and blocked.scope_key == "limit b"
    finish(backend, holder_b)
    finish(backend, needs_a)
    assert claim_ids(backend) == [needs_both]


def test_a_rate_admits_count_starts_per_window(backend: Backend, new_record: NewRecord) -> None:
    rate = Budget("limit api", "api", rate=Rate(2, 60.0))
    ids = [register(backend, new_record, rate) for _ in range(3)]
    assert claim_ids(backend) == ids[:2]
    for invocation_id in ids[:2]:
        finish(backend, invocation_id)
    # Finishing frees no rate token: the third waits for the window.
    assert claim_ids(backend) == []
    blocked = backend.blocked_by(ids[2])
    assert blocked is not None
    assert blocked.scope_key == "limit api" and blocked.holders == ()
    assert blocked.ready_at is not None
    assert time.time() + 55 < blocked.ready_at < time.time() + 61
    [usage] = backend.budget_usage("api")
    assert (usage.key, usage.limit, usage.holders, usage.waiting) == ("limit api", "api", (), 1)
    assert usage.window_starts == 2
    assert usage.oldest_wait is not None and usage.oldest_wait <= time.time() + 1


def test_a_blocked_claim_returns_when_the_window_admits(
    backend: Backend, new_record: NewRecord
) -> None:
    rate = Budget("limit api", "api", rate=Rate(1, 0.5))
    first = register(backend, new_record, rate)
    second = register(backend, new_record, rate)
    assert claim_ids(backend) == [first]
    blocked = backend.blocked_by(second)
    assert blocked is not None and blocked.ready_at is not None
    # Nobody polls: the claim below is the only call, and it returns with the second.
    claimed = backend.claim(RUNNER, 1, LEASE, WAIT)
    returned = time.time()
    assert [c.invocation_id for c in claimed] == [second]
    assert returned >= blocked.ready_at - 0.01
    # Well before the 2 s a blocked claim would wait without knowing when the rate admits.
    assert returned < blocked.ready_at + 1.0


def test_an_idle_claim_wakes_for_a_rate_wait_added_later(
    backend: Backend, new_record: NewRecord
) -> None:
    rate = Budget("limit api", "api", rate=Rate(1, 0.5))
    claimed: list[str] = []
    started = threading.Event()

    def idle_claim() -> None:
        started.set()
        claimed.extend(c.invocation_id for c in backend.claim("idle", 1, LEASE, WAIT))

    first = register(backend, new_record, rate)
    assert claim_ids(backend) == [first]
    waiter = threading.Thread(target=idle_claim)
    waiter.start()
    started.wait(WAIT)
    second = register(backend, new_record, rate)
    waiter.join(WAIT)
    assert claimed == [second]


def test_overrides_raise_and_lower_a_limit(backend: Backend, new_record: NewRecord) -> None:
    holder = register(backend, new_record, A)
    waiters = [register(backend, new_record, A) for _ in range(3)]
    assert claim_ids(backend) == [holder]
    backend.set_limit_override("a", LimitOverride(3, None))
    assert backend.limit_overrides() == {"a": LimitOverride(3, None)}
    # Raised: two waiters are admitted at once, the third still waits.
    assert claim_ids(backend) == waiters[:2]
    assert status(backend, waiters[2]) is S.CONCURRENCY_CONTROLLED
    # Lowered: nothing running is touched, nothing more starts until below the new value.
    backend.set_limit_override("a", LimitOverride(2, Rate(10, 1.0)))
    assert {status(backend, i) for i in [holder, *waiters[:2]]} == {S.RUNNING}
    finish(backend, holder)
    assert claim_ids(backend) == []
    finish(backend, waiters[0])
    assert claim_ids(backend) == [waiters[2]]
    backend.reset_limit_override("a")
    backend.reset_limit_override("never-set")
    assert backend.limit_overrides() == {}


def test_usage_stats_and_blocked_by_name_holders_and_waiters(
    backend: Backend, new_record: NewRecord
) -> None:
    own_scope = Budget("tests.task#customer=1", None, concurrency=1)
    holder = register(backend, new_record, A, own_scope)
    waiters = [register(backend, new_record, A) for _ in range(2)]
    scope_waiter = register(backend, new_record, own_scope)
    assert claim_ids(backend) == [holder]
    stats = backend.stats()
    assert stats.parked_by_key == {"limit a": 2, "tests.task#customer=1": 1}
    blocked = backend.blocked_by(scope_waiter)
    assert blocked is not None
    assert (blocked.scope_key, blocked.holders) == ("tests.task#customer=1", (holder,))
    [usage] = backend.budget_usage()  # a task's own scope is no limit: left out
    assert usage.key == "limit a" and usage.waiting == 2
    [held] = usage.holders
    assert (held.invocation_id, held.runner_id) == (holder, RUNNER)
    assert held.lease_expires_at is not None and held.lease_expires_at > time.time()
    assert usage.oldest_wait is not None and usage.window_starts == 0
    assert backend.budget_usage("b") == []
    assert all(status(backend, i) is S.CONCURRENCY_CONTROLLED for i in waiters)


def test_purge_forgets_budgets_and_overrides(backend: Backend, new_record: NewRecord) -> None:
    rate = Budget("limit api", "api", concurrency=1, rate=Rate(1, 60.0))
    holder = register(backend, new_record, rate)
    register(backend, new_record, rate)
    assert claim_ids(backend) == [holder]
    backend.set_limit_override("api", LimitOverride(1, None))
    backend.purge()
    assert backend.budget_usage() == []
    assert backend.limit_overrides() == {}
    assert backend.stats().parked_by_key == {}
    fresh = register(backend, new_record, rate)
    assert claim_ids(backend) == [fresh]
