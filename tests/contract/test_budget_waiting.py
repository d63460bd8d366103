"""Budget waiters on every backend: the order they are woken in (priority, then call order; round
robin across fairness values), and capacity a woken waiter cannot use passed on to the next."""

from __future__ import annotations

import pytest

from taskgate.backends.base import Backend
from taskgate.record import Budget
from taskgate.status import InvocationStatus as S
from tests.contract.budget_support import (
    A,
    B,
    C,
    claim_ids,
    finish,
    record,
    register,
    run_in_turn,
    status,
)


def test_waiters_go_by_priority_then_call_order(backend: Backend) -> None:
    [holder] = register(backend, record(A))
    assert claim_ids(backend) == [holder]
    first, urgent, last = register(backend, record(A), record(A, priority=5), record(A))
    assert claim_ids(backend) == []
    assert run_in_turn(backend, holder, 3) == [urgent, first, last]


def test_fair_waiters_take_turns_across_values(backend: Backend) -> None:
    def fair(value: str) -> Budget:
        return Budget("limit llm", "llm", concurrency=1, fair=f"tenant='{value}'")

    [holder] = register(backend, record(fair("a")))
    assert claim_ids(backend) == [holder]
    busy = register(backend, *(record(fair("a")) for _ in range(4)))
    [lone] = register(backend, record(fair("b")))
    assert claim_ids(backend) == []
    order = run_in_turn(backend, holder, 5)
    # Round robin: the lone call of tenant b starts within the next two starts despite a's
    # backlog, which keeps its call order.
    assert order[:2] == [busy[0], lone]
    assert order[2:] == busy[1:]


@pytest.mark.parametrize(
    ("wait_on", "refused_by"),
    [(A, B), (C, B)],
    ids=["refused-by-a-later-budget", "refused-by-an-earlier-budget"],
)
def test_capacity_a_woken_waiter_cannot_use_goes_to_the_next(
    backend: Backend, wait_on: Budget, refused_by: Budget
) -> None:
    [holder] = register(backend, record(wait_on))
    assert claim_ids(backend) == [holder]
    # `needs_both` parks on `wait_on` (`refused_by` is free yet), `needs_one` after it.
    needs_both, needs_one = register(backend, record(wait_on, refused_by), record(wait_on))
    assert claim_ids(backend) == []
    [other] = register(backend, record(refused_by))
    assert claim_ids(backend) == [other]
    finish(backend, holder)
    # `needs_both` is woken, then refused by `refused_by`: the slot of `wait_on` must not sit
    # idle while `needs_one` waits for it.
    assert claim_ids(backend) == [needs_one]
    assert status(backend, needs_both) is S.CONCURRENCY_CONTROLLED
    blocked = backend.blocked_by(needs_both)
    assert blocked is not None and blocked.scope_key == refused_by.key
    finish(backend, other)
    finish(backend, needs_one)
    assert claim_ids(backend) == [needs_both]
