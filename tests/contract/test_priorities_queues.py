"""Queues and priorities of the backend contract ("Queues and priorities" in backends/base.py),
driven directly with hand-built records, on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App
from taskgate.backends.base import Backend
from taskgate.errors import InvocationCancelledError
from taskgate.record import Budget, ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind
from taskgate.runner.base import Runner
from taskgate.status import InvocationStatus as S

RUNNER = "runner-q"
LEASE = 30.0
WAIT = 10.0
SUCCESS = Outcome(OutcomeKind.SUCCESS, b"result")
NewRecord = Callable[..., InvocationRecord]


def registered(backend: Backend, *records: InvocationRecord) -> list[str]:
    for record in records:
        assert backend.register(record).created
    return [record.invocation_id for record in records]


def claim_ids(
    backend: Backend, max_count: int = 50, queues: frozenset[str] | None = None
) -> list[str]:
    return [c.invocation_id for c in backend.claim(RUNNER, max_count, LEASE, 0, queues=queues)]


def claim_one(backend: Backend, invocation_id: str) -> int:
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    assert claim.invocation_id == invocation_id
    return claim.attempt


def depth(backend: Backend) -> dict[str, int]:
    return {queue: n for queue, n in backend.stats().queue_depth.items() if n}


def test_defaults_are_the_default_queue_and_priority_zero(
    backend: Backend, new_record: NewRecord
) -> None:
    [plain] = registered(backend, new_record())
    [other] = registered(backend, new_record(queue="emails", priority=-7))
    stored, stored_other = backend.get(plain), backend.get(other)
    assert stored is not None and (stored.queue, stored.priority) == ("default", 0)
    assert stored_other is not None and (stored_other.queue, stored_other.priority) == (
        "emails",
        -7,
    )
    assert depth(backend) == {"default": 1, "emails": 1}


def test_ready_invocations_go_by_priority_then_call_order(
    backend: Backend, new_record: NewRecord
) -> None:
    low1, high, mid, low2, lowest, top = registered(
        backend,
        new_record(),
        new_record(priority=5),
        new_record(priority=2),
        new_record(),
        new_record(priority=-1000),
        new_record(priority=1000),
    )
    assert claim_ids(backend) == [top, high, mid, low1, low2, lowest]


def test_a_claim_takes_only_from_its_queues(backend: Backend, new_record: NewRecord) -> None:
    a1, b1, d1, a2 = registered(
        backend,
        new_record(queue="a"),
        new_record(queue="b", priority=3),
        new_record(),
        new_record(queue="a", priority=1),
    )
    assert claim_ids(backend, queues=frozenset({"nothing-here"})) == []
    assert claim_ids(backend, queues=frozenset({"a"})) == [a2, a1]
    assert depth(backend) == {"b": 1, "default": 1}
    assert claim_ids(backend, queues=frozenset({"default"})) == [d1]
    assert claim_ids(backend) == [b1]


def test_across_queues_the_highest_priority_goes_first(
    backend: Backend, new_record: NewRecord
) -> None:
    a_low, b_high, c_mid, a_high = registered(
        backend,
        new_record(queue="a"),
        new_record(queue="b", priority=9),
        new_record(queue="c", priority=4),
        new_record(queue="a", priority=9),
    )
    assert claim_ids(backend, 1, frozenset({"a", "c"})) == [a_high]
    assert claim_ids(backend, 2, frozenset({"a", "c"})) == [c_mid, a_low]
    assert claim_ids(backend, 5, None) == [b_high]


def test_finish_and_claim_takes_only_from_its_queues(
    backend: Backend, new_record: NewRecord
) -> None:
    [first] = registered(backend, new_record(queue="a"))
    attempt = claim_one(backend, first)
    on_b, on_a = registered(backend, new_record(queue="b", priority=5), new_record(queue="a"))
    finished, claims = backend.finish_and_claim(
        first, RUNNER, attempt, SUCCESS, max_count=5, lease_seconds=LEASE, queues=frozenset({"a"})
    )
    assert finished
    assert [c.invocation_id for c in claims] == [on_a]
    assert claim_ids(backend) == [on_b]


def test_handed_back_work_goes_first_within_its_priority(
    backend: Backend, new_record: NewRecord
) -> None:
    [handed] = registered(backend, new_record())
    attempt = claim_one(backend, handed)
    same, higher = registered(backend, new_record(), new_record(priority=5))
    assert backend.release(handed, RUNNER, attempt)
    assert claim_ids(backend) == [higher, handed, same]


def test_recovered_work_goes_first_within_its_priority(
    backend: Backend, new_record: NewRecord
) -> None:
    [lost] = registered(backend, new_record(queue="q", priority=2))
    claim_one(backend, lost)
    same, lower = registered(backend, new_record(queue="q", priority=2), new_record(queue="q"))
    assert backend.recover_runner(RUNNER) == [lost]
    assert claim_ids(backend, queues=frozenset({"q"})) == [lost, same, lower]


def test_parked_waiters_of_a_running_key_go_by_priority_then_park_order(
    backend: Backend, new_record: NewRecord
) -> None:
    [holder] = registered(backend, new_record(run="key"))
    attempt = claim_one(backend, holder)
    parked = []
    # Each is claimed (and parked) alone: park order is low1, high, low2, higher.
    for priority in (0, 3, 0, 7):
        [waiter] = registered(backend, new_record(run="key", priority=priority))
        assert claim_ids(backend) == []
        parked.append(waiter)
    low1, high, low2, higher = parked
    order = []
    running, running_attempt = holder, attempt
    for _ in range(4):
        assert backend.finish(running, RUNNER, running_attempt, SUCCESS)
        [claim] = backend.claim(RUNNER, 5, LEASE, 0)
        running, running_attempt = claim.invocation_id, claim.attempt
        order.append(running)
    assert order == [higher, high, low1, low2]


def test_woken_waiters_go_first_within_their_priority(
    backend: Backend, new_record: NewRecord
) -> None:
    [holder] = registered(backend, new_record(run="key"))
    attempt = claim_one(backend, holder)
    [waiter] = registered(backend, new_record(run="key"))
    assert claim_ids(backend) == []
    plain, urgent = registered(backend, new_record(), new_record(priority=1))
    assert backend.finish(holder, RUNNER, attempt, SUCCESS)
    assert claim_ids(backend) == [urgent, waiter, plain]


def test_budget_waiters_keep_their_queue(backend: Backend) -> None:
    budget = Budget("limit q", "q", concurrency=1)
    plan = ConcurrencyPlan(budgets=(budget,))
    [holder] = registered(backend, _on(plan, "b"))
    attempt = claim_one(backend, holder)
    [waiter] = registered(backend, _on(plan, "b"))
    assert claim_ids(backend) == []
    assert backend.finish(holder, RUNNER, attempt, SUCCESS)
    assert claim_ids(backend, queues=frozenset({"a"})) == []
    assert claim_ids(backend, queues=frozenset({"b"})) == [waiter]


_budget_ids = iter(range(10**9))


def _on(plan: ConcurrencyPlan, queue: str) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"qb-{next(_budget_ids)}-{time.monotonic_ns()}",
        task_id="tests.task",
        arguments=b"args",
        plan=plan,
        queue=queue,
    )


def test_a_blocked_claim_of_one_queue_does_not_eat_a_wake_up_of_another(
    backend: Backend, new_record: NewRecord
) -> None:
    got: dict[str, list[str]] = {}
    elapsed: dict[str, float] = {}

    def claimer(queue: str, timeout: float) -> None:
        start = time.monotonic()
        claims = backend.claim(f"runner-{queue}", 1, LEASE, timeout, queues=frozenset({queue}))
        elapsed[queue] = time.monotonic() - start
        got[queue] = [c.invocation_id for c in claims]

    threads = [
        threading.Thread(target=claimer, args=("a", 2.0), daemon=True),
        threading.Thread(target=claimer, args=("b", WAIT), daemon=True),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # let both block first (if they do not yet, they find the work at once)
    [on_b] = registered(backend, new_record(queue="b"))
    threads[1].join(WAIT + 5)
    assert got["b"] == [on_b]
    assert elapsed["b"] < WAIT / 2  # woken, not found at the end of its timeout
    threads[0].join(WAIT)
    assert got["a"] == []


@pytest.mark.parametrize("priority", [-1000, 1000])
def test_priority_bounds_are_stored(backend: Backend, new_record: NewRecord, priority: int) -> None:
    [one] = registered(backend, new_record(priority=priority))
    stored = backend.get(one)
    assert stored is not None and stored.priority == priority and stored.status is S.REGISTERED
    assert claim_ids(backend) == [one]


# --- through the public API ----------------------------------------------------------------------


def test_a_runner_runs_higher_priorities_first(
    make_app: Callable[..., App], run_runner: Callable[[Runner], Any]
) -> None:
    app = make_app(threads=1)
    order: list[str] = []

    @app.task(priority=2)
    def note(label: str) -> None:
        order.append(label)

    calls = [
        note("task-priority"),
        note.with_options(priority=-5)("low"),
        note.with_options(priority=9)("high"),
        note.with_options(priority=2, queue="other")("other-queue"),
    ]
    stored = [app.backend.get(c.invocation_id) for c in calls]
    assert [r.priority if r else None for r in stored] == [2, -5, 9, 2]
    with run_runner(app.runner):
        for call in calls:
            call.get_result(WAIT)
    assert order[0] == "high" and order[-1] == "low"
    assert set(order[1:3]) == {"task-priority", "other-queue"}


def test_a_cancelled_waiting_call_never_runs(app: App, run_runner: Callable[[Runner], Any]) -> None:
    ran: list[int] = []

    @app.task
    def work(x: int) -> int:
        ran.append(x)
        return x

    later = work.with_options(delay=60)(1)
    assert later.cancel() is True
    assert later.status is S.CANCELLED
    with pytest.raises(InvocationCancelledError):
        later.get_result(WAIT)
    assert later.cancel() is False
    with run_runner(app.runner):
        assert work(2).get_result(WAIT) == 2
    assert ran == [2]
