"""Live limit overrides on every backend: set_limit_override, reset_limit_override and
limit_overrides, applied at once to every budget of the limit, waking its waiters."""

from __future__ import annotations

from taskgate.backends.base import Backend
from taskgate.record import Budget, LimitOverride, Rate
from taskgate.status import InvocationStatus as S
from tests.contract.budget_support import (
    A,
    claim_ids,
    finish,
    holders,
    record,
    register,
    status,
    usage,
)


def test_overrides_raise_and_lower_a_limit_and_reset_to_the_declared_one(
    backend: Backend,
) -> None:
    holder, *waiters = register(backend, *(record(A) for _ in range(4)))
    assert claim_ids(backend) == [holder]
    backend.set_limit_override("a", LimitOverride(3, None))
    assert backend.limit_overrides() == {"a": LimitOverride(3, None)}
    # Raised: two waiters are admitted at once, the third still waits.
    assert claim_ids(backend) == waiters[:2]
    assert status(backend, waiters[2]) is S.CONCURRENCY_CONTROLLED
    # Lowered: nothing running is touched, nothing more starts until below the new value.
    backend.set_limit_override("a", LimitOverride(2, Rate(10, 1.0)))
    assert holders(backend, "limit a") == sorted([holder, *waiters[:2]])
    assert {status(backend, i) for i in [holder, *waiters[:2]]} == {S.RUNNING}
    finish(backend, holder)
    assert claim_ids(backend) == []
    finish(backend, waiters[0])
    assert claim_ids(backend) == [waiters[2]]
    # Reset: the declared concurrency 1 applies again.
    backend.reset_limit_override("a")
    backend.reset_limit_override("a")  # nothing to reset: no error
    backend.reset_limit_override("never-set")
    assert backend.limit_overrides() == {}
    [last] = register(backend, record(A))
    assert claim_ids(backend) == []
    finish(backend, waiters[1])
    assert claim_ids(backend) == []  # one holder left, declared concurrency 1: still waits
    finish(backend, waiters[2])
    assert claim_ids(backend) == [last]


def test_an_override_applies_to_every_budget_of_its_limit_only(backend: Backend) -> None:
    def keyed(value: int) -> Budget:
        return Budget(f"limit t#tenant_id={value}", "t", concurrency=1)

    h1, w1, h2, w2, other_h, other_w = register(
        backend,
        record(keyed(1)),
        record(keyed(1)),
        record(keyed(2)),
        record(keyed(2)),
        record(A),
        record(A),
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
    first, second = register(backend, record(rated), record(rated))
    assert claim_ids(backend) == [first]
    assert claim_ids(backend) == []
    backend.set_limit_override("r", LimitOverride(None, Rate(2, 3600)))
    assert claim_ids(backend) == [second]


def test_slots_an_override_added_are_freed_after_it_is_reset(backend: Backend) -> None:
    rated = Budget("limit r", "r", rate=Rate(100, 3600))
    backend.set_limit_override("r", LimitOverride(1, None))
    holder, waiter = register(backend, record(rated), record(rated))
    assert claim_ids(backend) == [holder]
    assert usage(backend, "limit r") == ([holder], 1)
    backend.reset_limit_override("r")  # no slots any more: the waiter runs at once
    assert claim_ids(backend) == [waiter]
    assert holders(backend, "limit r") == [holder]  # taken while the override had slots
    finish(backend, holder)
    finish(backend, waiter)
    assert holders(backend, "limit r") == []
