"""Expired results never pile up: one expiry pass deletes all of them, on every backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from taskgate import App
from taskgate.backends.base import EXPIRY_BATCH, Backend
from taskgate.record import InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S

NewRecord = Callable[..., InvocationRecord]
RUNNER = "runner-a"
SUCCESS = Outcome(OutcomeKind.SUCCESS, b"result")
# Several expiry batches' worth: more than a single atomic step may delete.
MANY = 6 * EXPIRY_BATCH
WAIT = 15.0


def finish_many(backend: Backend, new_record: NewRecord, count: int) -> list[str]:
    """Register, claim and finish ``count`` invocations; returns their ids."""
    records = [new_record() for _ in range(count)]
    backend.register_many(records)
    finished: list[str] = []
    while len(finished) < count:
        claims = backend.claim(RUNNER, 500, 30.0, 0)
        assert claims, "the queue ran dry before every record was claimed"
        for claim in claims:
            assert backend.finish(claim.invocation_id, RUNNER, claim.attempt, SUCCESS)
            finished.append(claim.invocation_id)
    return finished


def stored(backend: Backend) -> int:
    return sum(backend.stats().by_task_and_status.values())


def test_expire_deletes_every_expired_final_in_one_call(
    backend: Backend, new_record: NewRecord
) -> None:
    finished = finish_many(backend, new_record, MANY)
    pending = new_record()
    backend.register(pending)
    later = time.time() + backend.options.result_ttl_seconds + 1
    assert stored(backend) == MANY + 1
    assert backend.expire(now=later) == MANY
    assert backend.stats().by_task_and_status == {("tests.task", S.REGISTERED): 1}
    assert [r.invocation_id for r in backend.list_invocations(None, None, MANY)] == [
        pending.invocation_id
    ]
    sample = finished[:: EXPIRY_BATCH // 2]
    assert backend.get_many(sample) == [None] * len(sample)
    assert backend.expire(now=later) == 0


def test_expire_finals_deletes_one_batch_at_most(backend: Backend, new_record: NewRecord) -> None:
    finish_many(backend, new_record, 7)
    later = time.time() + backend.options.result_ttl_seconds + 1
    assert backend.expire_finals(5, now=later) == 5
    assert backend.expire_finals(5, now=later) == 2
    assert backend.expire_finals(5, now=later) == 0
    assert stored(backend) == 0


def test_expire_leaves_results_within_their_ttl(backend: Backend, new_record: NewRecord) -> None:
    finish_many(backend, new_record, 3)
    assert backend.expire() == 0
    assert backend.expire_finals(10, now=time.time() + 1) == 0
    assert stored(backend) == 3


def test_recover_expires_every_expired_final_however_many(
    backend: Backend, new_record: NewRecord
) -> None:
    finish_many(backend, new_record, MANY)
    backend.recover(now=time.time() + backend.options.result_ttl_seconds + 1)
    assert stored(backend) == 0


def test_a_runner_deletes_results_soon_after_their_ttl(
    make_app: Callable[..., App], run_runner: Callable[..., Any]
) -> None:
    # A lease far longer than the test: recover() never runs twice, so only the heartbeat's
    # expiry at the pace of the TTL can delete these results in time.
    app = make_app(result_ttl_seconds=1.0, lease_seconds=120.0)

    @app.task
    def noop(n: int) -> int:
        return n

    with run_runner(app.runner):
        invocations = [noop(n) for n in range(300)]
        assert [i.get_result(WAIT) for i in invocations] == list(range(300))
        deadline = time.monotonic() + WAIT
        while stored(app.backend):
            assert time.monotonic() < deadline, f"{stored(app.backend)} results still stored"
            time.sleep(0.05)


def test_expire_for_works_off_a_backlog_in_bounded_chunks(
    make_app: Callable[..., App], new_record: NewRecord
) -> None:
    # What a heartbeat runs between renewals: at least one batch per call, never a whole
    # backlog in one go when time is short, and everything in the end.
    backend = make_app(result_ttl_seconds=0.001).backend
    finish_many(backend, new_record, MANY)
    time.sleep(0.002)  # past the TTL of the last one (a TTL is a time, nothing to wait for)
    assert backend.expire_for(0.0) is False  # one batch, then out of time
    assert stored(backend) == MANY - EXPIRY_BATCH
    calls = 1
    while not backend.expire_for(0.0):
        calls += 1
        assert calls <= MANY // EXPIRY_BATCH, "expire_for made no progress"
    assert stored(backend) == 0
