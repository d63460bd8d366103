"""Delayed calls and retry delays (API.md sections 3 and 9), through the public API, on every
backend: timestamps recorded by the task bodies, runners that must wake for timed work."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus, ReusedInvocation
from taskgate.backends.base import Backend
from taskgate.record import InvocationRecord, Outcome, OutcomeKind
from taskgate.runner.base import Runner

S = InvocationStatus
WAIT = 15.0
# A timed invocation becomes claimable within 100 ms of its time; claiming, starting the body
# and a loaded test machine get the rest of this margin (far below the runner's 1 s claim
# timeout, so a runner that is not woken for the due time fails it).
LATE = 0.5
RunRunner = Callable[[Runner], Any]
WaitStatus = Callable[[Any, InvocationStatus], None]


def _started_times(app: App) -> tuple[Callable[..., Any], list[float]]:
    starts: list[float] = []

    @app.task
    def stamp(label: str = "") -> float:
        now = time.time()
        starts.append(now)
        return now

    return stamp, starts


def _idle(app: App) -> None:
    """Return once the runner has run something: it is back in (blocked) claim afterwards."""

    @app.task
    def warm_up() -> None: ...

    warm_up().get_result(WAIT)


def test_a_delayed_call_is_scheduled_and_starts_at_its_time(
    app: App, run_runner: RunRunner
) -> None:
    stamp, _ = _started_times(app)
    with run_runner(app.runner):
        _idle(app)
        before = time.time()
        invocation = stamp.with_options(delay=0.3)("delayed")
        assert invocation.scheduled_for is not None
        assert before + 0.3 <= invocation.scheduled_for <= time.time() + 0.3
        started = invocation.get_result(WAIT)
    eta = invocation.scheduled_for
    assert eta <= started <= eta + LATE
    statuses = [transition.status for transition in invocation.history]
    assert statuses == [S.SCHEDULED, S.RUNNING, S.SUCCESS]


def test_a_scheduled_call_waits_before_any_runner_starts(app: App) -> None:
    stamp, _ = _started_times(app)
    invocation = stamp.with_options(delay=60)("later")
    assert invocation.status is S.SCHEDULED
    assert app.backend.stats().by_task_and_status.get((stamp.task_id, S.SCHEDULED)) == 1
    # Not claimable before its time, by a claim that would otherwise take it.
    assert app.backend.claim("probe", 10, 30.0, 0.0) == []
    assert invocation.status is S.SCHEDULED


@pytest.mark.parametrize("kind", ["datetime", "epoch"])
def test_eta_as_an_aware_datetime_or_epoch_seconds(
    app: App, run_runner: RunRunner, kind: str
) -> None:
    stamp, _ = _started_times(app)
    with run_runner(app.runner):
        _idle(app)
        eta = time.time() + 0.3
        when: Any = datetime.fromtimestamp(eta, UTC) if kind == "datetime" else eta
        invocation = stamp.with_options(eta=when)("at")
        assert invocation.scheduled_for == pytest.approx(eta, abs=1e-3)
        assert invocation.status is S.SCHEDULED or invocation.scheduled_for <= time.time()
        started = invocation.get_result(WAIT)
    assert eta - 1e-3 <= started <= eta + LATE


def test_several_delays_start_in_time_order(app: App, run_runner: RunRunner) -> None:
    stamp, _ = _started_times(app)
    with run_runner(app.runner):
        _idle(app)
        late = stamp.with_options(delay=0.4)("late")
        early = stamp.with_options(delay=0.2)("early")
        assert early.get_result(WAIT) < late.get_result(WAIT)
    for invocation in (early, late):
        assert invocation.scheduled_for is not None
        assert invocation.scheduled_for <= invocation.result <= invocation.scheduled_for + LATE


def test_a_past_eta_or_zero_delay_is_a_normal_call(app: App) -> None:
    stamp, _ = _started_times(app)
    assert stamp.with_options(delay=0)("now").status is S.REGISTERED
    assert stamp.with_options(eta=time.time() - 5)("past").status is S.REGISTERED
    assert stamp.with_options()("plain").scheduled_for is None
    assert stamp("plain").scheduled_for is None


def test_registration_concurrency_folds_identical_calls_into_a_scheduled_one(
    app: App, run_runner: RunRunner
) -> None:
    calls: list[str] = []

    @app.task(registration_concurrency=ConcurrencyControlType.ARGUMENTS)
    def once(name: str) -> str:
        calls.append(name)
        return name

    scheduled = once.with_options(delay=0.3)("a")
    assert scheduled.status is S.SCHEDULED
    folded = once("a")
    assert isinstance(folded, ReusedInvocation)
    assert folded.invocation_id == scheduled.invocation_id
    other = once("b")
    assert other.invocation_id != scheduled.invocation_id
    with run_runner(app.runner):
        assert folded.get_result(WAIT) == "a"
        assert other.get_result(WAIT) == "b"
    assert sorted(calls) == ["a", "b"]
    # Once it has started, the key is free again: a new call is a new invocation.
    assert once("a").invocation_id != scheduled.invocation_id


def _gaps(history: list[Any]) -> list[float]:
    """Seconds between each RETRY and the RUNNING that follows it."""
    gaps = []
    for before, after in itertools.pairwise(history):
        if before.status is S.RETRY:
            assert after.status is S.RUNNING
            gaps.append(after.timestamp - before.timestamp)
    return gaps


def test_retries_are_spaced_by_at_least_the_retry_delay(app: App, run_runner: RunRunner) -> None:
    starts: list[float] = []

    @app.task(max_retries=2, retry_for=(ValueError,), retry_delay=0.2)
    def flaky() -> int:
        starts.append(time.time())
        if len(starts) < 3:
            raise ValueError("not yet")
        return len(starts)

    with run_runner(app.runner):
        invocation = flaky()
        assert invocation.get_result(WAIT) == 3
    assert invocation.num_retries == 2
    gaps = _gaps(invocation.history)
    assert len(gaps) == 2
    assert all(0.2 - 1e-3 <= gap <= 0.2 + LATE for gap in gaps)
    assert all(b - a >= 0.2 - 1e-3 for a, b in itertools.pairwise(starts))


def test_a_retry_waits_in_retry_status(app: App, run_runner: RunRunner) -> None:
    @app.task(max_retries=1, retry_for=(ValueError,), retry_delay=60)
    def fails() -> None:
        raise ValueError("later")

    with run_runner(app.runner):
        invocation = fails()
        deadline = time.monotonic() + WAIT
        while invocation.num_retries < 1:  # the runner reports the first run's failure
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert invocation.status is S.RETRY
    assert app.backend.claim("probe", 10, 30.0, 0.0) == []
    assert invocation.status is S.RETRY


def test_base_exception_retries_wait_too(app: App, run_runner: RunRunner) -> None:
    runs: list[float] = []

    @app.task(max_retries=1, retry_for=(SystemExit,), retry_delay=0.2)
    def exits() -> str:
        runs.append(time.time())
        if len(runs) == 1:
            raise SystemExit(3)
        return "ok"

    with run_runner(app.runner):
        assert exits().get_result(WAIT) == "ok"
    assert runs[1] - runs[0] >= 0.2 - 1e-3


def test_retry_backoff_spacing_is_bounded_by_the_cap(app: App, run_runner: RunRunner) -> None:
    @app.task(
        max_retries=4,
        retry_for=(ValueError,),
        retry_delay=0.05,
        retry_backoff=True,
        retry_backoff_max=0.15,
    )
    def flaky() -> str:
        raise ValueError("always")

    with run_runner(app.runner):
        invocation = flaky()
        with pytest.raises(ValueError):
            invocation.get_result(WAIT)
    gaps = _gaps(invocation.history)
    assert len(gaps) == 4
    caps = [0.05, 0.1, 0.15, 0.15]
    assert all(0 <= gap <= cap + LATE for gap, cap in zip(gaps, caps, strict=True))


def test_purge_drops_scheduled_calls(app: App, run_runner: RunRunner) -> None:
    stamp, starts = _started_times(app)
    stamp.with_options(delay=0.2)("gone")
    app.purge()
    assert app.invocations() == []
    with run_runner(app.runner):
        assert stamp("after").get_result(WAIT) >= 0
        marker = stamp.with_options(delay=0.3)("marker")
        marker.get_result(WAIT)  # past the purged call's time: it would have run by now
    assert len(starts) == 2


# --- the backend contract, with hand-built records ------------------------------------------------


def _status(backend: Backend, invocation_id: str) -> InvocationStatus:
    stored = backend.get(invocation_id)
    assert stored is not None
    return stored.status


def test_backend_a_blocked_claim_returns_at_the_due_time(
    backend: Backend, new_record: Callable[..., InvocationRecord]
) -> None:
    due = time.time() + 0.3
    record = new_record(scheduled_for=due)
    assert backend.register(record).created
    assert _status(backend, record.invocation_id) is S.SCHEDULED
    assert backend.claim("r1", 1, 30.0, 0.0) == []
    claims = backend.claim("r1", 1, 30.0, WAIT)  # blocks: nothing else will wake it
    claimed_at = time.time()
    assert [c.invocation_id for c in claims] == [record.invocation_id]
    assert due <= claimed_at <= due + LATE
    stored = backend.get(record.invocation_id)
    assert stored is not None and stored.scheduled_for == pytest.approx(due)


def test_backend_a_due_invocation_joins_the_tail_of_the_ready_queue(
    backend: Backend, new_record: Callable[..., InvocationRecord]
) -> None:
    timed2 = new_record(scheduled_for=time.time() + 0.2)
    backend.register(timed2)
    assert timed2.scheduled_for is not None
    while time.time() < timed2.scheduled_for + 0.05:  # the clock passes its time, unclaimed
        time.sleep(0.01)
    # Due now, but work registered (ready) after its time, before any claim, comes first.
    ready = new_record()
    backend.register(ready)
    order = [c.invocation_id for c in backend.claim("r1", 2, 30.0, WAIT)]
    if len(order) == 1:
        order += [c.invocation_id for c in backend.claim("r1", 1, 30.0, WAIT)]
    assert order == [ready.invocation_id, timed2.invocation_id]


def test_backend_a_retry_delay_keeps_the_invocation_in_retry(
    backend: Backend, new_record: Callable[..., InvocationRecord]
) -> None:
    record = new_record(max_retries=1)
    backend.register(record)
    (claim,) = backend.claim("r1", 1, 30.0, WAIT)
    finished_at = time.time()
    outcome = Outcome(OutcomeKind.RETRY, b"e", retry_delay=0.3)
    assert backend.finish(record.invocation_id, "r1", claim.attempt, outcome)
    assert _status(backend, record.invocation_id) is S.RETRY
    assert backend.claim("r1", 1, 30.0, 0.0) == []
    (again,) = backend.claim("r1", 1, 30.0, WAIT)
    assert again.invocation_id == record.invocation_id and again.num_retries == 1
    assert finished_at + 0.3 <= time.time() <= finished_at + 0.3 + LATE
