"""Tracing never breaks a call or a run, on every backend (issue 14 review, finding H1).

An exporter or span processor that raises (a user's bug, a collector's), or an SDK whose
``record_exception`` raises (an exception whose ``__str__`` raises), must leave taskgate as it
would be untraced: a span that cannot start means the call or run goes on untraced, a span that
cannot end is ignored, and the outcome of the body (or of the registration) is never lost or
changed. And a worker thread of a ThreadRunner survives anything that goes wrong executing a
claim: that invocation fails, the thread goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskgate import App, InvocationStatus, tracing
from taskgate.runner.base import Runner
from taskgate.runner.body_control import BodyControl

S = InvocationStatus
WAIT = 15.0
RunRunner = Callable[[Runner], Any]


class Faulty(SpanProcessor):
    """Raises in ``on_start`` / ``on_end`` for spans whose name starts with ``prefix``.

    ``only``: raise for that start (1-based) of such a span only, not for every one.
    """

    def __init__(
        self, prefix: str, *, start: bool = False, end: bool = False, only: int | None = None
    ) -> None:
        self.prefix, self.start, self.end, self.only = prefix, start, end, only
        self.starts = 0
        self.lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not (self.start and span.name.startswith(self.prefix)):
            return
        with self.lock:
            self.starts += 1
            nth = self.starts
        if self.only is None or nth == self.only:
            raise RuntimeError("a span processor's bug in on_start")

    def on_end(self, span: ReadableSpan) -> None:
        if self.end and span.name.startswith(self.prefix):
            raise RuntimeError("a span processor's bug in on_end")


class Weird(Exception):
    """An exception that cannot be printed: its ``__str__`` and ``__repr__`` raise."""

    def __str__(self) -> str:
        raise ValueError("no str for me")

    def __repr__(self) -> str:
        raise ValueError("no repr for me")


class WeirdBase(BaseException):
    """Not an Exception, and cannot be printed either."""

    def __str__(self) -> str:
        raise ValueError("no str for me")

    def __repr__(self) -> str:
        raise ValueError("no repr for me")


class Refused(Exception):
    """What the patched backend raises on registration."""


@pytest.fixture
def exported() -> Iterator[Callable[..., InMemorySpanExporter]]:
    """``exported(*processors)``: tracing on with those processors first, then an exporter."""
    providers: list[TracerProvider] = []

    def configure(*processors: SpanProcessor) -> InMemorySpanExporter:
        provider = TracerProvider()
        for processor in processors:
            provider.add_span_processor(processor)
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracing.use_tracer_provider(provider)
        providers.append(provider)
        return exporter

    yield configure
    tracing.use_tracer_provider(None)
    for provider in providers:
        provider.shutdown()


def _names(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name.split()[0] for span in exporter.get_finished_spans()]


def _tasks(app: App) -> tuple[Any, Any, Any, Any]:
    """A sync and an async adder, and a sync and an async task that raise ValueError."""

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def add_async(a: int, b: int) -> int:
        return a + b

    @app.task
    def fail() -> None:
        raise ValueError("no luck")

    @app.task
    async def fail_async() -> None:
        raise ValueError("no luck")

    return add, add_async, fail, fail_async


def _raising_record_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Span, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("record_exception's bug")

    monkeypatch.setattr(Span, "record_exception", broken)


# --- runs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["thread", "async"])
def test_a_run_whose_span_cannot_start_runs_untraced(
    kind: str, app: App, run_runner: RunRunner, exported: Callable[..., InMemorySpanExporter]
) -> None:
    exporter = exported(Faulty("taskgate.run", start=True))
    add, add_async, fail, fail_async = _tasks(app)
    good = (add if kind == "thread" else add_async)(1, 2)
    bad = (fail if kind == "thread" else fail_async)()
    with run_runner(app.runner):
        assert good.get_result(WAIT) == 3
        with pytest.raises(ValueError, match="no luck"):
            bad.get_result(WAIT)
    assert bad.status is S.FAILED
    assert "taskgate.run" not in _names(exporter)
    assert _names(exporter).count("taskgate.call") == 2


@pytest.mark.parametrize("kind", ["thread", "async"])
def test_a_run_whose_span_cannot_end_keeps_its_outcome(
    kind: str, app: App, run_runner: RunRunner, exported: Callable[..., InMemorySpanExporter]
) -> None:
    exported(Faulty("taskgate.run", end=True))
    add, add_async, fail, fail_async = _tasks(app)
    good = (add if kind == "thread" else add_async)(1, 2)
    bad = (fail if kind == "thread" else fail_async)()
    with run_runner(app.runner):
        assert good.get_result(WAIT) == 3
        with pytest.raises(ValueError, match="no luck"):
            bad.get_result(WAIT)
    assert (good.status, bad.status) == (S.SUCCESS, S.FAILED)


@pytest.mark.parametrize("kind", ["thread", "async"])
def test_a_run_whose_exception_cannot_be_recorded_keeps_its_outcome(
    kind: str,
    app: App,
    run_runner: RunRunner,
    exported: Callable[..., InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = exported()
    _raising_record_exception(monkeypatch)
    _, _, fail, fail_async = _tasks(app)
    bad = (fail if kind == "thread" else fail_async)()
    with run_runner(app.runner), pytest.raises(ValueError, match="no luck"):
        bad.get_result(WAIT)
    assert bad.status is S.FAILED
    assert "taskgate.run" in _names(exporter)  # still ended and exported, without the event


def test_a_broken_exporter_is_logged_once_then_at_debug(
    app: App,
    run_runner: RunRunner,
    exported: Callable[..., InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(tracing, "_warned", set())  # as in a fresh process
    exported(Faulty("taskgate.run", end=True))
    add, *_ = _tasks(app)
    with caplog.at_level(logging.DEBUG, logger="taskgate.tracing"), run_runner(app.runner):
        assert [add(n, n).get_result(WAIT) for n in range(3)] == [0, 2, 4]
    lines = [r for r in caplog.records if r.name == "taskgate.tracing"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "cannot end a span" in lines[0].getMessage()


@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
@pytest.mark.parametrize("kind", ["thread", "async", "base"])
def test_an_exception_that_cannot_be_printed_still_fails_its_run(
    kind: str,
    traced: bool,
    app: App,
    run_runner: RunRunner,
    exported: Callable[..., InMemorySpanExporter],
) -> None:
    if traced:
        exported()
    else:
        assert tracing.is_on() is False

    @app.task
    def weird() -> None:
        raise Weird()

    @app.task
    async def weird_async() -> None:
        raise Weird()

    @app.task
    def weird_base() -> None:
        raise WeirdBase()

    task = {"thread": weird, "async": weird_async, "base": weird_base}[kind]
    invocation = task()
    with run_runner(app.runner), pytest.raises(Exception):  # its own type or a stand-in
        invocation.get_result(WAIT)
    assert invocation.status is S.FAILED


def test_a_worker_thread_survives_an_unexpected_error_executing_a_claim(
    make_app: Callable[..., App],
    run_runner: RunRunner,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(threads=1)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    real = BodyControl.execute
    broken: list[str] = []

    def execute_once_broken(self: BodyControl, claim: Any) -> Any:
        if not broken:
            broken.append(claim.invocation_id)
            raise RuntimeError("a bug of taskgate's while executing")
        return real(self, claim)

    monkeypatch.setattr(BodyControl, "execute", execute_once_broken)
    first = add(1, 2)
    with caplog.at_level(logging.ERROR, logger="taskgate"), run_runner(app.runner):
        with pytest.raises(Exception, match="a bug of taskgate's"):
            first.get_result(WAIT)
        second = add(2, 3)  # the one worker thread is still there to run it
        assert second.get_result(WAIT) == 5
    assert broken == [first.invocation_id]
    assert first.status is S.FAILED
    (line,) = [r for r in caplog.records if getattr(r, "invocation_id", None) == broken[0]]
    assert line.levelno == logging.ERROR and line.exc_info is not None
    assert line.__dict__["task"] == add.task_id and line.__dict__["attempt"] == 1
    assert line.__dict__["runner_id"] == app.runner.runner_id


# --- calls ------------------------------------------------------------------------------------


def test_a_call_whose_span_cannot_start_registers_untraced(
    app: App, run_runner: RunRunner, exported: Callable[..., InMemorySpanExporter]
) -> None:
    exporter = exported(Faulty("taskgate.call", start=True))
    add, *_ = _tasks(app)
    single = add(1, 2)
    group = add.parallelize([(n, n) for n in range(3)])
    with run_runner(app.runner):
        assert single.get_result(WAIT) == 3
        assert [i.get_result(WAIT) for i in group] == [0, 2, 4]
    stored = app.backend.get(single.invocation_id)
    assert stored is not None and stored.trace_context is None
    assert "taskgate.call" not in _names(exporter)
    assert _names(exporter).count("taskgate.run") == 4  # runs are traced, as roots


def test_a_call_whose_span_cannot_end_keeps_its_invocation(
    app: App, run_runner: RunRunner, exported: Callable[..., InMemorySpanExporter]
) -> None:
    exported(Faulty("taskgate.call", end=True))
    add, *_ = _tasks(app)
    single = add(1, 2)
    group = add.parallelize([(n, n) for n in range(3)])
    with run_runner(app.runner):
        assert single.get_result(WAIT) == 3
        assert [i.get_result(WAIT) for i in group] == [0, 2, 4]


def test_parallelize_ends_every_span_that_started_when_one_cannot(
    app: App, run_runner: RunRunner, exported: Callable[..., InMemorySpanExporter]
) -> None:
    exporter = exported(Faulty("taskgate.call", start=True, only=2))
    add, *_ = _tasks(app)
    group = add.parallelize([(n, n) for n in range(3)])
    with run_runner(app.runner):
        assert [i.get_result(WAIT) for i in group] == [0, 2, 4]
    assert _names(exporter).count("taskgate.call") == 2
    carried = [app.backend.get(i.invocation_id) for i in group]
    assert [r is not None and r.trace_context is not None for r in carried] == [True, False, True]


def test_a_refused_call_raises_its_own_error_when_it_cannot_be_recorded(
    app: App, exported: Callable[..., InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = exported()
    _raising_record_exception(monkeypatch)
    add, *_ = _tasks(app)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Refused("the store said no")

    monkeypatch.setattr(app.backend, "register", refuse)
    monkeypatch.setattr(app.backend, "register_many", refuse)
    with pytest.raises(Refused):
        add(1, 2)
    with pytest.raises(Refused):
        add.parallelize([(n, n) for n in range(3)])
    assert _names(exporter).count("taskgate.call") == 4  # every span ended all the same


@pytest.mark.parametrize("where", ["start", "end"])
def test_an_eager_call_whose_span_breaks_still_runs(
    where: str, make_app: Callable[..., App], exported: Callable[..., InMemorySpanExporter]
) -> None:
    exported(Faulty("taskgate.", start=where == "start", end=where == "end"))
    app = make_app(eager=True)
    add, *_ = _tasks(app)
    assert add(2, 3).get_result() == 5
