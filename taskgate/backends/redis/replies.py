"""Replies of the Redis scripts turned into the core's data, and records turned into script
arguments (the layouts are documented in scripts/*.lua)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from taskgate.record import Claim, InvocationRecord, RegisterResult, encode_budgets


def as_text(value: Any) -> str:
    """A reply item as text (replies are bytes: the client does not decode, for binary data)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_claims(reply: list[list[Any]]) -> list[Claim]:
    return [
        Claim(as_text(item[0]), as_text(item[1]), item[2], int(item[3]), int(item[4]), int(item[5]))
        for item in reply
    ]


def parse_handed_claim(item: bytes) -> Claim:
    """A claim register handed over: ``<id>\\31<task_id>\\31<max_retries>\\31<arguments>``."""
    invocation_id, task_id, max_retries, arguments = item.split(b"\x1f", 3)
    return Claim(invocation_id.decode(), task_id.decode(), arguments, 1, 0, int(max_retries))


def count_field(field: bytes) -> tuple[str, str]:
    """A field of the ``counts`` hash, ``<task_id>\\x1f<status>``, as (task_id, status): split
    at the last separator, as purge.lua does (a status never holds one)."""
    task_id, _, status = as_text(field).rpartition("\x1f")
    return task_id, status


def field_pairs(reply: list[bytes] | dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A raw HGETALL reply as a dict (a flat list in RESP2, already a map in RESP3)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def register_stride(records: Sequence[InvocationRecord]) -> int:
    """Values per record in a register batch: 14 if one of them carries a trace context, else
    13 if one names a queue other than "default", else 12 if one is delayed
    (``scheduled_for``), else 11 if one uses budgets or a priority other than 0, else 9 (plain
    batches send no value they don't use)."""
    # One pass, no generator per test: this runs for every call.
    stride = 9
    for record in records:
        if record.trace_context is not None:
            return 14
        if stride < 13:
            if record.queue != "default":
                stride = 13
            elif stride < 12 and record.scheduled_for is not None:
                stride = 12
            elif stride < 11 and (record.plan.budgets or record.priority):
                stride = 11
    return stride


def register_args(record: InvocationRecord, stride: int) -> tuple[Any, ...]:
    """The ``stride`` script arguments of one record (see scripts/register.lua)."""
    plan = record.plan
    if stride > 13:
        return (*register_args(record, 13), record.trace_context or "")
    if stride > 12:
        return (*register_args(record, 12), record.queue)
    if stride > 11:
        at = record.scheduled_for
        return (*register_args(record, 11), "" if at is None else repr(float(at)))
    if stride > 9:
        return (*register_args(record, 9), encode_budgets(plan.budgets), record.priority)
    return (
        record.invocation_id,
        record.task_id,
        record.arguments,
        plan.registration_key or "",
        plan.running_key or "",
        plan.running_limit,
        int(plan.drop_when_blocked),
        record.max_retries,
        # Integer microseconds (the id of the record's index entry: see register.lua).
        round((record.created_at or time.time()) * 1_000_000),
    )


def parse_register_result(record: InvocationRecord, reply: list[Any]) -> RegisterResult:
    """One record's reply of register.lua: {1, id} stored, or {0, holder, holder_arguments}."""
    if reply[0] == 1:
        return RegisterResult(record.invocation_id, True)
    return RegisterResult(as_text(reply[1]), False, reply[2])
