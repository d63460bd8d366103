"""``finish_and_claim`` and the waiter its finish wakes: the claim in the same call takes it
when it heads the ready queue (a hot key's every task), and never out of turn: a ready call of
a higher priority goes first, and a claim of other queues leaves it queued."""

from __future__ import annotations

from taskgate.backends.base import Backend
from taskgate.record import InvocationRecord
from taskgate.status import InvocationStatus as S
from tests.contract.budget_support import RUNNER, claim_ids, history, status
from tests.contract.test_backend_contract import LEASE, SUCCESS, NewRecord


def finish_and_claim(
    backend: Backend, invocation_id: str, queues: frozenset[str] | None = None
) -> list[str]:
    """Finish ``invocation_id`` (attempt 1) and claim one more in the same call: the ids."""
    done, claims = backend.finish_and_claim(
        invocation_id, RUNNER, 1, SUCCESS, max_count=1, lease_seconds=LEASE, queues=queues
    )
    assert done
    return [claim.invocation_id for claim in claims]


def running_holder_and_waiter(
    backend: Backend, new_record: NewRecord
) -> tuple[InvocationRecord, InvocationRecord]:
    """Two calls of key "k" (limit 1): the first claimed and running, the second parked."""
    holder, waiter = new_record(run="k"), new_record(run="k")
    for record in (holder, waiter):
        backend.register(record)
    assert claim_ids(backend, 2) == [holder.invocation_id]
    return holder, waiter


def test_the_finish_hands_the_woken_waiter_to_its_claim(
    backend: Backend, new_record: NewRecord
) -> None:
    holder, waiter, later = (new_record(run="k") for _ in range(3))
    for record in (holder, waiter, later):
        backend.register(record)
    assert claim_ids(backend, 3) == [holder.invocation_id]  # the other two park, in order
    assert finish_and_claim(backend, holder.invocation_id) == [waiter.invocation_id]
    assert history(backend, waiter.invocation_id) == [
        S.REGISTERED,
        S.CONCURRENCY_CONTROLLED,
        S.RUNNING,
    ]
    assert status(backend, later.invocation_id) is S.CONCURRENCY_CONTROLLED
    assert claim_ids(backend) == []  # the key is full again: nothing was left queued
    assert finish_and_claim(backend, waiter.invocation_id) == [later.invocation_id]


def test_a_higher_priority_call_goes_before_the_woken_waiter(
    backend: Backend, new_record: NewRecord
) -> None:
    holder, waiter = running_holder_and_waiter(backend, new_record)
    urgent, plain = new_record(priority=5), new_record()
    backend.register(urgent)
    backend.register(plain)
    assert finish_and_claim(backend, holder.invocation_id) == [urgent.invocation_id]
    # The woken waiter is first in line of its priority, before the plain call.
    assert claim_ids(backend) == [waiter.invocation_id, plain.invocation_id]


def test_a_claim_of_other_queues_leaves_the_woken_waiter_queued(
    backend: Backend, new_record: NewRecord
) -> None:
    holder, waiter = running_holder_and_waiter(backend, new_record)
    assert finish_and_claim(backend, holder.invocation_id, frozenset({"other"})) == []
    assert claim_ids(backend) == [waiter.invocation_id]


def test_a_claim_of_no_queue_claims_nothing(backend: Backend, new_record: NewRecord) -> None:
    record = new_record()
    backend.register(record)
    assert backend.claim(RUNNER, 1, LEASE, 0, queues=frozenset()) == []
    assert claim_ids(backend) == [record.invocation_id]


def test_a_claim_of_no_queue_leaves_the_woken_waiter_queued(
    backend: Backend, new_record: NewRecord
) -> None:
    holder, waiter = running_holder_and_waiter(backend, new_record)
    assert finish_and_claim(backend, holder.invocation_id, frozenset()) == []
    assert claim_ids(backend) == [waiter.invocation_id]
