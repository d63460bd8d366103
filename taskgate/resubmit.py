"""Calling a stored invocation's task again with its stored arguments (the monitor's "retry").

A new call, not a resurrection: it registers a new invocation (registration concurrency
applies as for any call, so it may fold into a waiting one), of the same task, with the same
arguments, queue and priority. The old invocation keeps its final status and history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskgate.errors import InvocationNotFoundError, SerializationError

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.invocation import Invocation


def resubmit(app: App, invocation_id: str) -> Invocation[Any]:
    """Register a new call of invocation ``invocation_id``'s task with its stored arguments.

    Returns:
        The new invocation (a ``ReusedInvocation`` when registration concurrency folds it into
        a waiting one).

    Raises:
        InvocationNotFoundError: no such invocation in this app (purged or expired).
        TaskNotFoundError: its task cannot be imported in this process.
        SerializationError: its stored arguments cannot be decoded by the app's serializer.
    """
    record = app.backend.get(invocation_id)
    if record is None:
        raise InvocationNotFoundError(invocation_id)
    task = app._resolve_task(record.task_id)
    arguments = app.serializer.loads(record.arguments)
    if not isinstance(arguments, dict):
        raise SerializationError(
            f"the stored arguments of invocation {invocation_id} are not a mapping of "
            f"parameter names ({type(arguments).__name__}); it cannot be called again"
        )
    return app._register_call(task, arguments, priority=record.priority, queue=record.queue)
