"""Cancellation in the backend contract ("Cancellation" in backends/base.py and
``Backend.cancel``), driven directly with hand-built records, on every backend: each place a
waiting invocation can sit, running cancels, and a cancel/finish race."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable

import pytest

from taskgate.backends.base import Backend
from taskgate.record import (
    Budget,
    CancelResult,
    ConcurrencyPlan,
    InvocationRecord,
    Outcome,
    OutcomeKind,
)
from taskgate.status import InvocationStatus as S

RUNNER = "runner-c"
LEASE = 30.0
WAIT = 10.0
SUCCESS = Outcome(OutcomeKind.SUCCESS, b"result")
NewRecord = Callable[..., InvocationRecord]
BUDGET = Budget("limit cancel", "cancel", concurrency=1)
_ids = itertools.count()


def on_budget(budget: Budget = BUDGET, reg: str | None = None) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"cb-{next(_ids)}-{time.monotonic_ns()}",
        task_id="tests.task",
        arguments=b"args",
        plan=ConcurrencyPlan(registration_key=reg, budgets=(budget,)),
    )


def registered(backend: Backend, *records: InvocationRecord) -> list[str]:
    for record in records:
        assert backend.register(record).created
    return [record.invocation_id for record in records]


def claims(backend: Backend, max_count: int = 50, timeout: float = 0) -> dict[str, int]:
    """Claimed ids with their attempts, in claim order."""
    return {c.invocation_id: c.attempt for c in backend.claim(RUNNER, max_count, LEASE, timeout)}


def status(backend: Backend, invocation_id: str) -> S:
    found = backend.get(invocation_id)
    assert found is not None
    return found.status


def assert_cancelled(backend: Backend, invocation_id: str) -> None:
    found = backend.get(invocation_id)
    assert found is not None
    assert found.status is S.CANCELLED
    assert found.history[-1].status is S.CANCELLED
    final = backend.wait_final(invocation_id, 0)
    assert final is not None and final.status is S.CANCELLED


def assert_nothing_ready(backend: Backend) -> None:
    assert claims(backend) == {}
    assert not any(backend.stats().queue_depth.values())


# --- waiting invocations --------------------------------------------------------------------------


def test_a_registered_invocation_is_cancelled_and_frees_its_registration_key(
    backend: Backend, new_record: NewRecord
) -> None:
    [waiting] = registered(backend, new_record(reg="reg-key"))
    assert backend.cancel(waiting) is CancelResult.CANCELLED
    assert_cancelled(backend, waiting)
    assert_nothing_ready(backend)
    again = new_record(reg="reg-key")
    result = backend.register(again)
    assert result.created and result.invocation_id == again.invocation_id
    assert list(claims(backend)) == [again.invocation_id]


def test_a_scheduled_invocation_leaves_the_timed_structure(
    backend: Backend, new_record: NewRecord
) -> None:
    [scheduled] = registered(backend, new_record(reg="sched", scheduled_for=time.time() + 0.3))
    assert status(backend, scheduled) is S.SCHEDULED
    assert backend.cancel(scheduled) is CancelResult.CANCELLED
    assert_cancelled(backend, scheduled)
    # Past its time, a blocked claim finds nothing (it would take it if still timed).
    assert claims(backend, timeout=0.6) == {}
    assert_cancelled(backend, scheduled)
    assert backend.register(new_record(reg="sched")).created


def test_a_retry_waiting_for_its_delay_is_cancelled(
    backend: Backend, new_record: NewRecord
) -> None:
    [retried] = registered(backend, new_record(reg="retry", max_retries=3))
    attempt = claims(backend)[retried]
    retry = Outcome(OutcomeKind.RETRY, b"error", retry_delay=0.3)
    assert backend.finish(retried, RUNNER, attempt, retry)
    assert status(backend, retried) is S.RETRY
    assert backend.cancel(retried) is CancelResult.CANCELLED
    assert_cancelled(backend, retried)
    assert claims(backend, timeout=0.6) == {}
    assert backend.register(new_record(reg="retry")).created


def test_a_waiter_parked_on_a_running_key_is_cancelled(
    backend: Backend, new_record: NewRecord
) -> None:
    [holder] = registered(backend, new_record(run="run-key"))
    attempt = claims(backend)[holder]
    [parked] = registered(backend, new_record(run="run-key", reg="parked-reg"))
    assert claims(backend) == {}
    assert status(backend, parked) is S.CONCURRENCY_CONTROLLED
    assert backend.cancel(parked) is CancelResult.CANCELLED
    assert_cancelled(backend, parked)
    assert backend.stats().parked_by_key.get("run-key", 0) == 0
    assert backend.finish(holder, RUNNER, attempt, SUCCESS)
    assert_nothing_ready(backend)
    # The key is free: a fresh call runs at once.
    [fresh] = registered(backend, new_record(run="run-key", reg="parked-reg"))
    assert list(claims(backend)) == [fresh]


def test_a_woken_waiter_of_a_running_key_passes_its_slot_on(
    backend: Backend, new_record: NewRecord
) -> None:
    [holder] = registered(backend, new_record(run="run-key"))
    attempt = claims(backend)[holder]
    first, second = registered(backend, new_record(run="run-key"), new_record(run="run-key"))
    assert claims(backend) == {}
    assert backend.finish(holder, RUNNER, attempt, SUCCESS)  # the slot is handed to `first`
    assert backend.cancel(first) is CancelResult.CANCELLED
    assert_cancelled(backend, first)
    claimed = claims(backend)
    assert list(claimed) == [second]
    assert backend.finish(second, RUNNER, claimed[second], SUCCESS)
    [fresh] = registered(backend, new_record(run="run-key"))
    assert list(claims(backend)) == [fresh]


def test_a_waiter_parked_on_a_budget_is_cancelled(backend: Backend) -> None:
    [holder] = registered(backend, on_budget())
    attempt = claims(backend)[holder]
    [parked] = registered(backend, on_budget(reg="budget-reg"))
    assert claims(backend) == {}
    assert status(backend, parked) is S.CONCURRENCY_CONTROLLED
    assert backend.cancel(parked) is CancelResult.CANCELLED
    assert_cancelled(backend, parked)
    assert [u.waiting for u in backend.budget_usage("cancel")] == [0]
    assert backend.finish(holder, RUNNER, attempt, SUCCESS)
    assert_nothing_ready(backend)
    assert backend.budget_usage("cancel") == []
    [fresh] = registered(backend, on_budget(reg="budget-reg"))
    assert list(claims(backend)) == [fresh]


def test_a_woken_budget_waiter_passes_the_capacity_on(backend: Backend) -> None:
    [holder] = registered(backend, on_budget())
    attempt = claims(backend)[holder]
    first, second = registered(backend, on_budget(), on_budget())
    assert claims(backend) == {}
    assert backend.finish(holder, RUNNER, attempt, SUCCESS)  # wakes `first` (woken count 1)
    assert backend.cancel(first) is CancelResult.CANCELLED
    assert_cancelled(backend, first)
    claimed = claims(backend)
    assert list(claimed) == [second]
    assert backend.finish(second, RUNNER, claimed[second], SUCCESS)
    assert backend.budget_usage("cancel") == []
    [fresh] = registered(backend, on_budget())
    assert list(claims(backend)) == [fresh]


def test_result_waiters_wake_on_a_cancel(backend: Backend, new_record: NewRecord) -> None:
    [waiting] = registered(backend, new_record())
    seen: list[S | None] = []

    def wait() -> None:
        found = backend.wait_final(waiting, WAIT)
        seen.append(found.status if found else None)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(0.1)  # let it block first (if it does not yet, it finds the final status)
    assert backend.cancel(waiting) is CancelResult.CANCELLED
    thread.join(WAIT)
    assert seen == [S.CANCELLED]


def test_final_and_unknown_invocations(backend: Backend, new_record: NewRecord) -> None:
    [done] = registered(backend, new_record())
    attempt = claims(backend)[done]
    assert backend.finish(done, RUNNER, attempt, SUCCESS)
    assert backend.cancel(done) is CancelResult.FINAL
    assert status(backend, done) is S.SUCCESS
    assert backend.cancel("no-such-invocation") is CancelResult.MISSING
    [cancelled] = registered(backend, new_record())
    assert backend.cancel(cancelled) is CancelResult.CANCELLED
    assert backend.cancel(cancelled) is CancelResult.FINAL


# --- running invocations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [
        SUCCESS,
        Outcome(OutcomeKind.FAILED, b"error"),
        Outcome(OutcomeKind.RETRY, b"error"),
        Outcome(OutcomeKind.RETRY, b"error", retry_delay=5.0),
        Outcome(OutcomeKind.CANCELLED, b"cancelled"),
    ],
    ids=["success", "failed", "retry", "retry-delay", "cancelled"],
)
def test_a_running_cancel_is_requested_then_any_outcome_ends_cancelled(
    backend: Backend, new_record: NewRecord, outcome: Outcome
) -> None:
    [running] = registered(backend, new_record(run="run-key", reg="r", max_retries=3))
    attempt = claims(backend)[running]
    [parked] = registered(backend, new_record(run="run-key"))
    assert claims(backend) == {}
    assert backend.cancel(running) is CancelResult.REQUESTED
    assert status(backend, running) is S.RUNNING
    found = backend.get(running)
    assert found is not None and found.cancel_requested
    assert backend.cancel(running) is CancelResult.FINAL  # requested already
    assert backend.wait_cancel_requests(RUNNER, WAIT) == [running]
    assert backend.finish(running, RUNNER, attempt, outcome)
    assert_cancelled(backend, running)
    # The slot went on to the parked waiter; the registration key was not taken back.
    assert list(claims(backend)) == [parked]
    assert backend.register(new_record(reg="r")).created


def test_a_cancel_request_is_returned_once_to_its_runner_only(
    backend: Backend, new_record: NewRecord
) -> None:
    [running] = registered(backend, new_record())
    attempt = claims(backend)[running]
    assert backend.wait_cancel_requests(RUNNER, 0.05) == []
    assert backend.cancel(running) is CancelResult.REQUESTED
    assert backend.wait_cancel_requests("another-runner", 0.05) == []
    assert backend.wait_cancel_requests(RUNNER, WAIT) == [running]
    assert backend.wait_cancel_requests(RUNNER, 0.05) == []
    assert backend.finish(running, RUNNER, attempt, SUCCESS)
    assert_cancelled(backend, running)


def test_a_blocked_wait_for_cancel_requests_wakes_at_once(
    backend: Backend, new_record: NewRecord
) -> None:
    [running] = registered(backend, new_record())
    claims(backend)
    got: list[list[str]] = []
    elapsed: list[float] = []

    def watch() -> None:
        start = time.monotonic()
        got.append(backend.wait_cancel_requests(RUNNER, WAIT))
        elapsed.append(time.monotonic() - start)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.1)  # let it block first (if it does not yet, it finds the request at once)
    assert backend.cancel(running) is CancelResult.REQUESTED
    thread.join(WAIT + 5)
    assert got == [[running]]
    assert elapsed[0] < WAIT / 2


def test_a_handed_back_cancel_requested_invocation_ends_cancelled(
    backend: Backend, new_record: NewRecord
) -> None:
    [running] = registered(backend, new_record(run="run-key"))
    attempt = claims(backend)[running]
    assert backend.cancel(running) is CancelResult.REQUESTED
    assert backend.release(running, RUNNER, attempt)
    assert_cancelled(backend, running)
    assert_nothing_ready(backend)
    [fresh] = registered(backend, new_record(run="run-key"))
    assert list(claims(backend)) == [fresh]


@pytest.mark.parametrize("how", ["runner", "lease"])
def test_a_recovered_cancel_requested_invocation_ends_cancelled(
    backend: Backend, new_record: NewRecord, how: str
) -> None:
    [running] = registered(backend, on_budget())
    claims(backend)
    assert backend.cancel(running) is CancelResult.REQUESTED
    if how == "runner":
        assert backend.recover_runner(RUNNER) == [running]
    else:
        assert backend.recover_leases(time.time() + LEASE + 60) == [running]
    assert_cancelled(backend, running)
    assert_nothing_ready(backend)
    assert backend.budget_usage("cancel") == []
    [fresh] = registered(backend, on_budget())
    assert list(claims(backend)) == [fresh]


def test_purge_forgets_cancel_requests(backend: Backend, new_record: NewRecord) -> None:
    [running] = registered(backend, new_record())
    claims(backend)
    assert backend.cancel(running) is CancelResult.REQUESTED
    backend.purge()
    assert backend.wait_cancel_requests(RUNNER, 0.05) == []
    assert backend.cancel(running) is CancelResult.MISSING


# --- races ----------------------------------------------------------------------------------------

PAIRS = 1000
RACE_BUDGET = Budget("limit race", "race", concurrency=PAIRS)


def _race_record(new_record: NewRecord, index: int) -> InvocationRecord:
    """Half on a running key, half on a budget, both with room for every pair."""
    if index % 2:
        return new_record(run="race-key", limit=PAIRS)
    return on_budget(RACE_BUDGET)


def _run_pair(first: Callable[[], None], second: Callable[[], None]) -> None:
    """Run two loops in threads started together; bounded."""
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(body: Callable[[], None]) -> None:
        try:
            start.wait(WAIT)
            body()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "the race did not end"
    assert not errors, errors


def _maybe_yield(index: int, every: int) -> None:
    """Give the other thread the lead now and then, so that either side of a pair may come
    first even where the GIL would let one side always win (not needed for correctness)."""
    if index % every == 0:
        time.sleep(0)


def _assert_no_capacity_leaked(backend: Backend, new_record: NewRecord) -> None:
    """A fresh running_limit=1 call and a fresh concurrency=1 budget call both run."""
    assert_nothing_ready(backend)
    assert backend.stats().parked_by_key == {}
    key_call = new_record(run="race-key", limit=1)
    budget_call = on_budget(Budget("limit race", "race", concurrency=1))
    registered(backend, key_call, budget_call)
    assert sorted(claims(backend)) == sorted([key_call.invocation_id, budget_call.invocation_id])


def test_cancel_racing_finish_ends_in_exactly_one_final_status(
    backend: Backend, new_record: NewRecord
) -> None:
    ids = registered(backend, *(_race_record(new_record, i) for i in range(PAIRS)))
    attempts: dict[str, int] = {}
    while len(attempts) < PAIRS:
        claimed = claims(backend, 200)
        assert claimed, "every pair must be claimable at once"
        attempts |= claimed
    cancelled: dict[str, CancelResult] = {}
    finished: dict[str, bool] = {}
    pair = threading.Barrier(2)  # each pair starts together: either may come first

    def finish_all() -> None:
        for index, invocation_id in enumerate(ids):
            pair.wait(WAIT)
            _maybe_yield(index, 2)
            finished[invocation_id] = backend.finish(
                invocation_id, RUNNER, attempts[invocation_id], SUCCESS
            )

    def cancel_all() -> None:
        for index, invocation_id in enumerate(ids):
            pair.wait(WAIT)
            _maybe_yield(index, 3)
            cancelled[invocation_id] = backend.cancel(invocation_id)

    _run_pair(finish_all, cancel_all)
    for invocation_id in ids:
        assert finished[invocation_id]  # a cancel request never fences the runner off
        final = status(backend, invocation_id)
        if cancelled[invocation_id] is CancelResult.REQUESTED:
            assert final is S.CANCELLED
        else:
            assert cancelled[invocation_id] is CancelResult.FINAL
            assert final is S.SUCCESS
        found = backend.get(invocation_id)
        assert found is not None
        assert [t.status for t in found.history if t.status.is_final] == [final]
    backend.wait_cancel_requests(RUNNER, 0)  # drain what the runner did not read
    _assert_no_capacity_leaked(backend, new_record)


def test_cancel_racing_claim_ends_in_exactly_one_final_status(
    backend: Backend, new_record: NewRecord
) -> None:
    """Waiting cancels race claims: each is cancelled waiting, or cancelled while it runs, or
    runs to success."""
    ids = registered(backend, *(_race_record(new_record, i) for i in range(PAIRS)))
    finished: dict[str, bool] = {}
    cancelled: dict[str, CancelResult] = {}
    step = threading.Barrier(2)  # lockstep: a claim of a few per cancel

    def claim_and_finish() -> None:
        deadline = time.monotonic() + 120
        steps = 0
        while time.monotonic() < deadline:
            if steps < PAIRS:
                step.wait(WAIT)
                _maybe_yield(steps, 2)
                steps += 1
            batch = backend.claim(RUNNER, 2, LEASE, 0)
            if not batch and steps == PAIRS:
                break
            for claim in batch:
                finished[claim.invocation_id] = backend.finish(
                    claim.invocation_id, RUNNER, claim.attempt, SUCCESS
                )

    order = list(ids)
    random.Random(7).shuffle(order)  # claimed already, being claimed, or still waiting

    def cancel_all() -> None:
        for index, invocation_id in enumerate(order):
            step.wait(WAIT)
            _maybe_yield(index, 3)
            cancelled[invocation_id] = backend.cancel(invocation_id)

    _run_pair(claim_and_finish, cancel_all)
    for invocation_id in ids:
        final = status(backend, invocation_id)
        result = cancelled[invocation_id]
        if result is CancelResult.CANCELLED:
            assert final is S.CANCELLED and invocation_id not in finished
        elif result is CancelResult.REQUESTED:
            assert final is S.CANCELLED and finished[invocation_id]
        else:
            assert result is CancelResult.FINAL
            assert final is S.SUCCESS and finished[invocation_id]
        found = backend.get(invocation_id)
        assert found is not None
        assert [t.status for t in found.history if t.status.is_final] == [final]
    backend.wait_cancel_requests(RUNNER, 0)
    _assert_no_capacity_leaked(backend, new_record)


CONTENDED = 400


def test_cancels_racing_wake_ups_of_contended_waiters_leak_nothing(
    backend: Backend, new_record: NewRecord
) -> None:
    """Few slots, many waiters: cancels hit parked, woken and running invocations while
    finishes hand slots and woken counts on; every invocation ends final, nothing stalls."""
    budget = Budget("limit race", "race", concurrency=3)
    ids = registered(
        backend,
        *(
            new_record(run="race-key", limit=3, task_id=CONTENDED_TASK)
            if i % 2
            else _contended_on(budget)
            for i in range(CONTENDED)
        ),
    )
    order = list(ids)
    random.Random(13).shuffle(order)  # parked, woken and running ones alike
    cancelled: dict[str, CancelResult] = {}
    finished: dict[str, bool] = {}
    step = threading.Barrier(2)  # lockstep: one claim (and finish) per cancel

    def work() -> None:
        deadline = time.monotonic() + 120
        steps = 0
        while time.monotonic() < deadline:
            if steps < CONTENDED:
                step.wait(WAIT)
                steps += 1
            _maybe_yield(steps, 2)
            batch = backend.claim(RUNNER, 1, LEASE, 0)
            for claim in batch:
                finished[claim.invocation_id] = backend.finish(
                    claim.invocation_id, RUNNER, claim.attempt, SUCCESS
                )
            if not batch and steps == CONTENDED and not _unfinished(backend):
                return
        raise AssertionError(f"stalled: {_unfinished(backend)} invocations never ended")

    def cancel_all() -> None:
        for index, invocation_id in enumerate(order):
            step.wait(WAIT)
            _maybe_yield(index, 3)
            cancelled[invocation_id] = backend.cancel(invocation_id)

    _run_pair(work, cancel_all)
    for invocation_id in ids:
        final = status(backend, invocation_id)
        result = cancelled[invocation_id]
        if result is CancelResult.CANCELLED:
            assert final is S.CANCELLED and invocation_id not in finished
        else:
            assert finished[invocation_id]
            assert final is (S.CANCELLED if result is CancelResult.REQUESTED else S.SUCCESS)
    backend.wait_cancel_requests(RUNNER, 0)
    _assert_no_capacity_leaked(backend, new_record)


CONTENDED_TASK = "tests.contended"


def _contended_on(budget: Budget) -> InvocationRecord:
    record = on_budget(budget)
    record.task_id = CONTENDED_TASK
    return record


def _unfinished(backend: Backend) -> int:
    counts = backend.stats().by_task_and_status
    return sum(
        n for (task, state), n in counts.items() if task == CONTENDED_TASK and not state.is_final
    )
