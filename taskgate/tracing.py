"""OpenTelemetry tracing (``pip install 'taskgate[otel]'``): a span per call, a child per run.

When tracing is on, a call of a task (``task(...)``, ``with_options``, ``parallelize``, eager
mode too) is a span ``taskgate.call <task_id>`` (kind PRODUCER, child of the caller's current
span) whose context travels with the invocation (:attr:`InvocationRecord.trace_context`, a W3C
``traceparent``, then ``;`` and the ``tracestate`` when there is one); the runner that runs
it, in whatever process, runs the body in a span ``taskgate.run <task_id>`` (kind CONSUMER)
whose parent is that call span. A call folded into a waiting invocation (registration
concurrency) keeps the first caller's context: its span says ``taskgate.folded``.

Tracing is **on** when ``opentelemetry-api`` can be imported and a tracer provider is
configured: the global one (``opentelemetry.trace.set_tracer_provider``, or the
``OTEL_PYTHON_TRACER_PROVIDER`` environment variable) is not the API's default proxy or its
no-op provider, or one was given to :func:`use_tracer_provider`. The decision is cached per
process in :data:`active`: taken on the first call, again whenever a runner starts, and again by
:func:`refresh`. A program that configures OpenTelemetry after it first called a task calls
:func:`refresh` once afterwards. When tracing is off, calls and runs pay one check of that
cached boolean and nothing else: no span, no context, no extra read of the record.

A run whose record cannot be read (to find its call's context) is still run and traced, as a
root span, with a warning. Exceptions a call raises (registration errors) end its span with
status ``ERROR``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskgate.record import (
    Claim,
    InvocationRecord,
    Outcome,
    OutcomeKind,
    RegisterResult,
    Transition,
)
from taskgate.status import InvocationStatus

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from taskgate.backends.base import Backend

logger = logging.getLogger(__name__)

active: bool | None = None
"""Whether tracing is on in this process; None until first decided (see the module's doc)."""

_override: TracerProvider | None = None
_tracer: Tracer | None = None

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_CONTROLLED = InvocationStatus.CONCURRENCY_CONTROLLED


def refresh() -> bool:
    """Decide again whether tracing is on (see the module's doc), and return the decision.

    Cheap enough to call at any time (an import lookup and a type check), but not per call.
    """
    global active, _tracer
    try:
        from opentelemetry import trace
    except ImportError:
        _tracer, active = None, False
        return False
    provider = _override if _override is not None else trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        _tracer, active = None, False
        return False
    from taskgate import __version__

    _tracer, active = provider.get_tracer("taskgate", __version__), True
    return True


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` instead of the global provider (None: the global one again).

    For tests (an SDK ``TracerProvider`` with an in-memory exporter, while the global provider
    can be set only once per process) and for a program that keeps taskgate's spans apart.
    Decides again at once (:func:`refresh`).
    """
    global _override
    _override = provider
    refresh()


def is_on() -> bool:
    """Whether tracing is on, deciding now if it never was in this process."""
    if active is None:
        return refresh()
    return active


# --- calls ------------------------------------------------------------------------------------


def register_traced(backend: Backend, record: InvocationRecord) -> RegisterResult:
    """``backend.register(record)`` inside a call span whose context ``record`` then carries."""
    tracer = _tracer if is_on() else None
    if tracer is None:
        return backend.register(record)
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(
        f"taskgate.call {record.task_id}",
        kind=SpanKind.PRODUCER,
        attributes={"taskgate.task": record.task_id},
    ) as span:
        record.trace_context = _carrier(span)
        registered = backend.register(record)
        _note_registered(span, registered)
        return registered


def register_many_traced(
    backend: Backend, records: Sequence[InvocationRecord]
) -> list[RegisterResult]:
    """``backend.register_many(records)``, each call in a span of its own (all ended after)."""
    tracer = _tracer if is_on() else None
    if tracer is None:
        return backend.register_many(records)
    from opentelemetry.trace import SpanKind, Status, StatusCode

    spans = [
        tracer.start_span(
            f"taskgate.call {record.task_id}",
            kind=SpanKind.PRODUCER,
            attributes={"taskgate.task": record.task_id},
        )
        for record in records
    ]
    try:
        for record, span in zip(records, spans, strict=True):
            record.trace_context = _carrier(span)
        registered = backend.register_many(records)
        for span, result in zip(spans, registered, strict=True):
            _note_registered(span, result)
        return registered
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        for span in spans:
            span.end()


@contextmanager
def eager_call(record: InvocationRecord) -> Iterator[None]:
    """The call span of an eager call, current while it runs inline (its run is a child)."""
    tracer = _tracer if is_on() else None
    if tracer is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    attributes: dict[str, Any] = {
        "taskgate.task": record.task_id,
        "taskgate.invocation_id": record.invocation_id,
        "taskgate.created": True,
        "taskgate.folded": False,
        "taskgate.eager": True,
    }
    with tracer.start_as_current_span(
        f"taskgate.call {record.task_id}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        record.trace_context = _carrier(span)
        yield


def _carrier(span: Span) -> str | None:
    """``span``'s context as stored on a record: ``traceparent[;tracestate]``."""
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers, context=set_span_in_context(span))
    parent = headers.get(TRACEPARENT)
    if parent is None:  # an invalid span context (a non-recording provider): nothing to carry
        return None
    state = headers.get(TRACESTATE)
    return f"{parent};{state}" if state else parent


def _note_registered(span: Span, registered: RegisterResult) -> None:
    span.set_attribute("taskgate.invocation_id", registered.invocation_id)
    span.set_attribute("taskgate.created", registered.created)
    # Folded: the waiting invocation keeps the context of the call that created it, so its run
    # is a child of that first call's span, not of this one.
    span.set_attribute("taskgate.folded", not registered.created)


# --- runs -------------------------------------------------------------------------------------


def run_traced(
    claim: Claim,
    runner_id: str | None,
    read_record: Callable[[], InvocationRecord | None],
    run: Callable[[], Outcome],
) -> Outcome:
    """``run()`` inside a run span, child of the call span that ``read_record()`` carries."""
    record = _read(read_record)
    with _run_span(claim, runner_id, record) as span:
        outcome = run()
        _note_outcome(span, outcome)
    return outcome


async def run_traced_async(
    claim: Claim,
    runner_id: str | None,
    read_record: Callable[[], InvocationRecord | None],
    run: Callable[[], Awaitable[Outcome]],
) -> Outcome:
    """:func:`run_traced` for an ``async def`` body (the record is read off the loop)."""
    import asyncio

    record = await asyncio.to_thread(_read, read_record)
    with _run_span(claim, runner_id, record) as span:
        outcome = await run()
        _note_outcome(span, outcome)
    return outcome


def note_exception(exc: BaseException) -> None:
    """Record ``exc`` (a body's exception, with its frames) on the current run span."""
    from opentelemetry.trace import get_current_span

    get_current_span().record_exception(exc)


def _read(read_record: Callable[[], InvocationRecord | None]) -> InvocationRecord | None:
    try:
        return read_record()
    except Exception as exc:  # the run goes on, as a root span
        logger.warning("cannot read the trace context of a run: %s", exc)
        return None


@contextmanager
def _run_span(
    claim: Claim, runner_id: str | None, record: InvocationRecord | None
) -> Iterator[Span]:
    from opentelemetry.trace import SpanKind

    assert _tracer is not None
    now = time.time()
    attributes: dict[str, Any] = {
        "taskgate.invocation_id": claim.invocation_id,
        "taskgate.task": claim.task_id,
        "taskgate.attempt": claim.attempt,
    }
    if runner_id is not None:
        attributes["taskgate.runner_id"] = runner_id
    parent: Context | None = None
    if record is not None:
        parent = _extract(record.trace_context)
        attributes["taskgate.queue_wait_seconds"] = max(0.0, now - record.created_at)
        attributes["taskgate.limit_wait_seconds"] = limit_wait_seconds(record.history, now)
    with _tracer.start_as_current_span(
        f"taskgate.run {claim.task_id}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


def _extract(carried: str | None) -> Context | None:
    """The context a record carries; None (the current context) when it carries none."""
    if not carried:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent, _, state = carried.partition(";")
    headers = {TRACEPARENT: parent}
    if state:
        headers[TRACESTATE] = state
    return TraceContextTextMapPropagator().extract(headers)


def limit_wait_seconds(history: Sequence[Transition], now: float) -> float:
    """Seconds spent ``CONCURRENCY_CONTROLLED`` (waiting for a slot or a limit), in total.

    Each such entry of ``history`` lasts until the next entry (or ``now`` for the last one).
    """
    waited = 0.0
    for index, transition in enumerate(history):
        if transition.status is _CONTROLLED:
            ended = history[index + 1].timestamp if index + 1 < len(history) else now
            waited += max(0.0, ended - transition.timestamp)
    return waited


def _note_outcome(span: Span, outcome: Outcome) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("taskgate.outcome", outcome.kind.value)
    if outcome.kind in (OutcomeKind.FAILED, OutcomeKind.RETRY):
        span.set_status(Status(StatusCode.ERROR, f"run {outcome.kind.value}"))
