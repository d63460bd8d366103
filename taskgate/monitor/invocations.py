"""What the invocation list and detail pages (and their ``/api/`` twins) show.

The list is one :meth:`~taskgate.backends.base.Backend.page_invocations` call: a bounded page,
newest first, with an opaque cursor for the next one; the monitor never lists everything. The
detail is one ``get`` (plus ``blocked_by`` for a parked invocation and the runner
descriptions, to say on which host it runs). Stored values are decoded with the app's
serializer and shown as truncated ``repr`` texts; an error keeps its FULL remote traceback.
"""

from __future__ import annotations

from typing import Any

from taskgate.app import App
from taskgate.cli.json_output import iso_time
from taskgate.cli.render import describe_exception, describe_owner, split_scope_key
from taskgate.errors import InvalidCursorError, RemoteTraceback
from taskgate.monitor.format import decode, seconds_until, short_repr
from taskgate.record import InvocationRecord
from taskgate.status import InvocationStatus

JsonObject = dict[str, Any]

PAGE_DEFAULT = 50
PAGE_MAX = 500
HOLDERS_SHOWN = 20


class BadRequest(ValueError):
    """A query parameter the monitor cannot use; the message says which and why."""


def parse_filters(params: dict[str, str]) -> JsonObject:
    """The list filters from query parameters ``task``, ``status``, ``prefix``, ``cursor``,
    ``limit`` (empty values are ignored).

    Raises:
        BadRequest: an unknown status or a limit that is not an integer in 1..500.
    """
    status = params.get("status") or None
    if status is not None:
        try:
            status = InvocationStatus(status.lower()).value
        except ValueError:
            known = ", ".join(s.value for s in InvocationStatus)
            raise BadRequest(f"unknown status {status!r}; one of {known}") from None
    raw_limit = params.get("limit") or str(PAGE_DEFAULT)
    try:
        limit = int(raw_limit)
    except ValueError:
        raise BadRequest(f"limit must be an integer, not {raw_limit!r}") from None
    if not 1 <= limit <= PAGE_MAX:
        raise BadRequest(f"limit must be between 1 and {PAGE_MAX}, not {limit}")
    return {
        "task": params.get("task") or None,
        "status": status,
        "prefix": (params.get("prefix") or "").strip() or None,
        "cursor": params.get("cursor") or None,
        "limit": limit,
    }


def invocations_data(app: App, filters: JsonObject) -> JsonObject:
    """One page of invocations (what ``/api/invocations`` returns).

    Keys: filters {task, status, prefix, cursor, limit}, invocations [summary...],
    next_cursor (null on the last page), scanned_all (False when the store stopped at its
    scan bound before filling the page: follow next_cursor), tasks (known task ids, for the
    filter form).
    """
    status = InvocationStatus(filters["status"]) if filters["status"] else None
    try:
        page = app.backend.page_invocations(
            task_id=filters["task"],
            status=status,
            id_prefix=filters["prefix"],
            limit=filters["limit"],
            cursor=filters["cursor"],
        )
    except InvalidCursorError as exc:  # an edited or stale ?cursor=
        raise BadRequest(str(exc)) from exc
    return {
        "filters": filters,
        "invocations": [summary(record) for record in page.records],
        "next_cursor": page.next_cursor,
        "scanned_all": page.scanned_all,
        "tasks": sorted(app.tasks),
    }


def summary(record: InvocationRecord) -> JsonObject:
    """One row of the list: id, task, status, attempt, created, runner, queue, priority."""
    return {
        "invocation_id": record.invocation_id,
        "task": record.task_id,
        "status": record.status.value,
        "attempt": record.attempt,
        "created_at": iso_time(record.created_at),
        "runner_id": record.runner_id,
        "queue": record.queue,
        "priority": record.priority,
    }


def invocation_data(app: App, invocation_id: str, at: float) -> JsonObject | None:
    """One invocation in full (what ``/api/invocations/<id>`` returns), or None if unknown.

    Keys: the summary's, and num_retries, max_retries, scheduled_for, lease_expires_at,
    lease_seconds_left, cancel_requested, last_runner, runner_host, arguments {name: repr}
    (or arguments_error), result (repr, SUCCESS only), error (``Type: message``), traceback
    (the runner's full formatted traceback), outcome (a sentence for dropped and cancelled
    ones), blocked_by {scope_key, key_values, holders [{invocation_id, runner_id}],
    ready_at} (parked ones only), history [{status, at, runner_id}], can_cancel, can_retry.
    """
    backend = app.backend
    record = backend.get(invocation_id)
    if record is None:
        return None
    hosts = {info.runner_id: info.host for info in backend.runner_infos()}
    data = summary(record)
    data.update(
        num_retries=record.num_retries,
        max_retries=record.max_retries,
        scheduled_for=iso_time(record.scheduled_for),
        lease_expires_at=iso_time(record.lease_expires_at),
        lease_seconds_left=seconds_until(record.lease_expires_at, at),
        cancel_requested=record.cancel_requested and not record.status.is_final,
        last_runner=describe_owner(record),
        runner_host=hosts.get(record.runner_id) if record.runner_id else None,
        history=[
            {"status": t.status.value, "at": iso_time(t.timestamp), "runner_id": t.runner_id}
            for t in record.history
        ],
        can_cancel=not record.status.is_final,
        can_retry=record.status is InvocationStatus.FAILED,
    )
    data.update(_arguments(app, record.arguments))
    data.update(outcome_data(app, record))
    data["blocked_by"] = _blocked_by(app, record)
    return data


def _arguments(app: App, stored: bytes) -> JsonObject:
    value, problem = decode(app.serializer.loads, stored)
    if problem is not None:
        return {"arguments": None, "arguments_error": problem}
    if isinstance(value, dict):
        return {
            "arguments": {str(k): short_repr(v) for k, v in value.items()},
            "arguments_error": None,
        }
    return {"arguments": {"(all)": short_repr(value)}, "arguments_error": None}


def outcome_data(app: App, record: InvocationRecord) -> JsonObject:
    """``result``, ``error``, ``traceback`` and ``outcome`` (each None when not applicable)."""
    out: JsonObject = {"result": None, "error": None, "traceback": None, "outcome": None}
    status = record.status
    if status is InvocationStatus.SUCCESS and record.result is not None:
        value, problem = decode(app.serializer.loads, record.result)
        out["result"] = problem or short_repr(value)
    elif status is InvocationStatus.CONCURRENCY_CONTROLLED_FINAL:
        out["outcome"] = "dropped: its running scope or a limit was full"
    elif status is InvocationStatus.CANCELLED:
        ran = any(t.status is InvocationStatus.RUNNING for t in record.history)
        out["outcome"] = "cancelled: " + ("its run was interrupted" if ran else "it never ran")
    if record.error is not None and status is not InvocationStatus.SUCCESS:
        exc, problem = decode(app.serializer.loads_error, record.error)
        if problem is not None:
            out["error"] = problem
        else:
            out["error"] = describe_exception(exc)
            remote = RemoteTraceback.find(exc)
            out["traceback"] = remote.traceback.rstrip("\n") if remote is not None else None
    return out


def _blocked_by(app: App, record: InvocationRecord) -> JsonObject | None:
    if record.status is not InvocationStatus.CONCURRENCY_CONTROLLED:
        return None
    blocked = app.backend.blocked_by(record.invocation_id)
    if blocked is None:  # it got its slot between the two reads
        return None
    holders = []
    for holder in blocked.holders[:HOLDERS_SHOWN]:
        held = app.backend.get(holder)
        holders.append(
            {"invocation_id": holder, "runner_id": held.runner_id if held is not None else None}
        )
    return {
        "scope_key": blocked.scope_key,
        "key_values": split_scope_key(blocked.scope_key).values,
        "holders": holders,
        "holders_total": len(blocked.holders),
        "ready_at": iso_time(blocked.ready_at),
    }
