"""Fixtures of the monitor tests: the monitor of the test's app behind Starlette's TestClient.

``monitor`` serves the app of the ``app`` fixture (memory, SQLite and Redis in turn), so every
page and endpoint is checked on each backend.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from taskgate import App
from taskgate.monitor import create_monitor_app
from tests.monitor.support import BASE_URL, LOOPBACK_CLIENT


@pytest.fixture
def monitor(app: App) -> Iterator[TestClient]:
    """A client of the monitor of ``app``, without a token (as on loopback)."""
    with TestClient(create_monitor_app(app), base_url=BASE_URL, client=LOOPBACK_CLIENT) as client:
        yield client
