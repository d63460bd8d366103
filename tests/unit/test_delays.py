"""Retry delay options, the back-off computation, ``with_options`` validation and eager mode."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from taskgate import App, InvocationStatus
from taskgate.errors import InvalidTaskOptionsError
from taskgate.record import Claim, OutcomeKind
from taskgate.retry_delays import retry_delay
from taskgate.runner.executor import execute
from taskgate.task import TaskOptions


def job(x: int) -> int:
    return x


def options(**values: Any) -> TaskOptions:
    return TaskOptions.build(job, values)


# --- options -------------------------------------------------------------------------------------


def test_retry_delay_defaults() -> None:
    built = options()
    assert (built.retry_delay, built.retry_backoff, built.retry_backoff_max) == (0.0, False, 600.0)


def test_valid_retry_delays_are_kept() -> None:
    built = options(retry_delay=2, retry_backoff=True, retry_backoff_max=30.5)
    assert (built.retry_delay, built.retry_backoff, built.retry_backoff_max) == (2, True, 30.5)


@pytest.mark.parametrize("option", ["retry_delay", "retry_backoff_max"])
@pytest.mark.parametrize("value", [-1, math.nan, math.inf, "5", None, True])
def test_retry_delays_must_be_finite_non_negative_numbers(option: str, value: Any) -> None:
    with pytest.raises(InvalidTaskOptionsError, match=f"{option} of task job must be a finite"):
        options(**{option: value})


def test_retry_backoff_needs_a_retry_delay() -> None:
    with pytest.raises(InvalidTaskOptionsError, match="retry_backoff=True but retry_delay is 0"):
        options(retry_backoff=True)
    with pytest.raises(InvalidTaskOptionsError, match="retry_backoff of task job must be True"):
        options(retry_delay=1, retry_backoff="yes")


# --- the computation ------------------------------------------------------------------------------


def test_without_backoff_the_delay_is_constant() -> None:
    built = options(retry_delay=1.5)
    assert [retry_delay(built, n) for n in range(4)] == [1.5] * 4
    assert retry_delay(options(), 3) == 0.0


def test_backoff_draws_between_zero_and_the_doubled_delay_capped() -> None:
    built = options(retry_delay=1, retry_backoff=True, retry_backoff_max=10)
    bounds: list[tuple[float, float]] = []

    def highest(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    assert [retry_delay(built, n, highest) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert all(low == 0 for low, _ in bounds)
    assert retry_delay(built, 3, lambda low, high: low) == 0
    assert retry_delay(built, 10_000, highest) == 10  # no overflow for huge retry counts


def test_backoff_uses_random_jitter() -> None:
    built = options(retry_delay=1, retry_backoff=True, retry_backoff_max=10)
    drawn = [retry_delay(built, 3) for _ in range(50)]
    assert all(0 <= d <= 8 for d in drawn)
    assert len(set(drawn)) > 1


def test_the_executor_sets_the_retry_delay(app: App) -> None:
    @app.task(max_retries=3, retry_for=(ValueError, SystemExit), retry_delay=0.25)
    def fails(kind: str) -> None:
        raise ValueError("again") if kind == "value" else SystemExit(1)

    for kind in ("value", "exit"):
        arguments = app.serializer.dumps({"kind": kind})
        claim = Claim("inv", fails.task_id, arguments, 1, 0, 3)
        outcome = execute(app, claim)
        assert outcome.kind is OutcomeKind.RETRY and outcome.retry_delay == 0.25
    final = execute(app, Claim("inv", fails.task_id, arguments, 4, 3, 3))
    assert final.kind is OutcomeKind.FAILED and final.retry_delay == 0


# --- with_options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"delay": 1, "eta": time.time()}, "takes delay or eta, not both"),
        ({"delay": -1}, "delay of task .* must be seconds \\(finite, not negative\\)"),
        ({"delay": math.nan}, "finite, not negative"),
        ({"delay": math.inf}, "finite, not negative"),
        ({"delay": "5"}, "delay of task .* must be seconds, got str"),
        ({"eta": -5.0}, "eta of task .* must be an aware datetime or epoch seconds"),
        ({"eta": math.inf}, "finite, not negative"),
        ({"eta": datetime(2030, 1, 1)}, "naive datetime .* pass an aware one"),
        ({"eta": "2030-01-01"}, "eta of task .* got str"),
    ],
)
def test_with_options_rejects_bad_delays(app: App, values: dict[str, Any], message: str) -> None:
    @app.task
    def later() -> None: ...

    with pytest.raises(InvalidTaskOptionsError, match=message):
        later.with_options(**values)


def test_with_options_takes_no_unknown_option(app: App) -> None:
    @app.task
    def later() -> None: ...

    with pytest.raises(TypeError):
        later.with_options(colour="red")  # type: ignore[call-arg]


def test_an_aware_datetime_in_any_zone_is_the_same_instant(app: App) -> None:
    @app.task
    def later() -> None: ...

    instant = datetime.now(UTC) + timedelta(hours=1)
    east = instant.astimezone(timezone(timedelta(hours=5)))
    a = later.with_options(eta=instant)()
    b = later.with_options(eta=east)()
    assert a.scheduled_for == b.scheduled_for == instant.timestamp()
    assert a.status is InvocationStatus.SCHEDULED


def test_eager_mode_runs_delayed_calls_and_retry_delays_at_once() -> None:
    app = App(backend="memory://", eager=True)
    runs: list[int] = []

    @app.task(max_retries=1, retry_for=(ValueError,), retry_delay=3600)
    def flaky(x: int) -> int:
        runs.append(x)
        if len(runs) == 1:
            raise ValueError("once")
        return x

    invocation = flaky.with_options(delay=3600)(7)
    assert invocation.status is InvocationStatus.SUCCESS
    assert invocation.result == 7 and runs == [7, 7]
