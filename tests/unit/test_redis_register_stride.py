"""The values per record of a Redis register batch (replies.register_stride): plain records
send 9, and each feature widens the batch only when one of its records uses it."""

from __future__ import annotations

from taskgate.backends.redis.replies import register_args, register_stride
from taskgate.record import Budget, ConcurrencyPlan, InvocationRecord


def record(**fields: object) -> InvocationRecord:
    return InvocationRecord("inv", "tests.task", b"", ConcurrencyPlan(), **fields)  # type: ignore[arg-type]


def test_strides_grow_with_the_features_a_batch_uses() -> None:
    plain = record()
    assert register_stride([plain]) == 9
    assert register_stride([plain, record(priority=2)]) == 11
    limited = InvocationRecord(
        "i", "t", b"", ConcurrencyPlan(budgets=(Budget("limit a", "a", concurrency=1),))
    )
    assert register_stride([limited, plain]) == 11
    assert register_stride([record(priority=1), record(scheduled_for=5.0)]) == 12
    assert register_stride([record(scheduled_for=5.0), record(queue="q")]) == 13
    assert register_stride([record(queue="q"), record(trace_context="00-a-b-01")]) == 14
    assert register_stride([]) == 9


def test_a_trace_context_is_the_fourteenth_value_and_empty_when_none() -> None:
    assert register_args(record(trace_context="00-a-b-01"), 14)[-1] == "00-a-b-01"
    assert register_args(record(), 14)[-1] == ""
    assert len(register_args(record(), 14)) == 14
