"""ProcessRunner timeouts and cancels of a body blocked in one long C call (API.md section 9):
the worker is killed once ``shutdown_grace_seconds`` pass after the interrupt, the supervisor
reports the run in the worker's name, and the slot is not reused before the kill."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskgate import InvocationStatus
from taskgate.errors import InvocationCancelledError, TaskTimeoutError
from taskgate.runner import ProcessRunner

APPS = Path(__file__).resolve().parents[1] / "apps"
WAIT = 60.0
S = InvocationStatus


@pytest.fixture
def interrupt_app(shared_backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", shared_backend_url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", f"intr-{uuid.uuid4().hex[:12]}")
    monkeypatch.syspath_prepend(str(APPS))
    sys.modules.pop("interrupt_app", None)
    import interrupt_app

    yield interrupt_app
    interrupt_app.app.purge()
    interrupt_app.app.backend.close()
    sys.modules.pop("interrupt_app", None)


def _wait_file(path: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _process_runner(module: Any) -> Iterator[ProcessRunner]:
    module.app.conf.processes = 1
    runner = ProcessRunner(module.app, app_spec="interrupt_app:app")
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop_runner_loop()
        thread.join(WAIT)
        assert not thread.is_alive()


def test_a_body_stuck_past_its_timeout_has_its_worker_killed(
    interrupt_app: Any, tmp_path: Path
) -> None:
    first = interrupt_app.stuck(str(tmp_path), "first")
    for _ in _process_runner(interrupt_app):
        _wait_file(tmp_path / "first.pid")
        started = time.monotonic()
        second = interrupt_app.stuck(str(tmp_path), "second")
        with pytest.raises(TaskTimeoutError):
            first.get_result(WAIT)
        # timeout 0.5 s + grace 1 s + the kill and the report: within a few seconds
        assert time.monotonic() - started < 6.0
        result = second.get_result(WAIT)
    assert result["first_alive"] is False  # the slot went on only once the body was gone
    assert first.status is S.FAILED


def test_a_cancelled_body_stuck_in_a_c_call_has_its_worker_killed(
    interrupt_app: Any, tmp_path: Path
) -> None:
    invocation = interrupt_app.sleeps(str(tmp_path))
    for _ in _process_runner(interrupt_app):
        _wait_file(tmp_path / "sleeps.started")
        interrupt_app.app.backend.cancel(invocation.invocation_id)
        record = interrupt_app.app.backend.wait_final(invocation.invocation_id, WAIT)
        assert record is not None and record.status is S.CANCELLED
    with pytest.raises(InvocationCancelledError):
        invocation.get_result(WAIT)


def test_a_killed_timed_out_run_is_retried_when_retry_for_names_it(
    interrupt_app: Any, tmp_path: Path
) -> None:
    invocation = interrupt_app.stuck_once(str(tmp_path))
    for _ in _process_runner(interrupt_app):
        assert invocation.get_result(WAIT) == 2
    assert invocation.num_retries == 1
