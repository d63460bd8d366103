"""How a runner reacts to backend errors (API.md section 7), on every backend.

``BackendUnavailableError`` is retried with back-off and logged once per outage; any other
``BackendError`` is fatal: logged once at ERROR, claiming stops, running tasks get the grace
period, and ``run()`` raises the error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App, InvocationStatus
from taskgate.errors import (
    BackendAuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigError,
)
from taskgate.record import Claim
from taskgate.runner.base import Runner

S = InvocationStatus
WAIT = 15.0


class Running:
    """A runner's ``run()`` in a thread, keeping what it raised."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-runner", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:
            self.error = exc

    def join(self) -> BaseException | None:
        """Wait for ``run()`` to end (the test fails after ``WAIT``); what it raised."""
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the runner did not stop"
        return self.error


def wait_for_records(caplog: pytest.LogCaptureFixture, text: str, count: int = 1) -> None:
    """Block until ``count`` log lines contain ``text``; fails the test after ``WAIT``."""
    deadline = time.monotonic() + WAIT
    while sum(text in record.getMessage() for record in caplog.records) < count:
        assert time.monotonic() < deadline, f"fewer than {count} log lines with {text!r}"
        time.sleep(0.01)


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.message]


def test_a_backend_error_from_claim_stops_the_runner_and_run_raises_it(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fatal = BackendError("the store refused this runner; fix it and start again")

    def claim(*args: Any, **kwargs: Any) -> list[Claim]:
        raise fatal

    monkeypatch.setattr(app.backend, "claim", claim)
    caplog.set_level(logging.INFO, logger="taskgate")
    running = Running(app.runner)
    assert running.join() is fatal
    assert not app.runner.is_running
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"runner {app.runner.runner_id} stopping: {fatal}"]
    assert app.runner.runner_id not in app.backend.stats().runners


def test_running_tasks_get_the_grace_period_after_a_fatal_error(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(lease_seconds=0.3, shutdown_grace_seconds=WAIT)
    started, release = threading.Event(), threading.Event()

    @app.task
    def slow() -> str:
        started.set()
        release.wait(WAIT)
        return "done"

    renew = app.backend.renew
    refused: list[int] = []

    def renew_refused_once(*args: Any, **kwargs: Any) -> list[str]:
        if started.is_set() and not refused:
            refused.append(1)
            raise BackendAuthenticationError("credentials refused")
        return renew(*args, **kwargs)

    monkeypatch.setattr(app.backend, "renew", renew_refused_once)
    caplog.set_level(logging.INFO, logger="taskgate")
    invocation = slow()
    running = Running(app.runner)
    assert started.wait(WAIT)
    wait_for_records(caplog, "stopping: no new claims")
    later = slow()  # the runner no longer claims
    release.set()
    assert isinstance(running.join(), BackendAuthenticationError)
    assert invocation.get_result(WAIT) == "done"
    assert later.status is S.REGISTERED


def test_an_unreachable_backend_is_retried_and_logged_once(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    down = threading.Event()
    down.set()

    def unless_down(operation: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if down.is_set():
                raise BackendUnavailableError("the store is down for a moment")
            return operation(*args, **kwargs)

        return call

    for name in ("claim", "finish", "finish_and_claim", "renew", "recover_leases", "expire_for"):
        monkeypatch.setattr(app.backend, name, unless_down(getattr(app.backend, name)))

    @app.task
    def double(x: int) -> int:
        return 2 * x

    caplog.set_level(logging.DEBUG, logger="taskgate")
    running = Running(app.runner)
    try:
        wait_for_records(caplog, "failed again", count=3)  # retries, logged at DEBUG only
        down.clear()
        wait_for_records(caplog, "reachable again")
        assert double(4).get_result(WAIT) == 8
    finally:
        app.runner.stop_runner_loop()
    assert running.join() is None
    assert len(messages(caplog, logging.WARNING, "unreachable")) == 1
    assert len(messages(caplog, logging.WARNING, "reachable again")) == 1


def test_a_store_that_cannot_be_opened_stops_the_runner_with_its_config_error(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A file where the store's directory should be: every connection attempt fails the same way.
    (tmp_path / "blocker").write_text("")
    app = App("unopenable", backend=f"sqlite:///{tmp_path}/blocker/taskgate.db", threads=2)
    running = Running(app.runner)
    error = running.join()
    assert isinstance(error, ConfigError)
    assert f"{tmp_path}/blocker" in str(error)
    assert messages(caplog, logging.ERROR, "stopping"), caplog.text
