"""The monitor's actions, shared by the pages' forms and the ``/api/`` POSTs.

Each uses the app's own public operations (``app.cancel``, :func:`taskgate.resubmit.resubmit`,
``app.set_limit``, ``app.reset_limit``), so the monitor changes nothing a script could not.
Each returns a JSON-ready document, or raises :class:`ActionError` with the HTTP status and a
message that says what to do.
"""

from __future__ import annotations

import logging
from typing import Any

from taskgate.app import App
from taskgate.errors import (
    InvalidTaskOptionsError,
    InvocationConcurrencyWithDifferentArgumentsError,
    InvocationNotFoundError,
    SerializationError,
    TaskNotFoundError,
)
from taskgate.invocation import ReusedInvocation
from taskgate.resubmit import resubmit
from taskgate.status import InvocationStatus

logger = logging.getLogger(__name__)

JsonObject = dict[str, Any]


class ActionError(Exception):
    """An action that cannot be done: ``status_code`` (400, 404, 409) and a message."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def cancel(app: App, invocation_id: str) -> JsonObject:
    """Cancel an invocation: a waiting one at once, a running one once its body stopped.

    Returns ``{invocation_id, cancelled, status}``: ``cancelled`` False when it had ended
    already. Raises ActionError 404 for an unknown id.
    """
    try:
        done = app.cancel(invocation_id)
    except InvocationNotFoundError as exc:
        raise ActionError(404, str(exc)) from exc
    record = app.backend.get(invocation_id)
    logger.info("monitor: cancel of invocation %s (%s)", invocation_id, done)
    return {
        "invocation_id": invocation_id,
        "cancelled": done,
        "status": record.status.value if record is not None else None,
    }


def retry(app: App, invocation_id: str) -> JsonObject:
    """Call a FAILED invocation's task again with the same arguments (a new invocation).

    Returns ``{invocation_id, new_invocation_id, created}`` (``created`` False when the call
    folded into a waiting invocation by registration concurrency). Raises ActionError 404
    (unknown id), 409 (not FAILED, or an invocation of the task waits with other arguments and
    the task refuses to fold into it: ``on_diff_non_key_args_raise``) or 400 (its task or
    arguments cannot be loaded here).
    """
    record = app.backend.get(invocation_id)
    if record is None:
        raise ActionError(404, str(InvocationNotFoundError(invocation_id)))
    if record.status is not InvocationStatus.FAILED:
        raise ActionError(
            409, f"only a FAILED invocation can be retried; {invocation_id} is {record.status}"
        )
    try:
        new = resubmit(app, invocation_id)
    except (TaskNotFoundError, SerializationError) as exc:
        raise ActionError(400, f"{type(exc).__name__}: {exc}") from exc
    except InvocationConcurrencyWithDifferentArgumentsError as exc:
        raise ActionError(
            409,
            f"cannot retry now: invocation {exc.existing_invocation_id} of {exc.task_id} waits "
            f"with other arguments ({exc.diff}) and this task does not fold a call into it; "
            "retry once it has run, or cancel it first",
        ) from exc
    logger.info("monitor: retry of invocation %s as %s", invocation_id, new.invocation_id)
    return {
        "invocation_id": invocation_id,
        "new_invocation_id": new.invocation_id,
        "created": not isinstance(new, ReusedInvocation),
    }


def set_override(app: App, name: str, concurrency: str | None, rate: str | None) -> JsonObject:
    """Store an override of limit ``name`` (empty values keep the declared ones).

    Returns ``{name, concurrency, rate, overridden}`` with the effective values now. Raises
    ActionError 400 for an invalid value or neither value given.
    """
    parsed: int | None = None
    if concurrency:
        try:
            parsed = int(concurrency)
        except ValueError:
            raise ActionError(400, f"concurrency must be an integer, not {concurrency!r}") from None
    try:
        app.set_limit(name, concurrency=parsed, rate=rate or None)
    except InvalidTaskOptionsError as exc:
        raise ActionError(400, str(exc)) from exc
    logger.info("monitor: limit %s overridden", name)
    return effective(app, name)


def reset_override(app: App, name: str) -> JsonObject:
    """Delete the override of limit ``name``; returns the effective values now."""
    try:
        app.reset_limit(name)
    except InvalidTaskOptionsError as exc:
        raise ActionError(400, str(exc)) from exc
    logger.info("monitor: limit %s reset", name)
    return effective(app, name)


def effective(app: App, name: str) -> JsonObject:
    """``{name, concurrency, rate, overridden}`` of limit ``name`` as the store has it now."""
    info = next((i for i in app.limits() if i.name == name), None)
    return {
        "name": name,
        "concurrency": info.concurrency if info else None,
        "rate": str(info.rate) if info and info.rate else None,
        "overridden": bool(info and info.overridden),
    }
