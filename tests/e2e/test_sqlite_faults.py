"""SQLite-only behaviour: a database file deleted or replaced under running processes.

Open connections keep the old file, which no process opening the path sees: the store would be
split silently. The backend notices it in the heartbeat's renewals, and runners stop on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from taskgate import App
from taskgate.errors import BackendStoreReplacedError

APPS = Path(__file__).resolve().parents[1] / "apps"
WAIT = 30.0


def _app(path: Path, app_id: str | None = None) -> App:
    return App(app_id or f"sqlite-{uuid.uuid4().hex[:8]}", backend=f"sqlite:///{path}")


def _take_away(path: Path, how: str) -> None:
    """Delete the database file, or move another database file onto its path."""
    if how == "deleted":
        path.unlink()
        return
    other = _app(path.with_name("other.db"))
    other.backend.stats()  # creates the file
    other.backend.close()
    os.replace(path.with_name("other.db"), path)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_renew_notices_a_deleted_or_replaced_file(tmp_path: Path, how: str) -> None:
    path = tmp_path / "store.db"
    app = _app(path)

    @app.task
    def noop() -> None: ...

    noop()
    app.backend.renew("r1", [], 30.0)
    _take_away(path, how)
    with pytest.raises(BackendStoreReplacedError, match="deleted or replaced") as raised:
        app.backend.renew("r1", [], 30.0)
    assert str(path) in str(raised.value)
    assert "start them again" in str(raised.value)
    # A thread opening its first connection now would reach the other file: refused too.
    errors: list[BaseException] = []

    def read() -> None:
        try:
            app.backend.stats()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(WAIT)
    assert len(errors) == 1 and isinstance(errors[0], BackendStoreReplacedError)
    app.backend.close()


def test_a_store_reopened_after_close_is_the_file_now_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    app = _app(path)
    app.backend.renew("r1", [], 30.0)
    app.backend.close()
    path.unlink()
    app.backend.renew("r1", [], 30.0)  # close() let go of the old file: a new store, no error
    assert "r1" in app.backend.stats().runners


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_cli_runner_stops_when_its_file_is_deleted_or_replaced(tmp_path: Path, how: str) -> None:
    path = tmp_path / "store.db"
    app_id = f"gone-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path]),
        "TASKGATE_TEST_BACKEND": f"sqlite:///{path}",
        "TASKGATE_TEST_APP_ID": app_id,
        "TASKGATE_LEASE_SECONDS": "1",
    }
    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "shared_app:app"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        watcher = _app(path, app_id)
        deadline = time.monotonic() + WAIT
        while not watcher.backend.stats().runners:  # the runner has announced itself
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the runner did not start"
            time.sleep(0.05)
        watcher.backend.close()
        _take_away(path, how)
        _, err = process.communicate(timeout=WAIT)
    finally:
        process.kill()
    assert process.returncode == 1, err
    error_lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, err
    assert "BackendStoreReplacedError" in error_lines[0]
    assert f"the SQLite file {path} was deleted or replaced" in error_lines[0]
    assert "Traceback" not in err
