"""Shared fixtures of the unit tests: no runner, no backend beyond constructing objects.

(The TASKGATE_* environment is cleared for every test by the autouse fixture of
tests/conftest.py.)
"""

from __future__ import annotations

import pytest

from taskgate import App


@pytest.fixture
def app() -> App:
    """A fresh in-memory app (overrides the per-backend one); unit tests never run it."""
    return App(backend="memory://")
