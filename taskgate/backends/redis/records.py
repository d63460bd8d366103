"""Turning what the Redis scripts store and reply into records: an invocation's hash (history
included), a limit's override, a budget's usage."""

from __future__ import annotations

from typing import Any

from taskgate.errors import BackendStoreFormatError
from taskgate.record import (
    BudgetHolder,
    BudgetUsage,
    ConcurrencyPlan,
    InvocationRecord,
    LimitOverride,
    Rate,
    Transition,
    decode_budgets,
)
from taskgate.status import InvocationStatus


def _text(value: bytes | None) -> str | None:
    return value.decode() if value else None


def _number(value: bytes | None) -> float | None:
    return float(value) if value else None


def registered_at(fields: dict[bytes, bytes]) -> float:
    """The registration time of the record stored as ``fields``, the caller's, in integer
    microseconds: its index entry ('x'), or 'c' when the entry had to follow a later one (see
    index_entry in lib_core.lua)."""
    return int(fields.get(b"c") or fields[b"x"].partition(b"-")[0]) / 1_000_000


_STATUSES = {status.value.encode(): status for status in InvocationStatus}
# The final statuses by their stored text (what a read of outcomes looks for in field 's').
FINAL_STATUSES = {text: status for text, status in _STATUSES.items() if status.is_final}
# The fields of a record's plan; a record with none of them (no control: the usual case) shares
# one plan, which is frozen. Every read of a record (a result, a page of the monitor) runs this.
_PLAN_FIELDS = frozenset(
    {b"registration_key", b"running_key", b"running_limit", b"drop_when_blocked", b"budgets"}
)
_NO_PLAN = ConcurrencyPlan()


def _plan(fields: dict[bytes, bytes]) -> ConcurrencyPlan:
    if fields.keys().isdisjoint(_PLAN_FIELDS):
        return _NO_PLAN
    get = fields.get
    return ConcurrencyPlan(
        registration_key=_text(get(b"registration_key")),
        running_key=_text(get(b"running_key")),
        # Fields at their defaults are not stored (see register.lua).
        running_limit=int(get(b"running_limit", 1)),
        drop_when_blocked=get(b"drop_when_blocked") == b"1",
        budgets=decode_budgets(_text(get(b"budgets"))),
    )


def decode_record(
    invocation_id: str, fields: dict[bytes, bytes], *, history: bool = True
) -> InvocationRecord:
    """The record stored as ``fields`` (``HGETALL inv:<id>``; layout: 'inv:<id>' in
    lib_core.lua); its history is decoded only when asked for.

    Raises:
        BackendStoreFormatError: a record of an earlier layout (a process that checked the
            store before an earlier taskgate wrote to it again: see connection.py).
    """
    if b"t" not in fields and b"task_id" in fields:
        raise BackendStoreFormatError(
            f"invocation {invocation_id} was stored by an earlier taskgate, under field names "
            "this version cannot read: stop the processes of that version, and drain or purge "
            "the store ('taskgate purge')"
        )
    get = fields.get
    # Absent fields are at their defaults (see register.lua); status is absent while registered.
    status = get(b"s")
    return InvocationRecord(
        invocation_id=invocation_id,
        task_id=fields[b"t"].decode(),
        arguments=fields[b"a"],
        plan=_plan(fields),
        max_retries=int(get(b"max_retries", 0)),
        priority=int(get(b"priority", 0)),
        queue=get(b"queue", b"default").decode(),
        cancel_requested=get(b"cancel_requested") == b"1",
        scheduled_for=_number(get(b"scheduled_for")),
        status=InvocationStatus.REGISTERED if status is None else _STATUSES[status],
        attempt=int(get(b"attempt", 0)),
        num_retries=int(get(b"num_retries", 0)),
        num_recoveries=int(get(b"num_recoveries", 0)),
        runner_id=_text(get(b"runner_id")),
        lease_expires_at=_number(get(b"lease_expires_at")),
        created_at=registered_at(fields),
        result=get(b"result") or None,  # stored as b"" when absent; never a payload
        error=get(b"error") or None,
        trace_context=_text(get(b"trace_context")),
        history=decode_history(fields) if history else [],
    )


# The one-letter codes of history entries (lib_core.lua).
_CODES = {
    ord("s"): InvocationStatus.SCHEDULED,
    ord("r"): InvocationStatus.REGISTERED,
    ord("c"): InvocationStatus.CONCURRENCY_CONTROLLED,
    ord("x"): InvocationStatus.CONCURRENCY_CONTROLLED_FINAL,
    ord("u"): InvocationStatus.RUNNING,
    ord("y"): InvocationStatus.RETRY,
    ord("k"): InvocationStatus.SUCCESS,
    ord("f"): InvocationStatus.FAILED,
    ord("n"): InvocationStatus.CANCELLED,
}


def decode_history(fields: dict[bytes, bytes]) -> list[Transition]:
    """The history of the record stored as ``fields``, oldest first (layout: 'inv:<id>' in
    lib_core.lua): the first transition ('registered' when it was registered, or the status
    coded in 'h0'), then 'h1' to 'h<hn>'.

    Raises:
        KeyError, ValueError: the record is not one the scripts wrote.
    """
    first = _CODES[fields[b"h0"][0]] if b"h0" in fields else InvocationStatus.REGISTERED
    history = [Transition(first, registered_at(fields), None)]
    for n in range(1, int(fields.get(b"hn", 0)) + 1):
        history.append(_transition(fields[b"h%d" % n], history[-1].runner_id))
    return history


def _transition(entry: bytes, runner_before: str | None) -> Transition:
    """Entry ``<code><time>[\\x1f<runner_id>]``; an empty runner id is ``runner_before``'s."""
    timestamp, by_runner, runner = entry[1:].partition(b"\x1f")
    runner_id = (runner.decode() or runner_before) if by_runner else None
    return Transition(_CODES[entry[0]], float(timestamp), runner_id)


def encode_override(override: LimitOverride) -> str:
    """An override as stored in the ``overrides`` hash: ``<concurrency>\\x1f<count>\\x1f<period>``,
    ``''`` keeping the declared value."""
    rate = override.rate
    return "\x1f".join(
        (
            "" if override.concurrency is None else str(override.concurrency),
            "" if rate is None else str(rate.count),
            "" if rate is None else repr(float(rate.period)),
        )
    )


def decode_override(text: str) -> LimitOverride:
    """The override stored as ``text`` by :func:`encode_override`."""
    concurrency, count, period = text.split("\x1f")
    return LimitOverride(
        int(concurrency) if concurrency else None,
        Rate(int(count), float(period)) if count else None,
    )


def decode_usage(entry: list[Any]) -> BudgetUsage:
    """One budget of budget_usage.lua's reply: key, limit, holders (id, runner, lease triples,
    flat), waiting count, oldest wait ('' for none), starts in the window."""
    key, limit, flat, waiting, oldest, starts = entry
    holders = tuple(
        BudgetHolder(
            flat[i].decode(),
            flat[i + 1].decode() or None,
            float(flat[i + 2]) if flat[i + 2] else None,
        )
        for i in range(0, len(flat), 3)
    )
    return BudgetUsage(
        key.decode(),
        limit.decode(),
        holders,
        int(waiting),
        float(oldest) if oldest else None,
        int(starts),
    )
