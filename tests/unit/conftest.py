"""Shared fixtures of the unit tests: no runner, no backend beyond constructing objects."""

from __future__ import annotations

import os

import pytest

from taskgate import App


@pytest.fixture(autouse=True)
def _clean_taskgate_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never depend on TASKGATE_* variables of the real environment."""
    for name in list(os.environ):
        if name.startswith("TASKGATE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def app() -> App:
    """A fresh in-memory app; its backend is never touched by unit tests."""
    return App(backend="memory://")
