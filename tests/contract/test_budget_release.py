"""Releasing budgets on every backend: a retry, a hand-back (release) and a recovery (expired
lease, dead runner) free every slot of the invocation and wake the waiters; a retried invocation
goes after them, a handed-back or recovered one first. (A plain finish: test_budget_admission.)"""

from __future__ import annotations

import time

import pytest

from taskgate.backends.base import Backend
from taskgate.status import InvocationStatus as S
from tests.contract.budget_support import (
    LEASE,
    RETRY,
    A,
    B,
    claim_ids,
    finish,
    holders,
    record,
    register,
    status,
)

OTHER = "runner-b"


def test_a_retry_frees_every_slot_and_the_waiters_go_first(backend: Backend) -> None:
    holder, waiter_a, waiter_b = register(backend, record(A, B), record(A), record(B))
    assert claim_ids(backend) == [holder]
    finish(backend, holder, RETRY)
    assert status(backend, holder) is S.RETRY
    # Retried at the tail: the waiters are woken to the front, ahead of the retry.
    assert sorted(claim_ids(backend)) == sorted([waiter_a, waiter_b])
    assert status(backend, holder) is S.CONCURRENCY_CONTROLLED
    finish(backend, waiter_a)
    assert claim_ids(backend) == []  # b is still held
    finish(backend, waiter_b)
    assert claim_ids(backend) == [holder]
    finish(backend, holder)
    assert backend.budget_usage() == []


@pytest.mark.parametrize("how", ["release", "lease", "runner"])
def test_a_hand_back_or_recovery_frees_every_slot_and_goes_first(
    backend: Backend, how: str
) -> None:
    [holder] = register(backend, record(A, B))
    assert claim_ids(backend, runner=OTHER) == [holder]
    waiter_a, waiter_b = register(backend, record(A), record(B))
    assert claim_ids(backend) == []
    if how == "release":
        assert backend.release(holder, OTHER, 1)
    elif how == "lease":
        assert backend.recover(now=time.time() + LEASE + 5) == [holder]
    else:
        assert backend.recover_runner(OTHER) == [holder]
    assert holders(backend, "limit a") == [] and holders(backend, "limit b") == []
    # First in line again: it takes both slots back before either waiter.
    assert claim_ids(backend) == [holder]
    assert status(backend, waiter_a) is S.CONCURRENCY_CONTROLLED
    assert status(backend, waiter_b) is S.CONCURRENCY_CONTROLLED
    finish(backend, holder)
    assert sorted(claim_ids(backend)) == sorted([waiter_a, waiter_b])
    finish(backend, waiter_a)
    finish(backend, waiter_b)
    assert backend.budget_usage() == []
