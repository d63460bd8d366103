"""Timed invocations (taskgate.backends.base, "Timed invocations"), driven directly.

Delayed calls (``scheduled_for``) and delayed retries (``Outcome.retry_delay``) wait on the
timed structure; a blocked claim returns with them at their time. Due times are short (0.3 s)
and the claims that wait for them have a 5 s timeout: a claim returning before that timeout
with the invocation shows it came back at its time, not at the timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from taskgate.backends.base import Backend
from taskgate.record import InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S

NewRecord = Callable[..., InvocationRecord]
RUNNER = "runner-a"
LEASE = 30.0
DELAY = 0.3
TIMEOUT = 5.0
# A claim that waited for a due entry returned well before its timeout.
BEFORE_TIMEOUT = TIMEOUT - 1.0
FAR = 3600.0

SUCCESS = Outcome(OutcomeKind.SUCCESS, b"result")


def claim_ids(backend: Backend, timeout: float = 0, max_count: int = 10) -> list[str]:
    return [c.invocation_id for c in backend.claim(RUNNER, max_count, LEASE, timeout)]


def record_of(backend: Backend, invocation_id: str) -> InvocationRecord:
    record = backend.get(invocation_id)
    assert record is not None
    return record


def claim_when_due(backend: Backend, due: float) -> list[str]:
    """A blocked claim: returns what it got, checking it came at ``due``, before the timeout."""
    started = time.monotonic()
    claimed = claim_ids(backend, TIMEOUT)
    assert time.time() >= due
    assert time.monotonic() - started < BEFORE_TIMEOUT
    return claimed


def test_scheduled_record_waits_scheduled_off_the_queue(
    backend: Backend, new_record: NewRecord
) -> None:
    due = time.time() + FAR
    record = new_record(scheduled_for=due)
    assert backend.register(record).created
    stored = record_of(backend, record.invocation_id)
    assert stored.status is S.SCHEDULED
    assert stored.scheduled_for == due
    assert [t.status for t in stored.history] == [S.SCHEDULED]
    assert claim_ids(backend) == []
    assert backend.blocked_by(record.invocation_id) is None
    assert backend.stats().by_task_and_status[(record.task_id, S.SCHEDULED)] == 1


def test_record_scheduled_in_the_past_is_ready_at_once(
    backend: Backend, new_record: NewRecord
) -> None:
    record = new_record(scheduled_for=time.time() - 1)
    backend.register(record)
    assert record_of(backend, record.invocation_id).status is S.REGISTERED
    assert claim_ids(backend) == [record.invocation_id]


def test_blocked_claim_returns_with_a_scheduled_record_at_its_time(
    backend: Backend, new_record: NewRecord
) -> None:
    due = time.time() + DELAY
    record = new_record(scheduled_for=due)
    backend.register(record)
    assert claim_ids(backend) == []
    assert claim_when_due(backend, due) == [record.invocation_id]
    stored = record_of(backend, record.invocation_id)
    assert stored.status is S.RUNNING
    assert [t.status for t in stored.history] == [S.SCHEDULED, S.RUNNING]


def test_scheduled_records_come_due_in_their_order(backend: Backend, new_record: NewRecord) -> None:
    now = time.time()
    later = new_record(scheduled_for=now + 2 * DELAY)
    sooner = new_record(scheduled_for=now + DELAY)
    backend.register(later)
    backend.register(sooner)
    assert claim_when_due(backend, now + DELAY) == [sooner.invocation_id]
    assert claim_when_due(backend, now + 2 * DELAY) == [later.invocation_id]


def test_due_record_goes_behind_the_ready_ones(backend: Backend, new_record: NewRecord) -> None:
    first, second = new_record(), new_record()
    due = time.time() + DELAY
    scheduled = new_record(scheduled_for=due)
    backend.register(scheduled)
    backend.register(first)
    backend.register(second)
    # The promise is about the clock: let it pass the due time with the queue full (a claim
    # would return the ready ones at once, so no claim can wait for it).
    time.sleep(max(0.0, due - time.time()) + 0.01)
    assert claim_ids(backend) == [
        first.invocation_id,
        second.invocation_id,
        scheduled.invocation_id,
    ]
    assert record_of(backend, scheduled.invocation_id).status is S.RUNNING


def test_registration_folds_into_a_scheduled_invocation(
    backend: Backend, new_record: NewRecord
) -> None:
    scheduled = new_record(reg="k", scheduled_for=time.time() + FAR)
    backend.register(scheduled)
    again = backend.register(new_record(reg="k"))
    assert not again.created
    assert again.invocation_id == scheduled.invocation_id


def test_earlier_registration_wakes_a_blocked_claim(
    backend: Backend, new_record: NewRecord
) -> None:
    backend.register(new_record(scheduled_for=time.time() + FAR))
    claimed: list[str] = []
    waiting = threading.Thread(target=lambda: claimed.extend(claim_ids(backend, TIMEOUT)))
    waiting.start()
    due = time.time() + DELAY
    record = new_record(scheduled_for=due)
    started = time.monotonic()
    backend.register(record)
    waiting.join()
    assert claimed == [record.invocation_id]
    assert time.monotonic() - started < BEFORE_TIMEOUT


def test_retry_delay_waits_in_retry_then_runs_again(
    backend: Backend, new_record: NewRecord
) -> None:
    record = new_record(max_retries=3)
    backend.register(record)
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    before = time.time()
    retry = Outcome(OutcomeKind.RETRY, b"e", retry_delay=DELAY)
    assert backend.finish(claim.invocation_id, RUNNER, claim.attempt, retry)
    stored = record_of(backend, record.invocation_id)
    assert stored.status is S.RETRY
    assert stored.num_retries == 1
    assert stored.error == b"e"
    assert claim_ids(backend) == []
    [again] = backend.claim(RUNNER, 1, LEASE, TIMEOUT)
    assert time.time() >= before + DELAY
    assert again.invocation_id == record.invocation_id
    assert again.attempt == 2
    assert [t.status for t in record_of(backend, record.invocation_id).history] == [
        S.REGISTERED,
        S.RUNNING,
        S.RETRY,
        S.RUNNING,
    ]


def test_retry_without_delay_is_claimable_at_once(backend: Backend, new_record: NewRecord) -> None:
    record = new_record(max_retries=1)
    backend.register(record)
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    retry = Outcome(OutcomeKind.RETRY, b"e")
    assert backend.finish(claim.invocation_id, RUNNER, claim.attempt, retry)
    assert claim_ids(backend) == [record.invocation_id]


def test_delayed_retry_releases_its_slot_and_takes_its_key_back(
    backend: Backend, new_record: NewRecord
) -> None:
    first = new_record(reg="r", run="k", limit=1, max_retries=1)
    waiter = new_record(run="k", limit=1)
    backend.register(first)
    backend.register(waiter)
    assert claim_ids(backend) == [first.invocation_id]
    assert record_of(backend, waiter.invocation_id).status is S.CONCURRENCY_CONTROLLED
    retry = Outcome(OutcomeKind.RETRY, b"e", retry_delay=FAR)
    assert backend.finish(first.invocation_id, RUNNER, 1, retry)
    assert claim_ids(backend) == [waiter.invocation_id]
    folded = backend.register(new_record(reg="r"))
    assert not folded.created and folded.invocation_id == first.invocation_id


def test_purge_forgets_timed_invocations(backend: Backend, new_record: NewRecord) -> None:
    record = new_record(reg="k", scheduled_for=time.time() + DELAY)
    backend.register(record)
    backend.purge()
    assert backend.get(record.invocation_id) is None
    assert backend.register(new_record(reg="k")).created
    assert backend.stats().by_task_and_status.get((record.task_id, S.SCHEDULED)) is None
    # Past the purged record's time, only the new one is claimed.
    claimed = claim_ids(backend, TIMEOUT)
    assert record.invocation_id not in claimed
    assert claim_ids(backend, 2 * DELAY) == []
