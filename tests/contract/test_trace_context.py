"""``InvocationRecord.trace_context``: stored as given by every backend and returned by reads."""

from __future__ import annotations

from collections.abc import Callable

from taskgate.backends.base import Backend
from taskgate.record import InvocationRecord

NewRecord = Callable[..., InvocationRecord]

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01;vendor=x:1"


def test_a_trace_context_is_stored_and_read_back(backend: Backend, new_record: NewRecord) -> None:
    traced = new_record(trace_context=TRACEPARENT)
    plain = new_record()
    backend.register(traced)
    backend.register(plain)
    got = backend.get(traced.invocation_id)
    assert got is not None and got.trace_context == TRACEPARENT
    untraced = backend.get(plain.invocation_id)
    assert untraced is not None and untraced.trace_context is None
    # It stays through the run and in the reads that skip history.
    claims = backend.claim("runner", 10, 30.0, 0)
    assert {c.invocation_id for c in claims} == {traced.invocation_id, plain.invocation_id}
    [many] = backend.get_many([traced.invocation_id])
    assert many is not None and many.trace_context == TRACEPARENT


def test_a_batch_mixing_traced_and_plain_records_keeps_each(
    backend: Backend, new_record: NewRecord
) -> None:
    records = [new_record(trace_context=TRACEPARENT if i % 2 else None) for i in range(5)]
    backend.register_many(records)
    for i, record in enumerate(records):
        got = backend.get(record.invocation_id)
        assert got is not None
        assert got.trace_context == (TRACEPARENT if i % 2 else None)
