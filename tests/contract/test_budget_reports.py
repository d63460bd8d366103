"""What backends report about budgets, on every backend: the stored record, ``blocked_by``,
``stats().parked_by_key`` (and ``parked_counts()``, the same alone) and ``budget_usage``, and
that ``purge`` forgets all of it."""

from __future__ import annotations

import time

import pytest

from taskgate.backends.base import Backend
from taskgate.record import Budget, LimitOverride, Rate
from taskgate.status import InvocationStatus as S
from tests.contract.budget_support import (
    RUNNER,
    A,
    B,
    claim_ids,
    record,
    register,
    status,
    stored,
)


def test_budgets_and_priority_are_stored_with_the_record(backend: Backend) -> None:
    fair = Budget("limit f", "f", concurrency=2, rate=Rate(3, 1.5), fair="tenant='x'")
    [invocation_id] = register(backend, record(A, fair, priority=3))
    kept = stored(backend, invocation_id)
    assert kept.plan.budgets == (A, fair)
    assert kept.priority == 3
    assert kept.plan.running_key is None


def test_usage_stats_and_blocked_by_name_holders_and_waiters(backend: Backend) -> None:
    before = time.time()
    own_scope = Budget("tests.task#customer=1", None, concurrency=1)
    holder, *waiters, scope_waiter = register(
        backend, record(A, own_scope), record(A), record(A), record(own_scope)
    )
    assert claim_ids(backend) == [holder]
    assert all(status(backend, i) is S.CONCURRENCY_CONTROLLED for i in waiters)
    assert backend.stats().parked_by_key == {"limit a": 2, "tests.task#customer=1": 1}
    assert backend.parked_counts() == backend.stats().parked_by_key
    assert backend.blocked_by(waiters[0]) == ("limit a", (holder,), None)
    assert backend.blocked_by(scope_waiter) == ("tests.task#customer=1", (holder,), None)
    # A task's own running scope is a budget but no limit: not reported.
    [usage] = backend.budget_usage()
    assert (usage.key, usage.limit, usage.waiting, usage.window_starts) == ("limit a", "a", 2, 0)
    [held] = usage.holders
    assert (held.invocation_id, held.runner_id) == (holder, RUNNER)
    assert held.lease_expires_at is not None and held.lease_expires_at > time.time()
    assert usage.oldest_wait is not None and before <= usage.oldest_wait <= time.time()
    assert backend.budget_usage("b") == []
    assert backend.budget_usage("nope") == []


@pytest.mark.parametrize("limit", ["a", None])
def test_budget_usage_filters_by_limit(backend: Backend, limit: str | None) -> None:
    register(backend, record(A), record(B))
    claim_ids(backend)
    keys = [u.key for u in backend.budget_usage(limit)]
    assert keys == (["limit a"] if limit else ["limit a", "limit b"])


def test_purge_forgets_budgets_waiters_rate_windows_and_overrides(backend: Backend) -> None:
    keyed = Budget("limit r#t='x'", "r", concurrency=1, rate=Rate(1, 3600))
    holder, *_ = register(backend, record(keyed), record(keyed), record(keyed))
    assert claim_ids(backend) == [holder]
    assert backend.stats().parked_by_key == {"limit r#t='x'": 2}
    backend.set_limit_override("r", LimitOverride(1, None))
    backend.purge()
    assert backend.parked_counts() == {}
    assert backend.budget_usage() == []
    assert backend.limit_overrides() == {}
    assert backend.stats().parked_by_key == {}
    fresh = register(backend, record(keyed))
    assert claim_ids(backend) == fresh  # its slot and rate window were forgotten too
