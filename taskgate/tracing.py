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

Tracing never breaks a call or a run: when the SDK raises (an exporter or span processor with a
bug, an exception that cannot be recorded), a span that cannot start means the call or run goes
on untraced, and one that cannot end is dropped; the run's outcome, or the call's result or
error, stays what it would be untraced. Each kind of failure is logged once at WARNING, then at
DEBUG.
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
    from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider

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


# --- guarding the SDK ---------------------------------------------------------------------
# An exporter or span processor that raises (in on_start, on_end), or an SDK that cannot record
# an exception (one whose __str__ raises), must not break a call or a run: a span that cannot
# start means untraced, one that cannot end is dropped, and the body's outcome (or the
# registration's) always stands. Each kind of failure is logged at WARNING once per process,
# at DEBUG afterwards: a broken exporter would otherwise write a line per call.

_warned: set[str] = set()


def _trouble(what: str, exc: BaseException) -> None:
    """Log that the tracing SDK failed to ``what`` (once a WARNING, then DEBUG lines)."""
    if what in _warned:
        logger.debug("tracing: cannot %s: %r", what, exc, exc_info=exc)
        return
    _warned.add(what)  # no lock: two threads logging the first WARNING is harmless
    logger.warning(
        "tracing: cannot %s (the call or run goes on; later failures are DEBUG): %s",
        what,
        _describe(exc),
        exc_info=exc,
    )


def _describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, even when its ``__str__`` raises."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


def _start(
    name: str, kind: SpanKind, attributes: dict[str, Any], parent: Context | None = None
) -> Span | None:
    """A started span, or None (logged) when the SDK raised starting it."""
    assert _tracer is not None
    try:
        return _tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
    except Exception as exc:
        _trouble("start a span", exc)
        return None


def _end(span: Span) -> None:
    try:
        span.end()
    except Exception as exc:
        _trouble("end a span", exc)


def _note_failure(span: Span, exc: BaseException) -> None:
    """Record ``exc`` on ``span`` and set its status to ERROR, if the SDK can."""
    from opentelemetry.trace import Status, StatusCode

    try:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, _describe(exc)))
    except Exception as error:
        _trouble("record an exception", error)


@contextmanager
def _current(span: Span | None) -> Iterator[None]:
    """``span`` as the current span for the block (nothing changes when it is None)."""
    if span is None:
        yield
        return
    from opentelemetry import context as otel_context
    from opentelemetry.trace import set_span_in_context

    token = otel_context.attach(set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


# --- calls ------------------------------------------------------------------------------------


def register_traced(backend: Backend, record: InvocationRecord) -> RegisterResult:
    """``backend.register(record)`` inside a call span whose context ``record`` then carries."""
    if not is_on() or _tracer is None:
        return backend.register(record)
    from opentelemetry.trace import SpanKind

    span = _start(
        f"taskgate.call {record.task_id}", SpanKind.PRODUCER, {"taskgate.task": record.task_id}
    )
    if span is None:
        return backend.register(record)
    try:
        with _current(span):
            record.trace_context = _carrier(span)
            registered = backend.register(record)
    except BaseException as exc:
        _note_failure(span, exc)
        _end(span)
        raise
    _note_registered(span, registered)
    _end(span)
    return registered


def register_many_traced(
    backend: Backend, records: Sequence[InvocationRecord]
) -> list[RegisterResult]:
    """``backend.register_many(records)``, each call in a span of its own (all ended after).

    A call whose span cannot start is registered untraced (its record carries no context).
    """
    if not is_on() or _tracer is None:
        return backend.register_many(records)
    from opentelemetry.trace import SpanKind

    spans: list[Span | None] = []
    try:
        for record in records:
            span = _start(
                f"taskgate.call {record.task_id}",
                SpanKind.PRODUCER,
                {"taskgate.task": record.task_id},
            )
            spans.append(span)
            if span is not None:
                record.trace_context = _carrier(span)
        registered = backend.register_many(records)
        for span, result in zip(spans, registered, strict=True):
            if span is not None:
                _note_registered(span, result)
        return registered
    except BaseException as exc:
        for span in spans:
            if span is not None:
                _note_failure(span, exc)
        raise
    finally:
        for span in spans:
            if span is not None:
                _end(span)


@contextmanager
def eager_call(record: InvocationRecord) -> Iterator[None]:
    """The call span of an eager call, current while it runs inline (its run is a child)."""
    if not is_on() or _tracer is None:
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
    span = _start(f"taskgate.call {record.task_id}", SpanKind.PRODUCER, attributes)
    if span is None:
        yield
        return
    try:
        with _current(span):
            record.trace_context = _carrier(span)
            yield
    except BaseException as exc:
        _note_failure(span, exc)
        raise
    finally:
        _end(span)


def _carrier(span: Span) -> str | None:
    """``span``'s context as stored on a record: ``traceparent[;tracestate]`` (None: none)."""
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    try:
        TraceContextTextMapPropagator().inject(headers, context=set_span_in_context(span))
    except Exception as exc:  # the call is registered all the same, its run a root span
        _trouble("carry a span's context", exc)
        return None
    parent = headers.get(TRACEPARENT)
    if parent is None:  # an invalid span context (a non-recording provider): nothing to carry
        return None
    state = headers.get(TRACESTATE)
    return f"{parent};{state}" if state else parent


def _note_registered(span: Span, registered: RegisterResult) -> None:
    try:
        span.set_attribute("taskgate.invocation_id", registered.invocation_id)
        span.set_attribute("taskgate.created", registered.created)
        # Folded: the waiting invocation keeps the context of the call that created it, so its
        # run is a child of that first call's span, not of this one.
        span.set_attribute("taskgate.folded", not registered.created)
    except Exception as exc:
        _trouble("set a span's attributes", exc)


# --- runs -------------------------------------------------------------------------------------


def run_traced(
    claim: Claim,
    runner_id: str | None,
    read_record: Callable[[], InvocationRecord | None],
    run: Callable[[], Outcome],
) -> Outcome:
    """``run()`` inside a run span, child of the call span that ``read_record()`` carries.

    ``run()``'s outcome (or exception) is returned (raised) whatever the SDK does: a span that
    cannot start means ``run()`` runs untraced, one that cannot end is dropped.
    """
    span = _start_run(claim, runner_id, _read(read_record))
    if span is None:
        return run()
    try:
        with _current(span):
            outcome = run()
    except BaseException as exc:
        _note_failure(span, exc)
        _end(span)
        raise
    _note_outcome(span, outcome)
    _end(span)
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
    span = _start_run(claim, runner_id, record)
    if span is None:
        return await run()
    try:
        with _current(span):
            outcome = await run()
    except BaseException as exc:
        _note_failure(span, exc)
        _end(span)
        raise
    _note_outcome(span, outcome)
    _end(span)
    return outcome


def note_exception(exc: BaseException) -> None:
    """Record ``exc`` (a body's exception, with its frames) on the current run span.

    Never raises: an SDK that cannot record it (an exception whose ``__str__`` raises) is
    logged, and the run's outcome stands.
    """
    from opentelemetry.trace import get_current_span

    try:
        get_current_span().record_exception(exc)
    except Exception as error:
        _trouble("record an exception", error)


def _read(read_record: Callable[[], InvocationRecord | None]) -> InvocationRecord | None:
    try:
        return read_record()
    except Exception as exc:  # the run goes on, as a root span
        logger.warning("cannot read the trace context of a run: %s", exc)
        return None


def _start_run(claim: Claim, runner_id: str | None, record: InvocationRecord | None) -> Span | None:
    """The started run span of ``claim``, or None when it cannot start (run untraced)."""
    from opentelemetry.trace import SpanKind

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
        try:
            parent = _extract(record.trace_context)
        except Exception as exc:  # a context that cannot be read: the run is a root span
            _trouble("read a call's context", exc)
        attributes["taskgate.queue_wait_seconds"] = max(0.0, now - record.created_at)
        attributes["taskgate.limit_wait_seconds"] = limit_wait_seconds(record.history, now)
    return _start(f"taskgate.run {claim.task_id}", SpanKind.CONSUMER, attributes, parent)


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

    try:
        span.set_attribute("taskgate.outcome", outcome.kind.value)
        if outcome.kind in (OutcomeKind.FAILED, OutcomeKind.RETRY):
            span.set_status(Status(StatusCode.ERROR, f"run {outcome.kind.value}"))
    except Exception as exc:
        _trouble("set a span's attributes", exc)
