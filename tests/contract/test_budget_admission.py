"""Budget admission on every backend: a record is admitted only when every budget admits it, and
takes every slot in that same step or none; a refused record waits or, with
``drop_when_blocked``, is dropped holding nothing."""

from __future__ import annotations

import pytest

from taskgate.backends.base import Backend
from taskgate.record import Budget, ConcurrencyPlan, InvocationRecord
from taskgate.status import InvocationStatus as S
from tests.contract.budget_support import (
    A,
    B,
    claim_ids,
    finish,
    history,
    holders,
    record,
    register,
    status,
    stored,
    usage,
)


def test_a_record_refused_by_a_later_budget_takes_nothing_from_an_earlier_one(
    backend: Backend,
) -> None:
    [holder_b] = register(backend, record(B))
    assert claim_ids(backend) == [holder_b]
    [both] = register(backend, record(A, B))
    assert claim_ids(backend) == []
    assert status(backend, both) is S.CONCURRENCY_CONTROLLED
    assert backend.blocked_by(both) == ("limit b", (holder_b,), None)
    assert holders(backend, "limit a") == []  # refused by b: it took nothing from a
    assert usage(backend, "limit b") == ([holder_b], 1)
    [only_a] = register(backend, record(A))
    assert claim_ids(backend) == [only_a]  # a was free: admitted although `both` waits
    # Woken by b, refused by a: parked again, still holding nothing.
    finish(backend, holder_b)
    assert claim_ids(backend) == []
    assert status(backend, both) is S.CONCURRENCY_CONTROLLED
    assert backend.blocked_by(both) == ("limit a", (only_a,), None)
    assert holders(backend, "limit b") == []
    finish(backend, only_a)
    assert claim_ids(backend) == [both]
    assert status(backend, both) is S.RUNNING
    assert holders(backend, "limit a") == [both] and holders(backend, "limit b") == [both]
    # A woken waiter that parks again adds no history entry.
    assert history(backend, both) == [S.REGISTERED, S.CONCURRENCY_CONTROLLED, S.RUNNING]
    finish(backend, both)
    assert backend.budget_usage() == []


def test_a_refused_record_holds_up_no_later_one_and_parks_again_without_history(
    backend: Backend,
) -> None:
    a_holder, both, b_user = register(backend, record(A), record(A, B), record(B))
    # `both` is refused by a within the same claim; had it kept b's slot, `b_user` could not run.
    assert claim_ids(backend) == [a_holder, b_user]
    assert status(backend, both) is S.CONCURRENCY_CONTROLLED
    assert backend.blocked_by(both) == ("limit a", (a_holder,), None)
    assert usage(backend, "limit a") == ([a_holder], 1)
    assert usage(backend, "limit b") == ([b_user], 0)
    # Woken by a, refused by b now: it waits on b, with no new history entry.
    finish(backend, a_holder)
    assert claim_ids(backend) == []
    assert backend.blocked_by(both) == ("limit b", (b_user,), None)
    assert history(backend, both) == [S.REGISTERED, S.CONCURRENCY_CONTROLLED]
    finish(backend, b_user)
    assert claim_ids(backend) == [both]
    assert usage(backend, "limit a") == ([both], 0)
    assert usage(backend, "limit b") == ([both], 0)
    assert history(backend, both) == [S.REGISTERED, S.CONCURRENCY_CONTROLLED, S.RUNNING]
    finish(backend, both)
    assert backend.budget_usage() == []


def test_a_budget_admits_up_to_its_concurrency(backend: Backend) -> None:
    shared = Budget("limit s", "s", concurrency=3)
    ids = register(backend, *(record(shared) for _ in range(5)))
    assert claim_ids(backend) == ids[:3]
    assert backend.stats().parked_by_key == {"limit s": 2}
    finish(backend, ids[0])
    assert claim_ids(backend) == [ids[3]]


@pytest.mark.parametrize(
    ("full", "free"), [(A, B), (B, A)], ids=["refused-by-the-first", "refused-by-the-second"]
)
def test_a_refused_record_that_drops_takes_nothing(
    backend: Backend, full: Budget, free: Budget
) -> None:
    [holder] = register(backend, record(full))
    assert claim_ids(backend) == [holder]
    dropped, user = register(backend, record(A, B, drop=True, reg="k"), record(free))
    assert claim_ids(backend) == [user]  # the budget `dropped` did not get is free for `user`
    assert status(backend, dropped) is S.CONCURRENCY_CONTROLLED_FINAL
    assert usage(backend, full.key) == ([holder], 0)  # dropped: not waiting
    assert usage(backend, free.key) == ([user], 0)
    assert backend.register(record(A, reg="k")).created  # its registration key was freed


def test_records_without_budgets_are_not_held_up_by_budgets(backend: Backend) -> None:
    holder, waiter = register(backend, record(A), record(A))
    plain = InvocationRecord("plain-" + holder, "tests.plain", b"", ConcurrencyPlan())
    register(backend, plain)
    assert claim_ids(backend) == [holder, plain.invocation_id]
    assert status(backend, waiter) is S.CONCURRENCY_CONTROLLED
    kept = stored(backend, holder)
    assert kept.plan.budgets == (A,) and kept.priority == 0
