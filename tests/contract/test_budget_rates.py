"""Rate budgets on every backend: at most ``count`` starts within any window of ``period``
seconds, and the timed wake-ups that admit rate waiters when the window allows, with nobody
polling and no release."""

from __future__ import annotations

import threading
import time

import pytest

from taskgate.backends.base import Backend
from taskgate.record import Budget, Rate
from taskgate.status import InvocationStatus as S
from tests.contract.budget_support import (
    LEASE,
    RETRY,
    RUNNER,
    SUCCESS,
    WAIT,
    claim_ids,
    finish,
    record,
    register,
    status,
    stored,
)


def test_a_rate_admits_count_starts_per_window(backend: Backend) -> None:
    rate = Budget("limit api", "api", rate=Rate(2, 60.0))
    ids = register(backend, *(record(rate) for _ in range(3)))
    assert claim_ids(backend) == ids[:2]
    for invocation_id in ids[:2]:
        finish(backend, invocation_id)
    # Finishing frees no rate token: the third waits for the window.
    assert claim_ids(backend) == []
    blocked = backend.blocked_by(ids[2])
    assert blocked is not None
    assert blocked.scope_key == "limit api" and blocked.holders == ()
    assert blocked.ready_at is not None
    assert time.time() + 55 < blocked.ready_at < time.time() + 61
    [usage] = backend.budget_usage("api")
    assert (usage.key, usage.limit, usage.holders, usage.waiting) == ("limit api", "api", (), 1)
    assert usage.window_starts == 2
    assert usage.oldest_wait is not None and usage.oldest_wait <= time.time() + 1


def test_every_start_counts_retries_included(backend: Backend) -> None:
    rate = Budget("limit r", "r", rate=Rate(2, 60.0))
    [only] = register(backend, record(rate))
    assert claim_ids(backend) == [only]
    finish(backend, only, RETRY)
    assert claim_ids(backend) == [only]
    finish(backend, only, RETRY)
    assert claim_ids(backend) == []
    assert status(backend, only) is S.CONCURRENCY_CONTROLLED
    assert backend.budget_usage()[0].window_starts == 2


def test_a_blocked_claim_returns_with_a_rate_waiter_at_its_instant(backend: Backend) -> None:
    period = 0.3
    rated = Budget("limit r", "r", rate=Rate(2, period))
    ids = register(backend, *(record(rated) for _ in range(3)))
    assert claim_ids(backend) == ids[:2]
    assert status(backend, ids[2]) is S.CONCURRENCY_CONTROLLED
    blocked = backend.blocked_by(ids[2])
    assert blocked is not None and blocked.scope_key == "limit r" and blocked.holders == ()
    assert blocked.ready_at is not None
    started = stored(backend, ids[0]).history[-1].timestamp
    assert blocked.ready_at == pytest.approx(started + period, abs=0.05)
    [usage] = backend.budget_usage("r")
    assert (usage.window_starts, usage.waiting, usage.holders) == (2, 1, ())
    # Nothing is released and nobody polls: the blocked claim below is the only call, and it
    # returns with the waiter at its instant.
    assert claim_ids(backend, 1, timeout=WAIT) == [ids[2]]
    returned = time.time()
    assert stored(backend, ids[2]).history[-1].timestamp >= blocked.ready_at - 0.001
    # Well before the 2 s a blocked claim would wait without knowing when the rate admits.
    assert returned < blocked.ready_at + 1.0


def test_an_idle_claim_wakes_for_a_rate_wait_added_later(backend: Backend) -> None:
    rate = Budget("limit api", "api", rate=Rate(1, 0.5))
    claimed: list[str] = []
    started = threading.Event()

    def idle_claim() -> None:
        started.set()
        claimed.extend(claim_ids(backend, 1, timeout=WAIT, runner="idle"))

    [first] = register(backend, record(rate))
    assert claim_ids(backend) == [first]
    waiter = threading.Thread(target=idle_claim)
    waiter.start()
    started.wait(WAIT)
    [second] = register(backend, record(rate))
    waiter.join(WAIT)
    assert claimed == [second]


@pytest.mark.parametrize("concurrency", [None, 10])
def test_a_rate_never_admits_more_than_count_starts_per_window(
    backend: Backend, concurrency: int | None
) -> None:
    # Without slots, no release ever wakes a waiter: every wake-up comes from the timed
    # structure, which must keep a wake-up for the waiters left after each one.
    rate = Rate(3, 0.25)
    rated = Budget("limit r", "r", concurrency=concurrency, rate=rate)
    ids = register(backend, *(record(rated) for _ in range(10)))
    started: list[float] = []
    deadline = time.monotonic() + WAIT
    while len(started) < len(ids) and time.monotonic() < deadline:
        for invocation_id in claim_ids(backend, timeout=1.0):
            started.append(stored(backend, invocation_id).history[-1].timestamp)
            finish(backend, invocation_id)
    assert len(started) == len(ids)
    started.sort()
    for i in range(len(started) - rate.count):
        assert started[i + rate.count] - started[i] >= rate.period - 0.001


def test_rate_waiters_never_stall_when_claims_come_one_at_a_time(backend: Backend) -> None:
    """Six invocations under 2 starts per 0.5 s, claimed one at a time with pauses (a runner
    whose threads are busy): all start within a few windows, none finishing."""
    rated = Budget("limit r", "r", rate=Rate(2, 0.5))
    ids = register(backend, *(record(rated) for _ in range(6)))
    started = claim_ids(backend)
    assert len(started) == 2
    time.sleep(0.6)
    started += claim_ids(backend, 1)  # a timed wake-up wakes 2, one is claimed
    time.sleep(0.6)  # the next one fires while the other woken waiter is unclaimed
    deadline = time.time() + 4
    while time.time() < deadline and len(started) < 6:
        started += claim_ids(backend, 1, timeout=0.3)
    left = [i for i in ids if i not in started]
    assert not left, [(status(backend, i), backend.blocked_by(i)) for i in left]


def test_a_busy_runner_picks_up_a_rate_waiter_at_its_instant(backend: Backend) -> None:
    rated = Budget("limit r", "r", rate=Rate(1, 0.2))
    first, waiter = register(backend, record(rated), record(rated))
    assert claim_ids(backend) == [first]
    finish(backend, first)
    # The queue never runs dry: only claims made while finishing see the waiter become due.
    [current] = register(backend, record())
    assert claim_ids(backend) == [current]
    deadline = time.monotonic() + WAIT
    while True:
        register(backend, record())
        done, claims = backend.finish_and_claim(
            current, RUNNER, 1, SUCCESS, max_count=1, lease_seconds=LEASE
        )
        assert done and time.monotonic() < deadline, "the rate waiter was never claimed"
        [current] = [c.invocation_id for c in claims]
        if current == waiter:
            break
