"""The taskgate.errors hierarchy."""

from __future__ import annotations

import inspect
import pickle

import pytest

import taskgate
from taskgate import InvocationStatus, errors
from taskgate.errors import (
    BackendError,
    BackendUnavailableError,
    ConcurrencyControlledError,
    InvocationConcurrencyWithDifferentArgumentsError,
    InvocationNotFoundError,
    ResultTimeoutError,
    TaskFailedError,
    TaskgateError,
)

PUBLIC_ERRORS = [getattr(errors, name) for name in errors.__all__]


def test_errors_module_is_exported_at_top_level() -> None:
    assert taskgate.errors is errors


def test_all_lists_every_exception_class_of_the_module() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert defined == set(errors.__all__)


@pytest.mark.parametrize("error", PUBLIC_ERRORS, ids=lambda error: error.__name__)
def test_every_public_error_derives_from_taskgate_error(error: type[Exception]) -> None:
    assert issubclass(error, TaskgateError)
    assert issubclass(error, Exception)


def test_backend_unavailable_is_a_backend_error() -> None:
    assert issubclass(BackendUnavailableError, BackendError)


def test_result_timeout_error_is_also_a_timeout_error() -> None:
    exc = ResultTimeoutError("inv-1", 2.5)
    assert isinstance(exc, TimeoutError)
    assert isinstance(exc, TaskgateError)
    assert exc.invocation_id == "inv-1"
    assert exc.timeout == 2.5
    assert "inv-1" in str(exc)
    assert exc.status is None
    assert "keeps running" in str(exc)  # the two-argument form says what it always said
    with pytest.raises(TimeoutError):
        raise exc


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (InvocationStatus.RUNNING, "it keeps running"),
        (InvocationStatus.REGISTERED, "its status is registered: no runner has picked it up"),
        (InvocationStatus.CONCURRENCY_CONTROLLED, "waiting for a running slot"),
        (InvocationStatus.RETRY, "waiting to be retried"),
    ],
)
def test_result_timeout_error_says_what_the_invocation_is_doing(
    status: InvocationStatus, says: str
) -> None:
    exc = ResultTimeoutError("inv-1", 2.5, status)
    assert says in str(exc)
    assert exc.status is status
    loaded = pickle.loads(pickle.dumps(exc))
    assert (loaded.status, str(loaded)) == (status, str(exc))


def test_different_arguments_error_has_its_attributes() -> None:
    exc = InvocationConcurrencyWithDifferentArgumentsError("m.f", "inv-1", "x: 1 -> 2")
    assert exc.task_id == "m.f"
    assert exc.existing_invocation_id == "inv-1"
    assert exc.diff == "x: 1 -> 2"
    message = str(exc)
    assert "m.f" in message
    assert "inv-1" in message
    assert "x: 1 -> 2" in message


def test_concurrency_controlled_error_names_invocation_and_task() -> None:
    exc = ConcurrencyControlledError("inv-1", "m.f")
    assert exc.invocation_id == "inv-1"
    assert exc.task_id == "m.f"
    assert "inv-1" in str(exc)
    assert "m.f" in str(exc)


def test_invocation_not_found_error_names_the_invocation() -> None:
    exc = InvocationNotFoundError("inv-404")
    assert exc.invocation_id == "inv-404"
    assert "inv-404" in str(exc)


def test_task_failed_error_message_has_type_name_and_text() -> None:
    exc = TaskFailedError("mod.LocalError", "went wrong", "Traceback ...")
    assert str(exc) == "mod.LocalError: went wrong"
    assert exc.type_name == "mod.LocalError"
    assert exc.remote_traceback == "Traceback ..."


@pytest.mark.parametrize(
    ("type_name", "message", "remote_traceback"),
    [
        ("mod.LocalError", "went wrong", "Traceback (most recent call last): ..."),
        ("mod.Empty", "", ""),
        ("mod.Colons", "a: b: c", "tb"),
    ],
)
def test_task_failed_error_survives_pickling(
    type_name: str, message: str, remote_traceback: str
) -> None:
    exc = TaskFailedError(type_name, message, remote_traceback)
    loaded = pickle.loads(pickle.dumps(exc))
    assert type(loaded) is TaskFailedError
    assert str(loaded) == str(exc)
    assert loaded.type_name == type_name
    assert loaded.remote_traceback == remote_traceback


@pytest.mark.parametrize(
    "exc",
    [
        errors.ResultTimeoutError("inv-1", 2.5),
        errors.ConcurrencyControlledError("inv-1", "mod.task"),
        errors.InvocationConcurrencyWithDifferentArgumentsError("mod.task", "inv-1", "x: 1 -> 2"),
        errors.InvocationNotFoundError("inv-1"),
        errors.RunnerLostError("gone"),
        errors.RemoteTraceback("Traceback (most recent call last):\n  ...\nValueError: x\n"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_error_survives_pickling_with_its_attributes(exc: errors.TaskgateError) -> None:
    loaded = pickle.loads(pickle.dumps(exc))
    assert type(loaded) is type(exc)
    assert str(loaded) == str(exc)
    assert vars(loaded) == vars(exc)
