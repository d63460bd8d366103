"""The taskgate error hierarchy.

Every error the library raises on purpose derives from :class:`TaskgateError`, so callers can
catch one type. Errors from drivers (sqlite3, redis) are wrapped at the backend edge and chained
(``raise BackendUnavailableError(...) from exc``), never leaked raw.
"""

from __future__ import annotations

from typing import Any


class TaskgateError(Exception):
    """Base class of every taskgate error.

    Errors pickle with their message and attributes intact, whatever their constructor takes, so
    one raised inside a task reaches the caller as its own type.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(
    cls: type[TaskgateError], args: tuple[Any, ...], state: dict[str, Any]
) -> TaskgateError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigError(TaskgateError):
    """A setting, backend URL or runner choice is invalid; the message names it."""


class InvalidTaskOptionsError(TaskgateError):
    """``@app.task(...)`` (at decoration) or ``task.with_options(...)`` got options that cannot
    work."""


class InvalidCursorError(TaskgateError, ValueError):
    """``Backend.page_invocations`` got a cursor that is not a ``next_cursor`` this backend
    returned (edited, truncated, or from another kind of store)."""


class SerializationError(TaskgateError):
    """A value could not be serialized or deserialized by the configured serializer."""


class BackendError(TaskgateError):
    """The backend failed in a way the caller cannot fix by retrying.

    A runner that gets one (other than :class:`BackendUnavailableError`) stops: it logs the
    error, stops claiming, winds down and ``run()`` raises it.
    """


class BackendUnavailableError(BackendError):
    """The backend store cannot be reached; retry later or check the backend URL.

    The one backend error runners retry (with back-off) instead of stopping.
    """


class BackendAuthenticationError(BackendError):
    """The backend refused the credentials of the backend URL (a wrong or missing password).

    Retrying cannot help: fix the user or password in the backend URL.
    """


class BackendStoreReplacedError(BackendError):
    """The store's file was deleted or replaced while this process used it (SQLite).

    This process still writes to the old file, which nobody else sees: restart it.
    """


class BackendStoreFormatError(BackendError):
    """The store holds invocations in a layout this version cannot read (Redis: written by an
    earlier taskgate, before the compact record layout).

    Nothing was changed. Let that version's runners finish their work and its results expire,
    or purge the store (``taskgate purge``, which this version can do), then retry.
    """


class InvocationNotFoundError(TaskgateError):
    """No invocation with this id exists in this app (never registered, purged or expired)."""

    def __init__(self, invocation_id: str) -> None:
        super().__init__(
            f"invocation {invocation_id!r} does not exist in this app: it was never registered, "
            "or it was purged, or its result expired (see result_ttl_seconds)"
        )
        self.invocation_id = invocation_id


class TaskNotFoundError(TaskgateError):
    """A runner could not find the function of a task by its id."""


class ResultTimeoutError(TaskgateError, TimeoutError):
    """``get_result(timeout=...)`` gave up waiting; the invocation itself is untouched."""

    def __init__(self, invocation_id: str, timeout: float, status: str | None = None) -> None:
        super().__init__(
            f"invocation {invocation_id} did not finish within {timeout} s; "
            f"{_still(status)}; call get_result() again to keep waiting"
        )
        self.invocation_id = invocation_id
        self.timeout = timeout
        self.status = status
        """The invocation's status when the wait gave up (an InvocationStatus), if known."""


def _still(status: str | None) -> str:
    """What an unfinished invocation is doing, by its status value, for a timeout message."""
    if status is None or status == "running":
        return "it keeps running"
    if status == "concurrency_controlled":
        return "it is concurrency_controlled, waiting for a running slot"
    if status == "retry":
        return "it is waiting to be retried"
    return (
        f"its status is {status}: no runner has picked it up yet (is a runner of this app "
        "running on this backend?)"
    )


class ConcurrencyControlledError(TaskgateError):
    """The invocation was dropped by running concurrency control and will never run.

    Raised by ``.result`` of an invocation in ``CONCURRENCY_CONTROLLED_FINAL``; use
    ``reroute_on_concurrency_control=True`` (the default) to wait for the slot instead.
    """

    def __init__(self, invocation_id: str, task_id: str) -> None:
        super().__init__(
            f"invocation {invocation_id} of {task_id} was dropped because its running scope was "
            "at its limit; set reroute_on_concurrency_control=True to wait for the slot instead"
        )
        self.invocation_id = invocation_id
        self.task_id = task_id


class InvocationConcurrencyWithDifferentArgumentsError(TaskgateError):
    """A deduplicated call carried arguments that differ from the waiting invocation's.

    Raised only for tasks with ``on_diff_non_key_args_raise=True``; nothing is registered.
    """

    def __init__(self, task_id: str, existing_invocation_id: str, diff: str) -> None:
        super().__init__(
            f"{task_id} already has invocation {existing_invocation_id} waiting with different "
            f"arguments ({diff}); call again with the same arguments, or set "
            "on_diff_non_key_args_raise=False to fold this call into the waiting one"
        )
        self.task_id = task_id
        self.existing_invocation_id = existing_invocation_id
        self.diff = diff


class RetryError(TaskgateError):
    """Raise inside a task to ask for a retry (bounded by the task's ``max_retries``)."""


class TaskFailedError(TaskgateError):
    """Stands in for a task exception whose own type could not be rebuilt on the caller's side.

    That happens when the type cannot be found in the caller's process (with the JSON
    serializer: its module is not imported there), or cannot be built from its arguments. The
    message carries the original type name and text, ``remote_traceback`` the traceback (also
    attached as ``__cause__``, a :class:`RemoteTraceback`).
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        # All three as args: the JSON serializer rebuilds an error from its args, so a stand-in
        # raised by a task (a BaseException's, see the runner) comes back as itself.
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class RemoteTraceback(TaskgateError):
    """The traceback of a task's exception as the runner formatted it, attached on the caller.

    ``.result`` of a ``FAILED`` invocation re-raises the task's exception (or a
    :class:`TaskFailedError`) with this as its ``__cause__``, so ``traceback.print_exc()`` and
    uncaught-exception reports show the task's own frames (and its exception chain) first. Its
    text is the formatted runner-side traceback, after a line saying where it comes from.

    Attributes:
        traceback: The formatted traceback, as ``traceback.format_exception`` wrote it.
    """

    def __init__(self, traceback: str) -> None:
        super().__init__(traceback)
        self.traceback = traceback

    def __str__(self) -> str:
        return f"the traceback of the task, from the runner:\n{self.traceback.rstrip()}"

    @classmethod
    def find(cls, exc: BaseException) -> RemoteTraceback | None:
        """The remote traceback attached to ``exc`` (somewhere on its ``__cause__`` chain)."""
        seen: set[int] = set()
        cause: BaseException | None = exc
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, cls):
                return cause
            seen.add(id(cause))
            cause = cause.__cause__
        return None


class TaskTimeoutError(TaskgateError):
    """A run took longer than its task's ``timeout`` and was interrupted; it failed with this.

    Raised inside the body (a sync body gets it raised in its thread as soon as it runs Python
    code again; an async body is cancelled), then stored as the invocation's error. List it in
    ``retry_for`` to retry timed-out runs. The body's slots were released only once it stopped.
    """


class InvocationCancelledError(TaskgateError):
    """The invocation was cancelled (``invocation.cancel()``, ``taskgate cancel``).

    Raised by ``.result`` of a ``CANCELLED`` invocation, and inside a running body that is being
    cancelled (a sync body as soon as it runs Python code again; an async body is cancelled).
    """

    def __init__(self, invocation_id: str, task_id: str = "") -> None:
        of = f" of {task_id}" if task_id else ""
        super().__init__(
            f"invocation {invocation_id}{of} was cancelled and will never run (again); call "
            "the task again if its work is still wanted"
        )
        self.invocation_id = invocation_id
        self.task_id = task_id


class RunnerLostError(TaskgateError):
    """The runners executing an invocation kept dying (its recoveries ran out); it FAILED."""


class MainModuleTaskWarning(TaskgateError, UserWarning):
    """A task was defined in a script run as ``__main__`` while its app's store is shared.

    Its task id starts with ``__main__.``, which only this script's own runners (a ThreadRunner
    in this process, or a ProcessRunner started from it) can find; ``taskgate runner start``
    and runners of other programs fail those invocations with :class:`TaskNotFoundError`.
    Silence it with ``warnings.filterwarnings("ignore", category=MainModuleTaskWarning)`` when
    only this script runs them.
    """


__all__ = [
    "BackendAuthenticationError",
    "BackendError",
    "BackendStoreFormatError",
    "BackendStoreReplacedError",
    "BackendUnavailableError",
    "ConcurrencyControlledError",
    "ConfigError",
    "InvalidCursorError",
    "InvalidTaskOptionsError",
    "InvocationCancelledError",
    "InvocationConcurrencyWithDifferentArgumentsError",
    "InvocationNotFoundError",
    "MainModuleTaskWarning",
    "RemoteTraceback",
    "ResultTimeoutError",
    "RetryError",
    "RunnerLostError",
    "SerializationError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "TaskgateError",
]
