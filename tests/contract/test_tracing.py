"""Tracing with OpenTelemetry (``taskgate[otel]``, issue 14 item 5), on every backend.

taskgate traces with a provider given to :func:`taskgate.tracing.use_tracer_provider` here: the
global provider can be set only once per process, and the tests must not depend on their order.
Each test that traces gets a fresh SDK provider with an in-memory exporter, and gives the
global one back (unset: tracing off) afterwards. A ProcessRunner's worker processes use the
global provider of their own process (``tests/apps/traced_app.py`` sets it up there).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskgate import App, InvocationStatus, tracing
from taskgate.record import Transition
from taskgate.runner.base import Runner

S = InvocationStatus
WAIT = 15.0
APPS = Path(__file__).resolve().parents[1] / "apps"
RunRunner = Callable[[Runner], Any]
WaitStatus = Callable[[Any, InvocationStatus], None]


class Traced:
    """The test's tracer provider and what it exported."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def spans(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.spans(name)
        assert len(found) == 1, [span.name for span in self.exporter.get_finished_spans()]
        return found[0]


@pytest.fixture
def traced() -> Iterator[Traced]:
    """Tracing on, with a provider of this test's own."""
    state = Traced()
    tracing.use_tracer_provider(state.provider)
    assert tracing.active is True
    yield state
    tracing.use_tracer_provider(None)
    assert tracing.active is False  # the test process never sets the global provider
    state.provider.shutdown()


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _trace_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.trace_id


def _span_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


def test_a_call_is_a_span_and_its_run_a_child_of_it(
    traced: Traced, app: App, run_runner: RunRunner
) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with traced.tracer.start_as_current_span("parent") as parent:
        invocation = add(1, 2)
    with run_runner(app.runner):
        assert invocation.get_result(WAIT) == 3

    call, run = (
        traced.one(f"taskgate.call {add.task_id}"),
        traced.one(f"taskgate.run {add.task_id}"),
    )
    assert call.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
    assert _parent_id(call) == parent.get_span_context().span_id
    assert _parent_id(run) == _span_id(call)
    assert _trace_id(run) == _trace_id(call) == parent.get_span_context().trace_id
    assert call.attributes is not None and run.attributes is not None
    assert call.attributes["taskgate.task"] == add.task_id
    assert call.attributes["taskgate.invocation_id"] == invocation.invocation_id
    assert call.attributes["taskgate.created"] is True
    assert call.attributes["taskgate.folded"] is False
    assert run.attributes["taskgate.invocation_id"] == invocation.invocation_id
    assert run.attributes["taskgate.task"] == add.task_id
    assert run.attributes["taskgate.attempt"] == 1
    assert run.attributes["taskgate.runner_id"] == app.runner.runner_id
    assert run.attributes["taskgate.queue_wait_seconds"] >= 0  # type: ignore[operator]
    assert run.attributes["taskgate.limit_wait_seconds"] == 0
    assert run.attributes["taskgate.outcome"] == "success"
    stored = app.backend.get(invocation.invocation_id)
    assert stored is not None and stored.trace_context is not None
    assert stored.trace_context.startswith(f"00-{_trace_id(call):032x}-{_span_id(call):016x}-")


def test_a_call_with_options_is_traced_like_any_call(
    traced: Traced, app: App, run_runner: RunRunner
) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with traced.tracer.start_as_current_span("parent") as parent:
        invocation = add.with_options(priority=5, delay=0.01)(2, 2)
    with run_runner(app.runner):
        assert invocation.get_result(WAIT) == 4
    call, run = (
        traced.one(f"taskgate.call {add.task_id}"),
        traced.one(f"taskgate.run {add.task_id}"),
    )
    assert _parent_id(call) == parent.get_span_context().span_id
    assert _parent_id(run) == _span_id(call)


def test_a_failed_run_is_an_error_span_with_its_exception(
    traced: Traced, app: App, run_runner: RunRunner
) -> None:
    @app.task(max_retries=1, retry_for=(ValueError,))
    def fail() -> None:
        raise ValueError("no luck")

    invocation = fail()
    with run_runner(app.runner), pytest.raises(ValueError):
        invocation.get_result(WAIT)
    runs = sorted(traced.spans(f"taskgate.run {fail.task_id}"), key=lambda s: s.start_time or 0)
    assert [run.attributes["taskgate.outcome"] for run in runs if run.attributes] == [
        "retry",
        "failed",
    ]
    call = traced.one(f"taskgate.call {fail.task_id}")
    for attempt, run in enumerate(runs, start=1):
        assert run.attributes is not None and run.attributes["taskgate.attempt"] == attempt
        assert _parent_id(run) == _span_id(call)  # every attempt continues the call's trace
        assert run.status.status_code is StatusCode.ERROR
        (event,) = run.events
        assert event.name == "exception" and event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"


def test_parallelize_gives_each_call_its_span_and_its_run_a_child_of_it(
    traced: Traced, app: App, run_runner: RunRunner
) -> None:
    @app.task
    def double(n: int) -> int:
        return 2 * n

    with traced.tracer.start_as_current_span("parent") as parent:
        group = double.parallelize([(n,) for n in range(3)])
    with run_runner(app.runner):
        assert sorted(i.get_result(WAIT) for i in group) == [0, 2, 4]
    calls = {
        span.attributes["taskgate.invocation_id"]: span
        for span in traced.spans(f"taskgate.call {double.task_id}")
        if span.attributes
    }
    runs = traced.spans(f"taskgate.run {double.task_id}")
    assert len(calls) == len(runs) == 3
    for run in runs:
        assert run.attributes is not None
        call = calls[run.attributes["taskgate.invocation_id"]]
        assert _parent_id(call) == parent.get_span_context().span_id
        assert _parent_id(run) == _span_id(call)


def test_a_folded_call_says_so_and_the_run_continues_the_first_call(
    traced: Traced, app: App, run_runner: RunRunner
) -> None:
    from taskgate import ConcurrencyControlType

    @app.task(registration_concurrency=ConcurrencyControlType.TASK)
    def once() -> str:
        return "done"

    first, second = once(), once()
    assert second.invocation_id == first.invocation_id
    with run_runner(app.runner):
        assert first.get_result(WAIT) == "done"
    calls = traced.spans(f"taskgate.call {once.task_id}")
    created = [c for c in calls if c.attributes and c.attributes["taskgate.created"]]
    folded = [c for c in calls if c.attributes and c.attributes["taskgate.folded"]]
    assert len(created) == len(folded) == 1
    assert folded[0].attributes is not None
    assert folded[0].attributes["taskgate.invocation_id"] == first.invocation_id
    assert _parent_id(traced.one(f"taskgate.run {once.task_id}")) == _span_id(created[0])


def test_the_run_span_records_the_time_spent_waiting_for_a_limit(
    traced: Traced, app: App, run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    one = app.limit("one-at-a-time", concurrency=1)
    gate = threading.Event()

    @app.task(limits=[one])
    def hold(n: int) -> int:
        gate.wait(WAIT)
        return n

    first = hold(1)
    with run_runner(app.runner):
        wait_status(first, S.RUNNING)
        second = hold(2)
        wait_status(second, S.CONCURRENCY_CONTROLLED)
        gate.set()
        assert [first.get_result(WAIT), second.get_result(WAIT)] == [1, 2]
    runs = {
        span.attributes["taskgate.invocation_id"]: span.attributes
        for span in traced.spans(f"taskgate.run {hold.task_id}")
        if span.attributes
    }
    waited = runs[second.invocation_id]["taskgate.limit_wait_seconds"]
    assert isinstance(waited, float) and waited > 0
    assert runs[first.invocation_id]["taskgate.limit_wait_seconds"] == 0


def test_an_async_run_is_a_child_of_its_call(
    traced: Traced, app: App, run_runner: RunRunner
) -> None:
    @app.task
    async def twice(n: int) -> int:
        return 2 * n

    invocation = twice(4)
    with run_runner(app.runner):
        assert invocation.get_result(WAIT) == 8
    run = traced.one(f"taskgate.run {twice.task_id}")
    assert _parent_id(run) == _span_id(traced.one(f"taskgate.call {twice.task_id}"))
    assert run.attributes is not None and run.attributes["taskgate.outcome"] == "success"


def test_an_eager_call_is_traced_too(traced: Traced, make_app: Callable[..., App]) -> None:
    app = make_app(eager=True)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with traced.tracer.start_as_current_span("parent") as parent:
        assert add(2, 3).get_result() == 5
    call, run = (
        traced.one(f"taskgate.call {add.task_id}"),
        traced.one(f"taskgate.run {add.task_id}"),
    )
    assert _parent_id(call) == parent.get_span_context().span_id
    assert _parent_id(run) == _span_id(call)


def test_without_a_configured_provider_nothing_is_traced_or_read(
    app: App, run_runner: RunRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracing.use_tracer_provider(None)  # the global provider: the API's default proxy here
    assert tracing.active is False

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    backend = app.backend
    reads_by_runner: list[str] = []
    real_get = backend.get

    def spy(invocation_id: str) -> Any:
        if threading.current_thread().name.startswith("taskgate-"):
            reads_by_runner.append(invocation_id)
        return real_get(invocation_id)

    monkeypatch.setattr(backend, "get", spy)
    invocation = add(1, 2)
    with run_runner(app.runner):
        assert invocation.get_result(WAIT) == 3
    assert reads_by_runner == []
    stored = real_get(invocation.invocation_id)
    assert stored is not None and stored.trace_context is None


def test_limit_wait_sums_every_wait_in_the_history() -> None:
    history = [
        Transition(S.REGISTERED, 10.0, None),
        Transition(S.CONCURRENCY_CONTROLLED, 11.0, None),
        Transition(S.RUNNING, 13.0, "r"),
        Transition(S.RETRY, 14.0, "r"),
        Transition(S.CONCURRENCY_CONTROLLED, 15.0, None),
    ]
    assert tracing.limit_wait_seconds(history, now=15.5) == pytest.approx(2.5)


# --- a ProcessRunner's worker process continues the trace -----------------------------------


@pytest.fixture
def traced_app(shared_backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``tests/apps/traced_app.py`` on a fresh app id of the test's shared backend."""
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", shared_backend_url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", f"traced-{uuid.uuid4().hex[:12]}")
    monkeypatch.syspath_prepend(str(APPS))
    sys.modules.pop("traced_app", None)
    import traced_app

    yield traced_app
    traced_app.app.purge()
    traced_app.app.backend.close()
    sys.modules.pop("traced_app", None)


def test_a_process_runner_worker_continues_the_trace(
    traced: Traced, traced_app: Any, tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    with traced.tracer.start_as_current_span("parent"):
        invocation = traced_app.add(20, 22)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path]),
        traced_app.SPANS_ENV: str(spans_file),
    }
    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "traced_app:app"]
    options = ["--runner", "ProcessRunner", "--processes", "1", "--threads", "1"]
    runner = subprocess.Popen(
        [*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert invocation.get_result(WAIT) == 42
    finally:
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=WAIT)
    assert runner.returncode == 0, err
    call = traced.one(f"taskgate.call {traced_app.add.task_id}")
    lines = [json.loads(line) for line in spans_file.read_text().splitlines()]
    (run,) = [line for line in lines if line["name"] == f"taskgate.run {traced_app.add.task_id}"]
    assert run["pid"] != runner.pid  # a worker process, not the supervisor
    assert run["kind"] == "CONSUMER"
    assert run["trace_id"] == f"{_trace_id(call):032x}"
    assert run["parent_id"] == f"{_span_id(call):016x}"
    assert run["attributes"]["taskgate.invocation_id"] == invocation.invocation_id
    assert run["attributes"]["taskgate.runner_id"].endswith("-w1")  # the first worker's id
    assert run["attributes"]["taskgate.outcome"] == "success"
