"""The backend contract (taskgate.backends.base), driven directly, on every backend.

Each test states one promise of one atomic operation. Time-dependent operations take ``now`` so
lease expiry is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from taskgate.backends.base import Backend
from taskgate.record import FinalOutcome, InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S

NewRecord = Callable[..., InvocationRecord]
RUNNER = "runner-a"
OTHER = "runner-b"
LEASE = 30.0

SUCCESS = Outcome(OutcomeKind.SUCCESS, b"result")
FAILED = Outcome(OutcomeKind.FAILED, b"error")
RETRY = Outcome(OutcomeKind.RETRY, b"error")


def claim_ids(backend: Backend, max_count: int = 10, runner: str = RUNNER) -> list[str]:
    return [c.invocation_id for c in backend.claim(runner, max_count, LEASE, 0)]


def status(backend: Backend, invocation_id: str) -> S:
    record = backend.get(invocation_id)
    assert record is not None
    return record.status


def attempt(backend: Backend, invocation_id: str) -> int:
    record = backend.get(invocation_id)
    assert record is not None
    return record.attempt


# --- register ----------------------------------------------------------------------------------


def test_register_stores_and_enqueues(backend: Backend, new_record: NewRecord) -> None:
    record = new_record()
    result = backend.register(record)
    assert result.created and result.invocation_id == record.invocation_id
    stored = backend.get(record.invocation_id)
    assert stored is not None
    assert stored.status is S.REGISTERED
    assert [t.status for t in stored.history] == [S.REGISTERED]
    assert claim_ids(backend) == [record.invocation_id]


def test_register_folds_into_waiting_holder_of_the_key(
    backend: Backend, new_record: NewRecord
) -> None:
    first = new_record(reg="k", arguments=b"first")
    backend.register(first)
    second = backend.register(new_record(reg="k", arguments=b"second"))
    assert not second.created
    assert second.invocation_id == first.invocation_id
    assert second.existing_arguments == b"first"
    assert len(backend.list_invocations(None, None, 10)) == 1


def test_registration_key_is_freed_when_the_holder_starts_running(
    backend: Backend, new_record: NewRecord
) -> None:
    first = new_record(reg="k")
    backend.register(first)
    assert claim_ids(backend) == [first.invocation_id]
    again = backend.register(new_record(reg="k"))
    assert again.created and again.invocation_id != first.invocation_id


def test_registration_keys_are_independent(backend: Backend, new_record: NewRecord) -> None:
    assert backend.register(new_record(reg="k1")).created
    assert backend.register(new_record(reg="k2")).created
    assert backend.register(new_record()).created
    assert backend.register(new_record()).created


def test_parked_invocation_keeps_its_registration_key(
    backend: Backend, new_record: NewRecord
) -> None:
    holder = new_record(run="r")
    parked = new_record(reg="k", run="r")
    backend.register(holder)
    backend.register(parked)
    assert claim_ids(backend) == [holder.invocation_id]
    assert status(backend, parked.invocation_id) is S.CONCURRENCY_CONTROLLED
    folded = backend.register(new_record(reg="k", run="r"))
    assert not folded.created and folded.invocation_id == parked.invocation_id


def test_retrying_invocation_takes_its_registration_key_back(
    backend: Backend, new_record: NewRecord
) -> None:
    record = new_record(reg="k", max_retries=1)
    backend.register(record)
    claim_ids(backend)
    assert backend.finish(record.invocation_id, RUNNER, 1, RETRY)
    assert status(backend, record.invocation_id) is S.RETRY
    folded = backend.register(new_record(reg="k"))
    assert not folded.created and folded.invocation_id == record.invocation_id


def test_retry_leaves_a_key_taken_meanwhile_to_its_new_holder(
    backend: Backend, new_record: NewRecord
) -> None:
    first = new_record(reg="k")
    backend.register(first)
    claim_ids(backend)
    second = new_record(reg="k")
    assert backend.register(second).created
    backend.finish(first.invocation_id, RUNNER, 1, RETRY)
    folded = backend.register(new_record(reg="k"))
    assert folded.invocation_id == second.invocation_id


def test_register_many_registers_in_order_and_folds_within_the_batch(
    backend: Backend, new_record: NewRecord
) -> None:
    waiting = new_record(reg="old")
    backend.register(waiting)
    batch = [new_record(), new_record(reg="new"), new_record(reg="new"), new_record(reg="old")]
    results = backend.register_many(batch)
    assert [r.created for r in results] == [True, True, False, False]
    assert results[2].invocation_id == batch[1].invocation_id
    assert results[3].invocation_id == waiting.invocation_id
    assert claim_ids(backend) == [
        waiting.invocation_id,
        batch[0].invocation_id,
        batch[1].invocation_id,
    ]


def test_get_many_returns_snapshots_in_order(backend: Backend, new_record: NewRecord) -> None:
    first, second = new_record(), new_record()
    backend.register(first)
    backend.register(second)
    claim_ids(backend, 1)
    snapshots = backend.get_many([second.invocation_id, "missing", first.invocation_id])
    assert snapshots[1] is None
    assert snapshots[0] is not None and snapshots[0].status is S.REGISTERED
    assert snapshots[2] is not None and snapshots[2].status is S.RUNNING


def test_final_outcomes_returns_the_final_ones_only(
    backend: Backend, new_record: NewRecord
) -> None:
    done, failed, running, waiting = (new_record() for _ in range(4))
    for record in (done, failed, running, waiting):
        backend.register(record)
    claim_ids(backend, 3)
    backend.finish(done.invocation_id, RUNNER, 1, SUCCESS)
    backend.finish(failed.invocation_id, RUNNER, 1, FAILED)
    ids = [r.invocation_id for r in (waiting, failed, running, done)]
    ids.insert(2, "missing")
    found = backend.final_outcomes(ids)
    assert found == {
        done.invocation_id: FinalOutcome(S.SUCCESS, b"result", None),
        failed.invocation_id: FinalOutcome(S.FAILED, None, b"error"),
    }
    assert backend.final_outcomes([]) == {}


# --- claim: running slots ------------------------------------------------------------------------


def test_claim_respects_the_running_limit_and_parks_the_rest(
    backend: Backend, new_record: NewRecord
) -> None:
    records = [new_record(run="r", limit=2) for _ in range(4)]
    for record in records:
        backend.register(record)
    claimed = claim_ids(backend)
    assert claimed == [records[0].invocation_id, records[1].invocation_id]
    for record in records[2:]:
        assert status(backend, record.invocation_id) is S.CONCURRENCY_CONTROLLED
        blocked = backend.blocked_by(record.invocation_id)
        assert blocked is not None
        assert blocked.scope_key == "r"
        assert sorted(blocked.holders) == sorted(claimed)


def test_other_running_keys_are_not_held_up(backend: Backend, new_record: NewRecord) -> None:
    a1, a2, b1 = new_record(run="a"), new_record(run="a"), new_record(run="b")
    for record in (a1, a2, b1):
        backend.register(record)
    assert claim_ids(backend) == [a1.invocation_id, b1.invocation_id]
    assert status(backend, a2.invocation_id) is S.CONCURRENCY_CONTROLLED


def test_claim_drops_when_blocked_and_frees_the_registration_key(
    backend: Backend, new_record: NewRecord
) -> None:
    holder = new_record(run="r")
    dropped = new_record(reg="k", run="r", drop=True)
    backend.register(holder)
    backend.register(dropped)
    assert claim_ids(backend) == [holder.invocation_id]
    assert status(backend, dropped.invocation_id) is S.CONCURRENCY_CONTROLLED_FINAL
    assert backend.wait_final(dropped.invocation_id, 0) is not None
    assert backend.register(new_record(reg="k")).created
    assert backend.blocked_by(dropped.invocation_id) is None


def test_claim_sets_owner_attempt_and_lease(backend: Backend, new_record: NewRecord) -> None:
    record = new_record()
    backend.register(record)
    before = time.time()
    [claim] = backend.claim(RUNNER, 1, 10.0, 0)
    assert claim.attempt == 1 and claim.invocation_id == record.invocation_id
    stored = backend.get(record.invocation_id)
    assert stored is not None
    assert stored.status is S.RUNNING and stored.runner_id == RUNNER
    assert stored.lease_expires_at is not None
    assert before + 10.0 <= stored.lease_expires_at <= time.time() + 10.0


def test_claim_takes_at_most_max_count_in_fifo_order(
    backend: Backend, new_record: NewRecord
) -> None:
    records = [new_record() for _ in range(5)]
    for record in records:
        backend.register(record)
    assert claim_ids(backend, 2) == [r.invocation_id for r in records[:2]]
    assert claim_ids(backend, 10) == [r.invocation_id for r in records[2:]]
    assert claim_ids(backend) == []


def test_claim_waits_for_work_and_wakes_on_register(
    backend: Backend, new_record: NewRecord
) -> None:
    got: list[str] = []
    waiting = threading.Thread(
        target=lambda: got.extend(c.invocation_id for c in backend.claim(RUNNER, 1, LEASE, 15))
    )
    waiting.start()
    record = new_record()
    backend.register(record)
    waiting.join(15)
    assert got == [record.invocation_id]


@pytest.mark.parametrize("timeout", [0.0005, 0.00001, 1e-9])
def test_tiny_timeouts_return_instead_of_blocking(
    backend: Backend, new_record: NewRecord, timeout: float
) -> None:
    # Redis reads a blocking timeout that rounds to 0 ms as "forever": this used to hang.
    record = new_record()
    backend.register(record)
    claim_ids(backend)
    for _ in range(20):
        assert backend.claim(RUNNER, 1, LEASE, timeout) == []
        snapshot = backend.wait_final(record.invocation_id, timeout)
        assert snapshot is not None and snapshot.status is S.RUNNING


def test_wake_claimers_ends_a_blocked_claim(backend: Backend) -> None:
    done = threading.Event()

    def claim() -> None:
        assert backend.claim(RUNNER, 1, LEASE, 60) == []
        done.set()

    waiting = threading.Thread(target=claim, daemon=True)
    waiting.start()
    # A wake before the claim starts waiting is missed by design, so keep waking until it ends.
    deadline = time.monotonic() + 15
    while not done.wait(0.01) and time.monotonic() < deadline:
        backend.wake_claimers()
    assert done.is_set()


# --- finish: outcomes, slot release, hand-off, fencing -------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "final"),
    [(SUCCESS, S.SUCCESS), (FAILED, S.FAILED)],
)
def test_finish_stores_the_outcome(
    backend: Backend, new_record: NewRecord, outcome: Outcome, final: S
) -> None:
    record = new_record()
    backend.register(record)
    claim_ids(backend)
    assert backend.finish(record.invocation_id, RUNNER, 1, outcome)
    waited = backend.wait_final(record.invocation_id, 0)
    assert waited is not None and waited.status is final
    assert (waited.result if final is S.SUCCESS else waited.error) == outcome.payload
    stored = backend.get(record.invocation_id)
    assert stored is not None
    assert [t.status for t in stored.history] == [S.REGISTERED, S.RUNNING, final]
    assert stored.history[1].runner_id == RUNNER


def test_retry_counts_and_requeues(backend: Backend, new_record: NewRecord) -> None:
    record = new_record(max_retries=2)
    backend.register(record)
    claim_ids(backend)
    backend.finish(record.invocation_id, RUNNER, 1, RETRY)
    stored = backend.get(record.invocation_id)
    assert stored is not None and stored.status is S.RETRY and stored.num_retries == 1
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    assert claim.attempt == 2 and claim.num_retries == 1


@pytest.mark.parametrize("outcome", [SUCCESS, FAILED, RETRY])
def test_finish_releases_the_slot_to_the_first_parked_waiter(
    backend: Backend, new_record: NewRecord, outcome: Outcome
) -> None:
    holder, first, second = (new_record(run="r", max_retries=1) for _ in range(3))
    for record in (holder, first, second):
        backend.register(record)
    claim_ids(backend)  # holder runs, first and second park in order
    late = new_record(run="r")
    backend.register(late)  # queued behind the parked ones for the same key
    backend.finish(holder.invocation_id, RUNNER, 1, outcome)
    assert claim_ids(backend, 1) == [first.invocation_id]
    assert status(backend, second.invocation_id) is S.CONCURRENCY_CONTROLLED
    assert claim_ids(backend) == []  # late parks behind second; a retried holder too
    assert status(backend, late.invocation_id) is S.CONCURRENCY_CONTROLLED
    backend.finish(first.invocation_id, RUNNER, 1, SUCCESS)
    assert claim_ids(backend, 1) == [second.invocation_id]


def test_freed_slots_go_to_waiters_in_arrival_order(
    backend: Backend, new_record: NewRecord
) -> None:
    records = [new_record(run="r", limit=2) for _ in range(6)]
    for record in records:
        backend.register(record)
    ids = [r.invocation_id for r in records]
    assert claim_ids(backend) == ids[:2]
    order = []
    running = ids[:2]
    while running:
        backend.finish(running.pop(0), RUNNER, 1, SUCCESS)
        newly = claim_ids(backend)
        order.extend(newly)
        running.extend(newly)
    assert order == ids[2:]


@pytest.mark.parametrize(("runner", "attempt_no"), [(OTHER, 1), (RUNNER, 2), (RUNNER, 0)])
def test_finish_from_a_stale_claim_changes_nothing(
    backend: Backend, new_record: NewRecord, runner: str, attempt_no: int
) -> None:
    record = new_record(run="r")
    backend.register(record)
    claim_ids(backend)
    assert not backend.finish(record.invocation_id, runner, attempt_no, SUCCESS)
    stored = backend.get(record.invocation_id)
    assert stored is not None and stored.status is S.RUNNING and stored.result is None


def test_finish_of_unknown_invocation_is_rejected(backend: Backend) -> None:
    assert not backend.finish("nope", RUNNER, 1, SUCCESS)


def test_finish_twice_is_rejected(backend: Backend, new_record: NewRecord) -> None:
    record = new_record()
    backend.register(record)
    claim_ids(backend)
    assert backend.finish(record.invocation_id, RUNNER, 1, SUCCESS)
    assert not backend.finish(record.invocation_id, RUNNER, 1, FAILED)
    stored = backend.get(record.invocation_id)
    assert stored is not None and stored.status is S.SUCCESS


def test_finish_and_claim_reports_and_claims_in_one_step(
    backend: Backend, new_record: NewRecord
) -> None:
    holder, waiter, other = new_record(run="r"), new_record(run="r"), new_record()
    for record in (holder, waiter, other):
        backend.register(record)
    assert claim_ids(backend, 1) == [holder.invocation_id]
    done, claims = backend.finish_and_claim(
        holder.invocation_id, RUNNER, 1, SUCCESS, max_count=5, lease_seconds=LEASE
    )
    assert done
    # The waiter was still queued behind the holder; with the slot free, it runs now.
    assert [c.invocation_id for c in claims] == [waiter.invocation_id, other.invocation_id]
    assert status(backend, holder.invocation_id) is S.SUCCESS
    stale, more = backend.finish_and_claim(
        holder.invocation_id, RUNNER, 1, SUCCESS, max_count=5, lease_seconds=LEASE
    )
    assert not stale and more == []


# --- release (graceful hand-back) ----------------------------------------------------------------


def test_release_requeues_first_in_line_without_a_retry(
    backend: Backend, new_record: NewRecord
) -> None:
    holder = new_record(reg="k", run="r")
    waiter = new_record(run="r")
    backend.register(holder)
    backend.register(waiter)
    claim_ids(backend)
    assert backend.release(holder.invocation_id, RUNNER, 1)
    stored = backend.get(holder.invocation_id)
    assert stored is not None and stored.status is S.REGISTERED and stored.num_retries == 0
    assert not backend.register(new_record(reg="k")).created  # waiting again: key held
    assert claim_ids(backend, 1, OTHER) == [holder.invocation_id]
    assert attempt(backend, holder.invocation_id) == 2
    assert not backend.finish(holder.invocation_id, RUNNER, 1, SUCCESS)  # old run fenced
    assert backend.finish(holder.invocation_id, OTHER, 2, SUCCESS)
    assert claim_ids(backend) == [waiter.invocation_id]


def test_release_of_a_stale_claim_changes_nothing(backend: Backend, new_record: NewRecord) -> None:
    record = new_record()
    backend.register(record)
    claim_ids(backend)
    assert not backend.release(record.invocation_id, OTHER, 1)
    assert status(backend, record.invocation_id) is S.RUNNING


# --- renew and recover (leases) ------------------------------------------------------------------


def test_renew_extends_owned_leases_and_reports_lost_ones(
    backend: Backend, new_record: NewRecord
) -> None:
    mine, theirs = new_record(), new_record()
    backend.register(mine)
    backend.register(theirs)
    claim_ids(backend, 1)
    claim_ids(backend, 1, OTHER)
    lost = backend.renew(RUNNER, [(mine.invocation_id, 1), (theirs.invocation_id, 1)], 100.0)
    assert lost == [theirs.invocation_id]
    stored = backend.get(mine.invocation_id)
    assert stored is not None and stored.lease_expires_at is not None
    assert stored.lease_expires_at >= time.time() + 90
    assert RUNNER in backend.stats().runners


def test_recover_requeues_expired_work_and_frees_its_slot(
    backend: Backend, new_record: NewRecord
) -> None:
    dead = new_record(run="r")
    waiter = new_record(run="r")
    backend.register(dead)
    backend.register(waiter)
    backend.claim(RUNNER, 10, 1.0, 0)
    assert backend.recover(now=time.time()) == []  # lease still valid
    assert backend.recover(now=time.time() + 5) == [dead.invocation_id]
    stored = backend.get(dead.invocation_id)
    assert stored is not None and stored.status is S.REGISTERED and stored.num_recoveries == 1
    assert not backend.finish(dead.invocation_id, RUNNER, 1, SUCCESS)  # late result fenced
    # The recovered invocation runs first, then the waiter: nothing stays blocked.
    assert claim_ids(backend, 1, OTHER) == [dead.invocation_id]
    backend.finish(dead.invocation_id, OTHER, 2, SUCCESS)
    assert claim_ids(backend, 1, OTHER) == [waiter.invocation_id]


def test_recover_runner_takes_back_a_dead_runners_work_whatever_its_leases(
    backend: Backend, new_record: NewRecord
) -> None:
    dead, waiter, other = new_record(run="r"), new_record(run="r"), new_record()
    for record in (dead, waiter, other):
        backend.register(record)
    assert claim_ids(backend, 1) == [dead.invocation_id]  # the waiter parks behind it
    assert claim_ids(backend, 5, OTHER) == [other.invocation_id]
    backend.renew(RUNNER, [(dead.invocation_id, 1)], LEASE)  # alive a moment ago
    assert backend.recover_runner(RUNNER) == [dead.invocation_id]
    stored = backend.get(dead.invocation_id)
    assert stored is not None and stored.status is S.REGISTERED and stored.num_recoveries == 1
    assert RUNNER not in backend.stats().runners
    assert status(backend, other.invocation_id) is S.RUNNING  # another runner's work stays
    assert not backend.finish(dead.invocation_id, RUNNER, 1, SUCCESS)  # a late result is fenced
    # First in line for its key, then the waiter: the key is not left blocked.
    assert claim_ids(backend, 1, OTHER) == [dead.invocation_id]
    backend.finish(dead.invocation_id, OTHER, 2, SUCCESS)
    assert claim_ids(backend, 1, OTHER) == [waiter.invocation_id]
    assert backend.recover_runner("never-seen") == []


def test_recover_fails_invocations_whose_recoveries_ran_out(
    backend: Backend, new_record: NewRecord
) -> None:
    record = new_record(run="r")
    waiter = new_record(run="r")
    backend.register(record)
    backend.register(waiter)
    limit = backend.options.max_recoveries
    for round_no in range(limit + 1):
        assert claim_ids(backend, 1) == [record.invocation_id], round_no
        assert backend.recover(now=time.time() + LEASE + 1) == [record.invocation_id]
    stored = backend.wait_final(record.invocation_id, 0)
    assert stored is not None and stored.status is S.FAILED
    assert stored.error == backend.options.lost_error
    assert claim_ids(backend) == [waiter.invocation_id]


def test_recover_leaves_renewed_work_alone(backend: Backend, new_record: NewRecord) -> None:
    record = new_record()
    backend.register(record)
    backend.claim(RUNNER, 1, 1.0, 0)
    backend.renew(RUNNER, [(record.invocation_id, 1)], 100.0)
    assert backend.recover(now=time.time() + 5) == []
    assert status(backend, record.invocation_id) is S.RUNNING


def test_recover_expires_final_invocations_after_the_ttl(
    backend: Backend, new_record: NewRecord
) -> None:
    record, pending = new_record(), new_record()
    backend.register(record)
    claim_ids(backend)
    backend.finish(record.invocation_id, RUNNER, 1, SUCCESS)
    backend.register(pending)
    backend.recover(now=time.time() + backend.options.result_ttl_seconds + 1)
    assert backend.get(record.invocation_id) is None
    assert backend.get(pending.invocation_id) is not None  # only final ones expire


# --- reads and admin ----------------------------------------------------------------------------


def test_get_and_wait_of_unknown_invocation(backend: Backend) -> None:
    assert backend.get("missing") is None
    assert backend.wait_final("missing", 0) is None
    assert backend.blocked_by("missing") is None


def test_wait_final_times_out_with_the_current_snapshot(
    backend: Backend, new_record: NewRecord
) -> None:
    record = new_record()
    backend.register(record)
    snapshot = backend.wait_final(record.invocation_id, 0.01)
    assert snapshot is not None and snapshot.status is S.REGISTERED


def test_wait_final_wakes_when_the_invocation_finishes(
    backend: Backend, new_record: NewRecord
) -> None:
    record = new_record()
    backend.register(record)
    claim_ids(backend)
    got: list[S] = []

    def wait() -> None:
        snapshot = backend.wait_final(record.invocation_id, 15)
        assert snapshot is not None
        got.append(snapshot.status)

    waiter = threading.Thread(target=wait)
    waiter.start()
    backend.finish(record.invocation_id, RUNNER, 1, SUCCESS)
    waiter.join(15)
    assert got == [S.SUCCESS]


def test_list_is_newest_first_and_filters(backend: Backend, new_record: NewRecord) -> None:
    a1 = new_record(task_id="t.a")
    b1 = new_record(task_id="t.b")
    a2 = new_record(task_id="t.a")
    for record in (a1, b1, a2):
        backend.register(record)
    claim_ids(backend, 1)  # a1 runs
    ids = [r.invocation_id for r in backend.list_invocations(None, None, 10)]
    assert ids == [a2.invocation_id, b1.invocation_id, a1.invocation_id]
    by_task = backend.list_invocations("t.a", None, 10)
    assert [r.invocation_id for r in by_task] == [a2.invocation_id, a1.invocation_id]
    running = backend.list_invocations(None, S.RUNNING, 10)
    assert [r.invocation_id for r in running] == [a1.invocation_id]
    assert len(backend.list_invocations(None, None, 2)) == 2


def test_stats_counts_by_task_status_and_parked_key(
    backend: Backend, new_record: NewRecord
) -> None:
    for _ in range(3):
        backend.register(new_record(task_id="t.a", run="r"))
    backend.register(new_record(task_id="t.b"))
    claim_ids(backend)
    stats = backend.stats()
    assert stats.by_task_and_status[("t.a", S.RUNNING)] == 1
    assert stats.by_task_and_status[("t.a", S.CONCURRENCY_CONTROLLED)] == 2
    assert stats.by_task_and_status[("t.b", S.RUNNING)] == 1
    assert stats.parked_by_key == {"r": 2}


def test_purge_deletes_records_keys_slots_and_queue(
    backend: Backend, new_record: NewRecord
) -> None:
    holder, parked, queued = new_record(run="r"), new_record(run="r"), new_record(reg="k")
    backend.register(holder)
    backend.register(parked)
    claim_ids(backend, 2)
    backend.register(queued)
    backend.purge()
    assert backend.list_invocations(None, None, 10) == []
    assert backend.get(holder.invocation_id) is None
    assert claim_ids(backend) == []
    fresh = new_record(reg="k", run="r")
    assert backend.register(fresh).created
    assert claim_ids(backend) == [fresh.invocation_id]


# --- atomicity under many threads ----------------------------------------------------------------


def test_simultaneous_registrations_of_one_key_create_one_invocation(
    backend: Backend, new_record: NewRecord
) -> None:
    threads = 16
    barrier = threading.Barrier(threads)
    results: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        record = new_record(reg="k")
        barrier.wait()
        result = backend.register(record)
        with lock:
            results.append(result.invocation_id)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(15)
    assert len(results) == threads
    assert len(set(results)) == 1
    assert len(backend.list_invocations(None, None, 100)) == 1


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrent_claimers_never_exceed_the_limit(
    backend: Backend, new_record: NewRecord, limit: int
) -> None:
    total, threads = 60, 16
    for _ in range(total):
        backend.register(new_record(run="r", limit=limit))
    lock = threading.Lock()
    current = 0
    peak = 0
    done: list[str] = []
    barrier = threading.Barrier(threads)

    def work() -> None:
        nonlocal current, peak
        barrier.wait()
        while True:
            with lock:
                if len(done) >= total:
                    return
            claims = backend.claim(f"r-{threading.get_ident()}", 1, LEASE, 0.05)
            for claim in claims:
                with lock:
                    current += 1
                    peak = max(peak, current)
                time.sleep(0.001)  # simulated work: widens the window a violation would show in
                with lock:
                    current -= 1
                    done.append(claim.invocation_id)
                assert backend.finish(
                    claim.invocation_id, f"r-{threading.get_ident()}", claim.attempt, SUCCESS
                )

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(done) == total and len(set(done)) == total
    assert peak <= limit
    assert all(r.status is S.SUCCESS for r in backend.list_invocations(None, None, total))
