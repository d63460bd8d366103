"""Fixtures of the browser tests: headless Chromium, and a real monitor with real runners.

The tests drive ``taskgate monitor`` in Debian's ``chromium`` through Selenium, pointed at
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` explicitly (Selenium Manager never looks
for a browser or a driver online). Without them every test here is skipped, with the reason,
and the session's summary ends with one line saying how to install them.

A :class:`MonitorStack` is one store (SQLite or Redis) with a ``taskgate runner start`` process
and a ``taskgate monitor`` process on a free loopback port, both on ``tests/apps/monitor_app.py``;
the stack lives for one module and backend (starting processes is the slow part), so each test
makes its own invocations with its own key values.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import BACKEND_FACTORIES, SHARED_BACKENDS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
SKIP_REASON = (
    f"Chromium not found at {', '.join(MISSING)}; install it: apt-get install chromium "
    "chromium-driver"
)

APPS = Path(__file__).resolve().parents[1] / "apps"
HERE = Path(__file__).resolve().parent
# Bounds of waits that normally end in milliseconds (starting a process: about a second).
WAIT = 30.0

_skipped: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Chromium, skip every browser test, saying why."""
    if not MISSING:
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(marker)
            _skipped.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line at the end of the session, so that nobody mistakes a skip for a pass."""
    if _skipped:
        terminalreporter.write_line(
            f"browser tests skipped ({len(_skipped)}): {SKIP_REASON}", yellow=True, bold=True
        )


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chrome() -> Iterator[Any]:
    """One headless Chromium for the session (a start costs about two seconds); tests that need
    a clean one (no cookies) call ``delete_all_cookies``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chrome: Any) -> Any:
    """The session's Chromium, without the cookies of earlier tests."""
    chrome.delete_all_cookies()
    return chrome


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on (the OS picks it; closed again for the monitor)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    """Block until ``port`` accepts a connection; fail at once if ``process`` exits first."""
    deadline = time.monotonic() + WAIT
    while True:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the monitor exited with {process.returncode}:\n{err}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.02)


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM ``process`` and wait for it; its stderr, and an exit code other than 0 in it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    # uvicorn stops cleanly on SIGTERM, then re-raises it: the monitor's exit is -SIGTERM.
    if process.returncode not in (0, -signal.SIGTERM):
        return f"{process.args} exited with {process.returncode}:\n{err}"
    return ""


@dataclass
class MonitorStack:
    """One store with a runner process and a monitor process on it."""

    backend: str
    app_id: str
    directory: Path
    env: dict[str, str]
    module: ModuleType
    url: str = ""
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    releases: list[Path] = field(default_factory=list)

    @property
    def app(self) -> Any:
        return self.module.app

    def release_file(self) -> Path:
        """A new path whose creation lets the ``export`` runs given it return."""
        path = self.directory / f"release-{uuid.uuid4().hex[:8]}"
        self.releases.append(path)
        return path

    def release_all(self) -> None:
        for path in self.releases:
            path.touch()

    def command(self, *arguments: str) -> list[str]:
        return [sys.executable, "-m", "taskgate", *arguments, "--app", "monitor_app:app"]

    def start(self, command: list[str], **env: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            command,
            env={**self.env, **env},
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def start_runner(self, threads: int = 4) -> subprocess.Popen[str]:
        """A ``taskgate runner start`` process, returned once the store lists it as live."""
        before = len(self.app.backend.stats().runners)
        # A 9 s lease: the runner renews and describes itself every 3 s (a third of a lease),
        # so the runners page shows what it runs soon after it starts.
        command = self.command("runner", "start", "--threads", str(threads))
        process = self.start(command, TASKGATE_LEASE_SECONDS="9")
        deadline = time.monotonic() + WAIT
        while len(self.app.backend.stats().runners) <= before:
            if process.poll() is not None:
                pytest.fail(f"the runner exited: {process.communicate()[1]}")
            assert time.monotonic() < deadline, "the runner did not announce itself"
            time.sleep(0.01)
        return process

    def start_monitor(self, *arguments: str, **env: str) -> str:
        """A ``taskgate monitor`` process on a free port; its base URL once it accepts."""
        port = free_port()
        process = self.start(self.command("monitor", "--port", str(port), *arguments), **env)
        wait_for_port(port, process)
        return f"http://127.0.0.1:{port}"

    def close(self) -> list[str]:
        """Release every held slot, stop every process (monitors first, the runner last so
        that it finishes the released runs); the stderr of those that did not exit with 0."""
        self.release_all()
        errors = [stop(process) for process in reversed(self.processes)]
        self.processes.clear()
        return errors


def _import_app(app_id: str, backend: str) -> ModuleType:
    """Import ``monitor_app`` afresh for this store (the test process's own copy)."""
    sys.modules.pop("monitor_app", None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASKGATE_TEST_BACKEND", backend)
        patch.setenv("TASKGATE_TEST_APP_ID", app_id)
        patch.syspath_prepend(str(APPS))
        import monitor_app
    sys.modules.pop("monitor_app", None)
    return monitor_app


@pytest.fixture(scope="module", params=SHARED_BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MonitorStack]:
    """A runner and a monitor on a fresh store of each shared backend kind, for one module."""
    directory = tmp_path_factory.mktemp(f"monitor-{request.param}")
    backend = BACKEND_FACTORIES[request.param](request, directory)
    app_id = f"browser-{uuid.uuid4().hex[:10]}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("TASKGATE_")}
    env.update(
        TASKGATE_TEST_BACKEND=backend,
        TASKGATE_TEST_APP_ID=app_id,
        PYTHONPATH=os.pathsep.join([str(APPS), *sys.path]),
        PYTHONUNBUFFERED="1",
    )
    stack = MonitorStack(request.param, app_id, directory, env, _import_app(app_id, backend))
    stack.app.purge()  # creates the store, so that the monitor finds it
    try:
        stack.start_runner()
        stack.url = stack.start_monitor()
        yield stack
    finally:
        errors = stack.close()
        stack.app.purge()
        stack.app.backend.close()
    failures = [err for err in errors if err]
    assert not failures, "\n".join(failures)
