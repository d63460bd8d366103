"""Actions from the monitor: cancel (waiting and running), retry, limit overrides; every
backend."""

from __future__ import annotations

import re
import threading
import time

import pytest
from starlette.testclient import TestClient

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.errors import InvocationCancelledError
from tests.conftest import WAIT, running, wait_for_status
from tests.monitor.support import csrf_token

S = InvocationStatus


def test_cancel_from_the_api_cancels_a_waiting_invocation(app: App, monitor: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    invocation = noop()
    token = csrf_token(monitor)
    response = monitor.post(
        f"/api/invocations/{invocation.invocation_id}/cancel", headers={"X-CSRF-Token": token}
    )
    assert response.json() == {
        "invocation_id": invocation.invocation_id,
        "cancelled": True,
        "status": "cancelled",
    }
    assert invocation.status is S.CANCELLED
    again = monitor.post(
        f"/api/invocations/{invocation.invocation_id}/cancel", headers={"X-CSRF-Token": token}
    )
    assert again.status_code == 200 and again.json()["cancelled"] is False
    missing = monitor.post("/api/invocations/nope/cancel", headers={"X-CSRF-Token": token})
    assert missing.status_code == 404


def test_cancel_from_the_api_interrupts_a_running_invocation(app: App, monitor: TestClient) -> None:
    started = threading.Event()

    @app.task
    def loops() -> None:
        started.set()
        while True:
            time.sleep(0.01)

    invocation = loops()
    with running(app.runner):
        assert started.wait(WAIT)
        token = csrf_token(monitor)
        response = monitor.post(
            f"/api/invocations/{invocation.invocation_id}/cancel",
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code == 200 and response.json()["cancelled"] is True
        with pytest.raises(InvocationCancelledError):
            invocation.get_result(WAIT)
    assert invocation.status is S.CANCELLED


def test_retry_creates_a_new_invocation_with_the_same_arguments(
    app: App, monitor: TestClient
) -> None:
    attempts: list[int] = []

    @app.task
    def flaky(value: int) -> int:
        attempts.append(value)
        if len(attempts) == 1:
            raise RuntimeError("first time")
        return value * 2

    failed = flaky(21)
    with running(app.runner):
        with pytest.raises(RuntimeError):
            failed.get_result(WAIT)
        token = csrf_token(monitor)
        response = monitor.post(
            f"/api/invocations/{failed.invocation_id}/retry", headers={"X-CSRF-Token": token}
        )
        assert response.status_code == 200
        document = response.json()
        new_id = document["new_invocation_id"]
        assert new_id != failed.invocation_id and document["created"] is True
        assert app.get_invocation(new_id).get_result(WAIT) == 42
    assert attempts == [21, 21]
    assert failed.status is S.FAILED  # the old one keeps its outcome
    # Only a FAILED invocation can be retried.
    conflict = monitor.post(f"/api/invocations/{new_id}/retry", headers={"X-CSRF-Token": token})
    assert conflict.status_code == 409


def test_retry_from_the_page_redirects_to_the_new_invocation(app: App, monitor: TestClient) -> None:
    @app.task
    def fails(text: str) -> None:
        raise ValueError(text)

    failed = fails("x")
    with running(app.runner), pytest.raises(ValueError):
        failed.get_result(WAIT)
    page = monitor.get(f"/invocations/{failed.invocation_id}").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    response = monitor.post(
        f"/invocations/{failed.invocation_id}/retry",
        data={"csrf_token": match.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    new_id = response.headers["location"].split("/")[-1].split("?")[0]
    record = app.backend.get(new_id)
    assert record is not None and record.task_id == fails.task_id
    assert app.serializer.loads(record.arguments) == {"text": "x"}
    assert 'id="action-notice"' in monitor.get(response.headers["location"]).text


def test_override_set_and_reset_from_the_page(app: App, monitor: TestClient) -> None:
    app.limit("llm-api", concurrency=2, rate="10/s")
    page = monitor.get("/limits").text
    assert 'id="overrides-table"' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None

    response = monitor.post(
        "/limits/llm-api/override",
        data={"csrf_token": token.group(1), "concurrency": "5", "rate": "120/m"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    (info,) = app.limits()
    assert info.overridden and info.concurrency == 5
    assert info.rate is not None and (info.rate.count, info.rate.period) == (120, 60.0)
    assert "overridden" in monitor.get("/limits").text

    response = monitor.post(
        "/limits/llm-api/reset", data={"csrf_token": token.group(1)}, follow_redirects=False
    )
    assert response.status_code == 303
    (info,) = app.limits()
    assert not info.overridden and info.concurrency == 2

    bad = monitor.post(
        "/limits/llm-api/override",
        data={"csrf_token": token.group(1), "concurrency": "0"},
    )
    assert bad.status_code == 400 and 'id="action-error"' in bad.text
    assert not app.limits()[0].overridden


def test_override_set_and_reset_from_the_api(app: App, monitor: TestClient) -> None:
    app.limit("tenant", concurrency=1, key="tenant_id")
    token = csrf_token(monitor)
    headers = {"X-CSRF-Token": token}
    response = monitor.post("/api/limits/tenant/override", json={"concurrency": 3}, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"name": "tenant", "concurrency": 3, "rate": None, "overridden": True}
    assert monitor.get("/api/limits").json()["limits"][0]["concurrency"] == 3
    response = monitor.post("/api/limits/tenant/reset", headers=headers)
    assert response.json()["overridden"] is False and response.json()["concurrency"] == 1
    empty = monitor.post("/api/limits/tenant/override", json={}, headers=headers)
    assert empty.status_code == 400 and "changes nothing" in empty.json()["detail"]


def test_raising_a_limit_from_the_monitor_admits_a_waiter(app: App, monitor: TestClient) -> None:
    gate = threading.Event()
    limit = app.limit("one-at-a-time", concurrency=1)

    @app.task(limits=[limit])
    def hold() -> None:
        gate.wait(WAIT)

    with running(app.runner):
        first = hold()
        wait_for_status(first, S.RUNNING)
        second = hold()
        wait_for_status(second, S.CONCURRENCY_CONTROLLED)
        token = csrf_token(monitor)
        monitor.post(
            "/api/limits/one-at-a-time/override",
            json={"concurrency": 2},
            headers={"X-CSRF-Token": token},
        )
        wait_for_status(second, S.RUNNING)
        gate.set()
        second.get_result(WAIT)


def test_retry_refused_by_a_waiting_invocation_with_other_arguments_is_a_conflict(
    app: App, monitor: TestClient
) -> None:
    """With ``on_diff_non_key_args_raise``, a retry that would fold into a waiting invocation
    of other arguments is refused: 409 saying so, not a server error."""

    @app.task(registration_concurrency=ConcurrencyControlType.TASK, on_diff_non_key_args_raise=True)
    def job(x: int) -> None:
        if x == 1:
            raise ValueError("one")

    failed = job(1)
    with running(app.runner), pytest.raises(ValueError):
        failed.get_result(WAIT)
    waiting = job(2)  # no runner: it waits, and calls of job fold into it
    token = csrf_token(monitor)
    response = monitor.post(
        f"/api/invocations/{failed.invocation_id}/retry", headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert waiting.invocation_id in response.json()["detail"]
    page = monitor.post(
        f"/invocations/{failed.invocation_id}/retry",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert page.status_code == 409
    assert waiting.invocation_id in page.text
