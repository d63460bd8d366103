"""Structured lifecycle log lines (issue 14 item 6): every line about an invocation's life
carries ``invocation_id``, ``task``, ``attempt`` and ``runner_id`` as record attributes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App
from taskgate.errors import InvocationCancelledError
from taskgate.logfields import LIFECYCLE_KEYS
from taskgate.runner.base import Runner
from taskgate.runner.heartbeat import Heartbeat

WAIT = 15.0
RunRunner = Callable[[Runner], Any]


def _lifecycle(caplog: pytest.LogCaptureFixture, invocation_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if invocation_id in r.getMessage()]


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_run_lines_carry_the_four_keys(
    app: App, run_runner: RunRunner, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(max_retries=1, retry_for=(ValueError,))
    def flaky(fail: bool) -> str:
        if fail:
            raise ValueError("always")
        return "ok"

    caplog.set_level(logging.DEBUG, logger="taskgate")
    ok, failing = flaky(False), flaky(True)
    with run_runner(app.runner):
        assert ok.get_result(WAIT) == "ok"
        with pytest.raises(ValueError):
            failing.get_result(WAIT)

    for invocation in (ok, failing):
        records = _lifecycle(caplog, invocation.invocation_id)
        for record in records:
            assert all(hasattr(record, key) for key in LIFECYCLE_KEYS), record.getMessage()
            assert record.__dict__["invocation_id"] == invocation.invocation_id
            assert record.__dict__["task"] == flaky.task_id
        messages = " | ".join(r.getMessage() for r in records)
        assert "registered" in messages and "started" in messages, messages
        runs = [r for r in records if r.__dict__["attempt"] is not None]
        assert runs and all(r.__dict__["runner_id"] == app.runner.runner_id for r in runs)

    by_message = {r.getMessage(): r for r in _lifecycle(caplog, failing.invocation_id)}
    retried = [r for m, r in by_message.items() if "retry 1 of 1" in m]
    failed = [r for m, r in by_message.items() if m.endswith("failed: ValueError('always')")]
    assert len(retried) == 1 and retried[0].__dict__["attempt"] == 1
    assert len(failed) == 1 and failed[0].__dict__["attempt"] == 2
    assert failed[0].levelno == logging.WARNING


def test_a_cancel_line_carries_the_four_keys(app: App, caplog: pytest.LogCaptureFixture) -> None:
    @app.task
    def idle() -> None:
        """Never run: cancelled while waiting."""

    caplog.set_level(logging.INFO, logger="taskgate")
    invocation = idle()
    assert invocation.cancel()
    records = [
        r for r in _lifecycle(caplog, invocation.invocation_id) if "cancel" in r.getMessage()
    ]
    assert records
    for record in records:
        assert all(hasattr(record, key) for key in LIFECYCLE_KEYS), record.getMessage()


def test_the_lines_of_a_cancelled_run_carry_the_four_keys(
    app: App, run_runner: RunRunner, caplog: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()

    @app.task
    def loops() -> None:
        started.set()
        while True:
            time.sleep(0.01)

    caplog.set_level(logging.INFO, logger="taskgate")
    invocation = loops()
    with run_runner(app.runner):
        assert started.wait(WAIT)
        assert invocation.cancel()
        with pytest.raises(InvocationCancelledError):
            invocation.get_result(WAIT)
    records = [
        r for r in _lifecycle(caplog, invocation.invocation_id) if "cancel" in r.getMessage()
    ]
    messages = [r.getMessage() for r in records]
    assert any("cancelled while running" in m for m in messages), messages
    for record in records:
        assert all(hasattr(record, key) for key in LIFECYCLE_KEYS), record.getMessage()
        assert record.__dict__["invocation_id"] == invocation.invocation_id
    ended = [r for r in records if "cancelled while running" in r.getMessage()]
    assert ended[0].__dict__["attempt"] == 1
    assert ended[0].__dict__["runner_id"] == app.runner.runner_id


def test_recovered_and_lost_claims_are_one_line_each_with_the_four_keys(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    def idle() -> None:
        """Claimed by a runner that dies: never run here."""

    backend = app.backend
    invocations = [idle(), idle()]
    claims = backend.claim("dead-runner", 2, 30.0, 0.0)
    assert {c.invocation_id for c in claims} == {i.invocation_id for i in invocations}
    real_recover = backend.recover_leases
    # As if the dead runner's leases had expired (an hour from now), without waiting for it.
    monkeypatch.setattr(backend, "recover_leases", lambda: real_recover(time.time() + 3600))
    caplog.set_level(logging.INFO, logger="taskgate")
    lost = [(claim.invocation_id, claim.attempt) for claim in claims]
    beat = Heartbeat(backend, "dead-runner", 30.0, lambda: lost, lambda gone: gone)
    beat._recover()  # the dead runner's claims go back to the queue
    beat._beat()  # and the runner that held them finds them lost
    for invocation, claim in zip(invocations, claims, strict=True):
        records = _lifecycle(caplog, invocation.invocation_id)
        messages = [r.getMessage() for r in records]
        assert any("recovered invocation" in m for m in messages), messages
        assert any("lost the claim" in m for m in messages), messages
        for record in records:
            assert all(hasattr(record, key) for key in LIFECYCLE_KEYS), record.getMessage()
            assert record.__dict__["runner_id"] == "dead-runner"
        (lost_line,) = [r for r in records if "lost the claim" in r.getMessage()]
        assert lost_line.__dict__["attempt"] == claim.attempt
