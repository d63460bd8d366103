"""taskgate.runner.outage: one line when the backend goes away, one when it is back."""

from __future__ import annotations

import logging

import pytest

from taskgate.errors import BackendUnavailableError
from taskgate.runner.outage import Outage

DOWN = BackendUnavailableError("Redis at redis://h:1/0 is unreachable")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outage(clock: Clock, caplog: pytest.LogCaptureFixture) -> Outage:
    caplog.set_level(logging.DEBUG, logger="taskgate.runner.outage")
    return Outage("r1", remind_every=60.0, clock=clock)


def test_success_without_an_outage_logs_nothing(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    outage.succeeded()
    assert lines(caplog) == []
    assert not outage.ongoing


def test_first_failure_warns_and_retries_log_at_debug_only(
    outage: Outage, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(DOWN, "claim")
    for _ in range(10):
        clock.now += 1
        outage.failed(DOWN, "heartbeat")
    assert outage.ongoing
    warnings = [text for level, text in lines(caplog) if level == logging.WARNING]
    assert warnings == [f"runner r1: backend unreachable: {DOWN}; retrying with back-off"]
    assert sum(level == logging.DEBUG for level, _ in lines(caplog)) == 10


def test_a_long_outage_is_recalled_once_per_interval(
    outage: Outage, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(DOWN, "claim")
    for _ in range(150):
        clock.now += 1
        outage.failed(DOWN, "claim")
    reminders = [text for level, text in lines(caplog) if "still unreachable" in text]
    assert reminders == [
        f"runner r1: backend still unreachable after 60 s: {DOWN}",
        f"runner r1: backend still unreachable after 120 s: {DOWN}",
    ]


def test_the_first_success_says_how_long_the_outage_lasted(
    outage: Outage, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(DOWN, "claim")
    clock.now += 12.5
    outage.succeeded()
    outage.succeeded()
    assert not outage.ongoing
    assert lines(caplog)[-1] == (logging.WARNING, "runner r1: backend reachable again after 12.5 s")
    assert sum("reachable again" in text for _, text in lines(caplog)) == 1
    outage.failed(DOWN, "claim")  # a new outage is announced again
    assert lines(caplog)[-1][1].startswith("runner r1: backend unreachable")
