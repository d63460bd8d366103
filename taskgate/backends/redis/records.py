"""Turning the Redis hash of an invocation (history included) into a record."""

from __future__ import annotations

import json

from taskgate.record import ConcurrencyPlan, InvocationRecord, Transition
from taskgate.status import InvocationStatus


def _text(fields: dict[bytes, bytes], name: str) -> str | None:
    value = fields.get(name.encode())
    return value.decode() if value else None


def _number(fields: dict[bytes, bytes], name: str) -> float | None:
    value = fields.get(name.encode())
    return float(value) if value else None


def decode_record(
    invocation_id: str, fields: dict[bytes, bytes], *, history: bool = True
) -> InvocationRecord:
    """The record stored as ``fields`` (``HGETALL inv:<id>``); its history (field ``history``,
    one JSON entry per line) is decoded only when asked for."""
    return InvocationRecord(
        invocation_id=invocation_id,
        task_id=fields[b"task_id"].decode(),
        arguments=fields[b"arguments"],
        plan=ConcurrencyPlan(
            registration_key=_text(fields, "registration_key"),
            running_key=_text(fields, "running_key"),
            # Fields at their defaults are not stored (see register.lua).
            running_limit=int(fields.get(b"running_limit", 1)),
            drop_when_blocked=fields.get(b"drop_when_blocked") == b"1",
        ),
        max_retries=int(fields.get(b"max_retries", 0)),
        status=InvocationStatus(fields[b"status"].decode()),
        attempt=int(fields.get(b"attempt", 0)),
        num_retries=int(fields.get(b"num_retries", 0)),
        num_recoveries=int(fields.get(b"num_recoveries", 0)),
        runner_id=_text(fields, "runner_id"),
        lease_expires_at=_number(fields, "lease_expires_at"),
        created_at=float(fields[b"created_at"]),
        result=fields.get(b"result") or None,  # stored as b"" when absent; never a payload
        error=fields.get(b"error") or None,
        history=[_transition(entry) for entry in fields[b"history"].split(b"\n")]
        if history
        else [],
    )


def _transition(entry: bytes) -> Transition:
    status, timestamp, runner_id = json.loads(entry)
    return Transition(InvocationStatus(status), float(timestamp), runner_id or None)
