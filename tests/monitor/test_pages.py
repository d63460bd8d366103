"""Every page and its live fragment answer, and show what a user must see; every backend."""

from __future__ import annotations

import threading

import pytest
from starlette.testclient import TestClient

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.monitor import create_monitor_app
from tests.conftest import WAIT, running, wait_for_status
from tests.monitor.support import (
    LOOPBACK_CLIENT,
    announce,
    free_port,
    minute,
    page_text,
    running_entry,
)

S = InvocationStatus


def test_overview_shows_counts_by_task_and_status(app: App, monitor: TestClient) -> None:
    @app.task
    def add(a: int) -> int:
        return a

    for value in range(3):
        add(value)

    text = page_text(monitor, "/")
    assert 'id="counts-table"' in text
    assert f'data-task="{add.task_id}"' in text
    assert 'id="total-count">3<' in text
    assert 'id="live-updated-at"' in text
    document = monitor.get("/api/overview").json()
    assert document["totals"]["registered"] == 3
    assert document["tasks"] == [{"task": add.task_id, "counts": {"registered": 3}, "total": 3}]
    assert document["queue_depth"] == {"default": 3}
    assert len(document["throughput"]) == 15
    fragment = page_text(monitor, "/fragments/overview")
    assert "<html" not in fragment and 'id="counts-table"' in fragment
    assert 'id="live-updated-at"' in fragment


def test_overview_charts_sum_the_runners_minutes(app: App, monitor: TestClient) -> None:
    announce(app, "runner-a", minutes=(minute(1, 4, 1, 2.0), minute(0, 2, 0, 1.0)))
    announce(app, "runner-b", minutes=(minute(0, 6, 2, 3.0), minute(40, 99, 9, 9.0)))

    throughput = monitor.get("/api/overview").json()["throughput"]
    assert [m["finished"] for m in throughput[-2:]] == [4, 8]
    assert [m["failed"] for m in throughput[-2:]] == [1, 2]
    assert throughput[-1]["mean_duration_seconds"] == pytest.approx(0.5)
    assert sum(m["finished"] for m in throughput) == 12  # the 40-minute-old one is left out
    text = page_text(monitor, "/")
    assert 'id="throughput-chart"' in text and "<svg" in text
    assert "total 12" in text
    assert 'data-runner-id="runner-a"' in text and 'data-runner-id="runner-b"' in text


def test_limits_page_shows_the_holder_of_a_slot_and_who_waits(
    app: App, monitor: TestClient
) -> None:
    gate = threading.Event()
    api = app.limit("llm-api", concurrency=1, key="tenant")

    @app.task(limits=[api])
    def summarize(tenant: str) -> str:
        gate.wait(WAIT)
        return tenant

    with running(app.runner):
        holder = summarize("acme")
        wait_for_status(holder, S.RUNNING)
        waiter = summarize("acme")
        wait_for_status(waiter, S.CONCURRENCY_CONTROLLED)

        text = page_text(monitor, "/limits")
        assert 'id="limits-table"' in text
        assert 'data-limit="llm-api"' in text
        assert "tenant='acme'" in text
        assert f'class="holder" data-invocation-id="{holder.invocation_id}"' in text
        runner_id = app.backend.get(holder.invocation_id).runner_id  # type: ignore[union-attr]
        assert runner_id is not None and runner_id in text
        assert "lease expires in" in text
        document = monitor.get("/api/limits").json()
        (limit,) = document["limits"]
        (budget,) = limit["budgets"]
        assert budget["key_values"] == "tenant='acme'"
        assert budget["slots_held"] == 1 and budget["concurrency"] == 1
        assert budget["waiting"] == 1 and budget["oldest_wait_seconds"] is not None
        assert [h["invocation_id"] for h in budget["holders"]] == [holder.invocation_id]
        assert budget["holders"][0]["runner_id"] == runner_id
        # The runner announced itself when it started: its host is on the holder's line.
        (info,) = app.backend.runner_infos()
        assert budget["holders"][0]["host"] == info.host
        assert f'class="holder-host">({info.host})' in text
        fragment = page_text(monitor, "/fragments/limits")
        assert "<html" not in fragment and holder.invocation_id in fragment
        gate.set()
        assert waiter.get_result(WAIT) == "acme"


def test_limits_page_shows_running_keys_of_tasks(app: App, monitor: TestClient) -> None:
    gate = threading.Event()

    @app.task(running_concurrency=ConcurrencyControlType.KEYS, key_arguments=("customer",))
    def sync(customer: int) -> int:
        gate.wait(WAIT)
        return customer

    with running(app.runner):
        holder = sync(42)
        wait_for_status(holder, S.RUNNING)
        waiter = sync(42)
        wait_for_status(waiter, S.CONCURRENCY_CONTROLLED)

        text = page_text(monitor, "/limits")
        assert 'id="running-keys-table"' in text
        assert "customer=42" in text
        assert f'data-invocation-id="{holder.invocation_id}"' in text
        (key,) = monitor.get("/api/limits").json()["running_keys"]
        assert key["task"] == sync.task_id
        assert key["slots_held"] == 1 and key["concurrency"] == 1 and key["waiting"] == 1
        assert key["holders"][0]["invocation_id"] == holder.invocation_id
        gate.set()
        assert waiter.get_result(WAIT) == 42


def test_detail_page_shows_the_full_remote_traceback(app: App, monitor: TestClient) -> None:
    def deep_helper(value: int) -> None:
        raise ValueError(f"cannot use {value}")

    @app.task
    def explode(value: int) -> None:
        deep_helper(value)

    invocation = explode(7)
    with running(app.runner), pytest.raises(ValueError):
        invocation.get_result(WAIT)

    text = page_text(monitor, f"/invocations/{invocation.invocation_id}")
    assert 'id="traceback"' in text
    assert "Traceback (most recent call last)" in text
    assert "deep_helper" in text and "in explode" in text
    assert "ValueError: cannot use 7" in text
    assert 'id="retry-button"' in text and 'id="cancel-button"' not in text
    assert 'data-argument="value"' in text
    assert 'id="history"' in text and 'data-status="failed"' in text
    document = monitor.get(f"/api/invocations/{invocation.invocation_id}").json()
    assert document["status"] == "failed"
    assert document["arguments"] == {"value": "7"}
    assert "deep_helper" in document["traceback"]
    assert [h["status"] for h in document["history"]][-2:] == ["running", "failed"]
    fragment = page_text(monitor, f"/fragments/invocations/{invocation.invocation_id}")
    assert "<html" not in fragment and "ValueError: cannot use 7" in fragment


def test_detail_page_of_a_parked_invocation_says_what_blocks_it(
    app: App, monitor: TestClient
) -> None:
    gate = threading.Event()

    @app.task(running_concurrency=ConcurrencyControlType.TASK)
    def only_one() -> None:
        gate.wait(WAIT)

    with running(app.runner):
        holder = only_one()
        wait_for_status(holder, S.RUNNING)
        waiter = only_one()
        wait_for_status(waiter, S.CONCURRENCY_CONTROLLED)
        text = page_text(monitor, f"/invocations/{waiter.invocation_id}")
        assert 'id="blocked-by"' in text
        assert f'data-invocation-id="{holder.invocation_id}"' in text
        assert 'id="cancel-button"' in text
        gate.set()
        waiter.get_result(WAIT)


def test_detail_page_decodes_arguments_and_result_safely(app: App, monitor: TestClient) -> None:
    @app.task
    def echo(text: str) -> str:
        return text

    invocation = echo("<script>alert(1)</script>" + "x" * 5000)
    with running(app.runner):
        invocation.get_result(WAIT)
    response = monitor.get(f"/invocations/{invocation.invocation_id}")
    assert "<script>alert(1)" not in response.text  # escaped
    assert "&lt;script&gt;alert(1)" in response.text
    assert "more characters" in response.text  # a long repr is cut


def test_a_short_prefix_leads_to_the_invocation(app: App, monitor: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    invocation = noop()
    response = monitor.get(f"/invocations/{invocation.invocation_id[:13]}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/invocations/{invocation.invocation_id}"
    assert monitor.get("/invocations/no-such-id").status_code == 404
    assert monitor.get("/api/invocations/no-such-id").status_code == 404


def test_invocations_page_filters_and_pages(app: App, monitor: TestClient) -> None:
    @app.task
    def first(n: int) -> None: ...

    @app.task
    def second(n: int) -> None: ...

    ones = [first(n) for n in range(5)]
    two = second(0)

    text = page_text(monitor, "/invocations")
    assert 'id="invocations-table"' in text
    assert all(f'data-invocation-id="{i.invocation_id}"' in text for i in [*ones, two])

    text = page_text(monitor, f"/invocations?task={second.task_id}")
    assert f'data-invocation-id="{two.invocation_id}"' in text
    assert not any(i.invocation_id in text for i in ones)

    prefix = ones[2].invocation_id[:12]
    document = monitor.get(f"/api/invocations?prefix={prefix}").json()
    assert [i["invocation_id"] for i in document["invocations"]] == [ones[2].invocation_id]

    document = monitor.get("/api/invocations?status=running").json()
    assert document["invocations"] == []

    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        page = monitor.get(f"/api/invocations?task={first.task_id}&limit=2&cursor={cursor}").json()
        assert len(page["invocations"]) <= 2
        seen += [i["invocation_id"] for i in page["invocations"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(i.invocation_id for i in ones)

    text = page_text(monitor, f"/invocations?task={first.task_id}&limit=2")
    assert 'id="page-next"' in text
    fragment = page_text(monitor, f"/fragments/invocations?task={first.task_id}&limit=2")
    assert "<html" not in fragment and 'id="invocations-table"' in fragment
    assert monitor.get("/api/invocations?status=nonsense").status_code == 400
    assert monitor.get("/invocations?limit=0").status_code == 400


def test_runners_page_shows_each_runner_and_what_it_runs(app: App, monitor: TestClient) -> None:
    announce(
        app,
        "runner-a",
        host="worker-7.example",
        pid=777,
        queues=("default", "mail"),
        running=(running_entry("inv-123", "tasks.send"),),
    )

    text = page_text(monitor, "/runners")
    assert 'id="runners-table"' in text
    assert 'id="runner-runner-a"' in text
    assert "worker-7.example" in text and ">777<" in text and "default, mail" in text
    assert 'data-invocation-id="inv-123"' in text and "tasks.send" in text
    (runner,) = monitor.get("/api/runners").json()["runners"]
    assert runner["runner_id"] == "runner-a" and runner["queues"] == ["default", "mail"]
    assert runner["running"][0]["invocation_id"] == "inv-123"
    fragment = page_text(monitor, "/fragments/runners")
    assert "<html" not in fragment and "worker-7.example" in fragment


def test_a_real_runner_appears_on_the_runners_page(app: App, monitor: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    with running(app.runner):
        noop().get_result(WAIT)
        runner_id = app.runner.runner_id
        document = monitor.get("/api/runners").json()
        assert runner_id in [r["runner_id"] for r in document["runners"]]
        assert runner_id in page_text(monitor, "/runners")


def test_static_files_and_security_headers(monitor: TestClient) -> None:
    response = monitor.get("/static/htmx.min.js")
    assert response.status_code == 200 and "htmx" in response.text
    assert monitor.get("/static/monitor.css").status_code == 200
    page = monitor.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_an_unreachable_store_gives_503_not_a_crash() -> None:
    app = App(backend=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(
        create_monitor_app(app), base_url="http://localhost:8787", client=LOOPBACK_CLIENT
    ) as client:
        response = client.get("/api/overview")
        assert response.status_code == 503
        assert response.json()["error"] == "BackendUnavailableError"
        page = client.get("/limits")
        assert page.status_code == 503 and 'id="store-error"' in page.text
        assert 'id="nav"' in page.text  # the layout, so the user can go elsewhere
