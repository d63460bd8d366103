"""The public surface of App, Task and the invocation handle: an explicit list, all documented.

A helper added to one of these classes without a leading underscore fails here, so internal
methods cannot leak into ``help(App)`` or the API reference silently.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from taskgate import App, DistributedInvocation, Task
from taskgate.task import TaskOptions

EXPECTED: dict[type[Any], set[str]] = {
    App: {
        "backend",
        "cancel",
        "get_invocation",
        "invocations",
        "limit",
        "limits",
        "purge",
        "reset_limit",
        "runner",
        "serializer",
        "set_limit",
        "task",
        "tasks",
    },
    Task: {"invocation", "parallelize", "with_options"},
    DistributedInvocation: {
        "arguments",
        "async_result",
        "attempt",
        "blocked_by",
        "cancel",
        "get_result",
        "history",
        "num_retries",
        "result",
        "scheduled_for",
        "status",
        "task",
    },
}

PUBLIC = [(cls, name) for cls, names in EXPECTED.items() for name in sorted(names)]


def public_names(cls: type[Any]) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda cls: cls.__name__)
def test_public_names_are_exactly_the_expected_ones(cls: type[Any]) -> None:
    assert public_names(cls) == EXPECTED[cls]


@pytest.mark.parametrize("cls, name", PUBLIC, ids=lambda item: getattr(item, "__name__", item))
def test_every_public_name_is_documented(cls: type[Any], name: str) -> None:
    static = inspect.getattr_static(cls, name)
    doc = inspect.getdoc(getattr(cls, name))
    assert doc, f"{cls.__name__}.{name} has no docstring"
    if isinstance(static, property):
        return
    parameters = [p for p in inspect.signature(getattr(cls, name)).parameters if p != "self"]
    if parameters:
        assert "Args:" in doc, f"{cls.__name__}.{name} documents no Args"
    returns = inspect.signature(getattr(cls, name)).return_annotation
    if returns not in (None, "None", inspect.Signature.empty):
        assert "Returns:" in doc, f"{cls.__name__}.{name} documents no Returns"


def test_help_of_app_task_lists_every_task_option() -> None:
    doc = inspect.getdoc(App.task) or ""
    missing = [f.name for f in dataclasses.fields(TaskOptions) if f.name not in doc]
    assert missing == []
