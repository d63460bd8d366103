"""The budget path of the backend contract (limits, taskgate.backends.base "Budgets"), driven
directly with hand-built records, on every backend.

Budgets are built here as the core would compute them; the public API on top of them is tested
in test_limits.py.
"""

from __future__ import annotations

import itertools
import time

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

_ids = itertools.count()

A = Budget("limit a", "a", concurrency=1)
B = Budget("limit b", "b", concurrency=1)


def rec(*budgets: Budget, priority: int = 0, drop: bool = False) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"bud-{next(_ids)}",
        task_id="tests.limited",
        arguments=b"args",
        plan=ConcurrencyPlan(drop_when_blocked=drop, budgets=tuple(sorted(budgets, key=_key))),
        max_retries=3,
        priority=priority,
    )


def _key(budget: Budget) -> str:
    return budget.key


def register(backend: Backend, *records: InvocationRecord) -> list[str]:
    for record in records:
        assert backend.register(record).created
    return [record.invocation_id for record in records]


def claim_ids(backend: Backend, max_count: int = 10) -> list[str]:
    return [c.invocation_id for c in backend.claim(RUNNER, max_count, LEASE, 0)]


def finish(backend: Backend, invocation_id: str, outcome: Outcome = SUCCESS) -> None:
    record = backend.get(invocation_id)
    assert record is not None
    assert backend.finish(invocation_id, RUNNER, record.attempt, outcome)


def status(backend: Backend, invocation_id: str) -> S:
    record = backend.get(invocation_id)
    assert record is not None
    return record.status


def usage(backend: Backend, key: str) -> tuple[list[str], int]:
    """The holders and waiting count of one budget, from budget_usage()."""
    for budget in backend.budget_usage():
        if budget.key == key:
            return sorted(h.invocation_id for h in budget.holders), budget.waiting
    return [], 0


# --- admission: all or none ---------------------------------------------------------------------


def test_a_refused_admission_takes_nothing(backend: Backend) -> None:
    a_holder, both, b_user = register(backend, rec(A), rec(A, B), rec(B))
    # `both` is refused by A; had it kept B's slot, `b_user` could not run.
    assert claim_ids(backend) == [a_holder, b_user]
    assert status(backend, both) is S.CONCURRENCY_CONTROLLED
    assert backend.blocked_by(both) == ("limit a", (a_holder,), None)
    assert usage(backend, "limit a") == ([a_holder], 1)
    assert usage(backend, "limit b") == ([b_user], 0)
    # Woken by A, refused by B now: it waits on B, with no new history entry.
    finish(backend, a_holder)
    assert claim_ids(backend) == []
    assert backend.blocked_by(both) == ("limit b", (b_user,), None)
    record = backend.get(both)
    assert record is not None
    assert [t.status for t in record.history] == [S.REGISTERED, S.CONCURRENCY_CONTROLLED]
    finish(backend, b_user)
    assert claim_ids(backend) == [both]
    assert usage(backend, "limit a") == ([both], 0)
    assert usage(backend, "limit b") == ([both], 0)
    finish(backend, both)
    assert backend.budget_usage() == []


def test_a_budget_admits_up_to_its_concurrency(backend: Backend) -> None:
    shared = Budget("limit s", "s", concurrency=3)
    ids = register(backend, *(rec(shared) for _ in range(5)))
    assert claim_ids(backend) == ids[:3]
    assert backend.stats().parked_by_key == {"limit s": 2}
    finish(backend, ids[0])
    assert claim_ids(backend) == [ids[3]]


def test_drop_when_blocked_finishes_the_refused_invocation(backend: Backend) -> None:
    holder, dropped = register(backend, rec(A), rec(A, B, drop=True))
    assert claim_ids(backend) == [holder]
    assert status(backend, dropped) is S.CONCURRENCY_CONTROLLED_FINAL
    assert usage(backend, "limit b") == ([], 0)


def test_records_without_budgets_are_not_held_up_by_budgets(backend: Backend) -> None:
    holder, waiter = register(backend, rec(A), rec(A))
    plain = InvocationRecord("plain-" + holder, "tests.plain", b"", ConcurrencyPlan())
    register(backend, plain)
    assert claim_ids(backend) == [holder, plain.invocation_id]
    assert status(backend, waiter) is S.CONCURRENCY_CONTROLLED
    stored = backend.get(holder)
    assert stored is not None and stored.plan.budgets == (A,) and stored.priority == 0


# --- waiting order -------------------------------------------------------------------------------


def test_waiters_are_woken_by_priority_then_call_order(backend: Backend) -> None:
    [holder] = register(backend, rec(A))
    assert claim_ids(backend) == [holder]
    # Registered once the holder runs: the ready queue's own priority order is not tested here.
    first, second, urgent = register(backend, rec(A), rec(A), rec(A, priority=5))
    assert claim_ids(backend) == []
    order = []
    running = holder
    for _ in range(3):
        finish(backend, running)
        [running] = claim_ids(backend)
        order.append(running)
    assert order == [urgent, first, second]


def test_fair_values_are_woken_round_robin(backend: Backend) -> None:
    def fair(value: str) -> Budget:
        return Budget("limit llm", "llm", concurrency=1, fair=f"tenant_id='{value}'")

    holder = register(backend, rec(fair("a")))[0]
    backlog = register(backend, *(rec(fair("a")) for _ in range(4)))
    late = register(backend, rec(fair("b")))[0]
    assert claim_ids(backend) == [holder]
    order = []
    running = holder
    for _ in range(5):
        finish(backend, running)
        [running] = claim_ids(backend)
        order.append(running)
    # Tenant b's one call starts within the next two starts despite a's backlog.
    assert late in order[:2]
    assert [i for i in order if i != late] == backlog


# --- releases: retry, hand-back, recovery --------------------------------------------------------


def test_retry_frees_the_slots_for_the_waiters_first(backend: Backend) -> None:
    holder, waiter = register(backend, rec(A, B), rec(A, B))
    assert claim_ids(backend) == [holder]
    finish(backend, holder, RETRY)
    assert status(backend, holder) is S.RETRY
    assert claim_ids(backend) == [waiter]  # woken to the front, ahead of the retry
    assert status(backend, holder) is S.CONCURRENCY_CONTROLLED


def test_release_hands_back_first_in_line(backend: Backend) -> None:
    holder, waiter = register(backend, rec(A), rec(A))
    assert claim_ids(backend) == [holder]
    assert backend.release(holder, RUNNER, 1)
    assert usage(backend, "limit a")[0] == []
    assert claim_ids(backend) == [holder]
    assert status(backend, waiter) is S.CONCURRENCY_CONTROLLED
    finish(backend, holder)
    assert claim_ids(backend) == [waiter]


@pytest.mark.parametrize("how", ["lease", "runner"])
def test_recovery_frees_every_slot_of_a_dead_runner(backend: Backend, how: str) -> None:
    dead, waiter = register(backend, rec(A, B), rec(B))
    assert claim_ids(backend) == [dead]
    if how == "lease":
        assert backend.recover(now=time.time() + LEASE + 5) == [dead]
    else:
        assert backend.recover_runner(RUNNER) == [dead]
    assert claim_ids(backend) == [dead]  # first in line again
    finish(backend, dead)
    assert claim_ids(backend) == [waiter]


# --- rates and the timed structure ---------------------------------------------------------------


def test_a_rate_waiter_wakes_at_its_instant_without_a_release(backend: Backend) -> None:
    period = 0.3
    rated = Budget("limit r", "r", rate=Rate(2, period))
    ids = register(backend, *(rec(rated) for _ in range(3)))
    assert claim_ids(backend) == ids[:2]
    blocked = backend.blocked_by(ids[2])
    assert blocked is not None and blocked.scope_key == "limit r" and blocked.holders == ()
    first = backend.get(ids[0])
    assert first is not None and blocked.ready_at is not None
    started = first.history[-1].timestamp
    assert blocked.ready_at == pytest.approx(started + period, abs=0.05)
    assert [u.window_starts for u in backend.budget_usage("r")] == [2]
    # Nothing is released: the blocked claim itself picks the waiter up at its instant.
    [claim] = backend.claim(RUNNER, 1, LEASE, WAIT)
    assert claim.invocation_id == ids[2]
    third = backend.get(ids[2])
    assert third is not None and third.history[-1].timestamp >= blocked.ready_at - 0.001


@pytest.mark.parametrize("concurrency", [None, 10])
def test_a_rate_never_admits_more_than_count_starts_per_window(
    backend: Backend, concurrency: int | None
) -> None:
    # Without slots, no release ever wakes a waiter: every wake-up comes from the timed
    # structure, which must keep a wake-up for the waiters left after each one.
    rate = Rate(3, 0.25)
    rated = Budget("limit r", "r", concurrency=concurrency, rate=rate)
    ids = register(backend, *(rec(rated) for _ in range(10)))
    started: list[float] = []
    deadline = time.monotonic() + WAIT
    while len(started) < len(ids) and time.monotonic() < deadline:
        for claim in backend.claim(RUNNER, 10, LEASE, 1.0):
            record = backend.get(claim.invocation_id)
            assert record is not None
            started.append(record.history[-1].timestamp)
            finish(backend, claim.invocation_id)
    assert len(started) == len(ids)
    started.sort()
    for i in range(len(started) - rate.count):
        assert started[i + rate.count] - started[i] >= rate.period - 0.001


# --- overrides -----------------------------------------------------------------------------------


def test_raising_an_override_admits_waiters_at_once(backend: Backend) -> None:
    holder, *waiters = register(backend, *(rec(A) for _ in range(4)))
    assert claim_ids(backend) == [holder]
    backend.set_limit_override("a", LimitOverride(3, None))
    assert backend.limit_overrides() == {"a": LimitOverride(3, None)}
    assert claim_ids(backend) == waiters[:2]
    assert status(backend, waiters[2]) is S.CONCURRENCY_CONTROLLED
    # Lowering never touches running work; it applies from the next admission on.
    backend.set_limit_override("a", LimitOverride(1, None))
    finish(backend, holder)
    finish(backend, waiters[0])
    assert claim_ids(backend) == []
    finish(backend, waiters[1])
    assert claim_ids(backend) == [waiters[2]]
    backend.reset_limit_override("a")
    backend.reset_limit_override("a")  # nothing to reset: no error
    assert backend.limit_overrides() == {}


def test_an_override_applies_to_every_budget_of_its_limit_only(backend: Backend) -> None:
    def keyed(value: int) -> Budget:
        return Budget(f"limit t#tenant_id={value}", "t", concurrency=1)

    h1, w1, h2, w2, other_h, other_w = register(
        backend, rec(keyed(1)), rec(keyed(1)), rec(keyed(2)), rec(keyed(2)), rec(A), rec(A)
    )
    assert claim_ids(backend) == [h1, h2, other_h]
    backend.set_limit_override("t", LimitOverride(2, None))
    assert sorted(claim_ids(backend)) == sorted([w1, w2])
    assert status(backend, other_w) is S.CONCURRENCY_CONTROLLED
    assert [u.key for u in backend.budget_usage("t")] == [
        "limit t#tenant_id=1",
        "limit t#tenant_id=2",
    ]


def test_a_raised_rate_override_admits_rate_waiters(backend: Backend) -> None:
    rated = Budget("limit r", "r", rate=Rate(1, 3600))
    first, second = register(backend, rec(rated), rec(rated))
    assert claim_ids(backend) == [first]
    assert claim_ids(backend) == []
    backend.set_limit_override("r", LimitOverride(None, Rate(2, 3600)))
    assert claim_ids(backend) == [second]


# --- reports and purge ---------------------------------------------------------------------------


def test_budget_usage_reports_holders_runners_and_waits(backend: Backend) -> None:
    before = time.time()
    holder, waiter = register(backend, rec(A), rec(A))
    task_scope = Budget("tests.limited#k=1", None, concurrency=1)
    register(backend, rec(task_scope))
    claim_ids(backend)
    [a] = backend.budget_usage("a")
    assert (a.key, a.limit, a.waiting, a.window_starts) == ("limit a", "a", 1, 0)
    [held] = a.holders
    assert held.invocation_id == holder and held.runner_id == RUNNER
    assert held.lease_expires_at is not None and held.lease_expires_at > before
    assert a.oldest_wait is not None and before <= a.oldest_wait <= time.time()
    # A task's own running scope is a budget but no limit: not reported.
    assert [u.key for u in backend.budget_usage()] == ["limit a"]
    assert backend.budget_usage("nope") == []
    assert backend.stats().parked_by_key == {"limit a": 1}
    assert waiter


def test_purge_deletes_every_budget_row(backend: Backend) -> None:
    rated = Budget("limit r", "r", concurrency=1, rate=Rate(1, 3600))
    register(backend, rec(rated), rec(rated))
    claim_ids(backend)
    backend.set_limit_override("r", LimitOverride(1, None))
    backend.purge()
    assert backend.budget_usage() == []
    assert backend.limit_overrides() == {}
    assert backend.stats().parked_by_key == {}
    fresh = register(backend, rec(rated))
    assert claim_ids(backend) == fresh


def test_slots_an_override_added_are_freed_after_it_is_reset(backend: Backend) -> None:
    rated = Budget("limit r", "r", rate=Rate(100, 3600))
    backend.set_limit_override("r", LimitOverride(1, None))
    holder, waiter = register(backend, rec(rated), rec(rated))
    assert claim_ids(backend) == [holder]
    assert usage(backend, "limit r") == ([holder], 1)
    backend.reset_limit_override("r")  # no slots any more: the waiter runs at once
    assert claim_ids(backend) == [waiter]
    assert usage(backend, "limit r")[0] == [holder]  # taken while the override had slots
    finish(backend, holder)
    finish(backend, waiter)
    assert usage(backend, "limit r")[0] == []


def test_a_busy_runner_picks_up_a_rate_waiter_at_its_instant(backend: Backend) -> None:
    rated = Budget("limit r", "r", rate=Rate(1, 0.2))
    first, waiter = register(backend, rec(rated), rec(rated))
    assert claim_ids(backend) == [first]
    finish(backend, first)
    # The queue never runs dry: only claims made while finishing see the waiter become due.
    current = register(backend, rec())[0]
    assert claim_ids(backend) == [current]
    deadline = time.monotonic() + WAIT
    while True:
        register(backend, rec())
        done, claims = backend.finish_and_claim(
            current, RUNNER, 1, SUCCESS, max_count=1, lease_seconds=LEASE
        )
        assert done and time.monotonic() < deadline, "the rate waiter was never claimed"
        [current] = [c.invocation_id for c in claims]
        if current == waiter:
            break
