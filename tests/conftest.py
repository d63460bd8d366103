"""Fixtures shared by every suite: one backend URL per backend kind, apps, and running runners.

Contract and end-to-end tests take ``backend_url`` (or ``app``), so each runs once per entry of
``BACKEND_FACTORIES``. A new backend joins every suite by adding one entry.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from taskgate import App, Invocation, InvocationStatus
from taskgate.runner.base import Runner
from taskgate.testing import RedisServer

BackendFactory = Callable[[pytest.FixtureRequest, Path], str]


def _memory_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://"


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'taskgate.db'}"


def _redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "memory": _memory_url,
    "sqlite": _sqlite_url,
    "redis": _redis_url,
}

# Backends whose store several processes share (the memory backend lives in one process).
SHARED_BACKENDS = sorted(name for name in BACKEND_FACTORIES if name != "memory")

# Generous bounds for waits that normally end in milliseconds; only reached when a test fails.
WAIT = 15.0


@pytest.fixture(autouse=True)
def _clean_taskgate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit settings from the developer's environment."""
    for name in list(os.environ):
        if name.startswith("TASKGATE_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=sorted(BACKEND_FACTORIES))
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each backend kind."""
    return BACKEND_FACTORIES[request.param](request, tmp_path)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each backend kind that several processes can share."""
    return BACKEND_FACTORIES[request.param](request, tmp_path)


@pytest.fixture
def make_app(backend_url: str) -> Iterator[Callable[..., App]]:
    """Build apps on the test's backend, each with its own app_id; purged afterwards."""
    apps: list[App] = []

    def factory(**settings: Any) -> App:
        settings.setdefault("threads", 4)
        settings.setdefault("shutdown_grace_seconds", 5.0)
        app = App(f"test-{uuid.uuid4().hex[:12]}", backend=backend_url, **settings)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.purge()
        app.backend.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    """An app on the test's backend."""
    return make_app()


@contextmanager
def running(runner: Runner) -> Iterator[Runner]:
    """Run ``runner`` in a thread for the duration of the block; stop it and wait for it."""
    thread = threading.Thread(target=runner.run, name="test-runner", daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop_runner_loop()
        thread.join(WAIT)
        assert not thread.is_alive(), "the runner did not stop"


@pytest.fixture
def run_runner() -> Callable[[Runner], Any]:
    """``with run_runner(app.runner): ...`` runs a runner for the block."""
    return running


def wait_for_status(invocation: Invocation[Any], wanted: InvocationStatus) -> None:
    """Block until ``invocation`` reaches ``wanted``; fails the test after ``WAIT`` seconds.

    For states no event announces (a runner parking an invocation); checks every 5 ms.
    """
    deadline = time.monotonic() + WAIT
    while (current := invocation.status) is not wanted:
        assert time.monotonic() < deadline, f"{invocation} stuck in {current}, expected {wanted}"
        time.sleep(0.005)


@pytest.fixture
def wait_status() -> Callable[[Invocation[Any], InvocationStatus], None]:
    """``wait_status(invocation, InvocationStatus.X)`` blocks until the status is reached."""
    return wait_for_status


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The suite's own redis-server, or the server named by ``REDIS_URL`` (never stopped)."""
    if os.environ.get("REDIS_URL"):
        external = RedisServer.__new__(RedisServer)
        external.url = os.environ["REDIS_URL"]
        external.process = None
        yield external
        return
    with RedisServer() as server:
        yield server
