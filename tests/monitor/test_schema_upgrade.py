"""An SQLite file of an older schema: the monitor reads it as the other read commands do.

Opening an SQLite store upgrades its schema in place (``ensure_schema``, one transaction),
whoever opens it: ``taskgate status``, ``inspect``, ``invocations`` and the monitor alike. The
monitor does not differ from them (documented in docs/operations/monitor.md).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from taskgate import App
from taskgate.backends.sqlite.schema import SCHEMA_VERSION
from taskgate.cli import cli
from taskgate.monitor import create_monitor_app
from tests.monitor.support import BASE_URL, LOOPBACK_CLIENT
from tests.unit.test_sqlite_schema import make_v3_file


def version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        found: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return found
    finally:
        conn.close()


def test_the_monitor_and_status_both_upgrade_a_v3_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"v3_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text('from taskgate import App\napp = App("app")\n')
    monkeypatch.syspath_prepend(str(tmp_path))

    for_status, for_monitor = tmp_path / "status.db", tmp_path / "monitor.db"
    make_v3_file(for_status)
    make_v3_file(for_monitor)
    assert version(for_status) == version(for_monitor) == 3

    result = CliRunner().invoke(
        cli, ["status", "--json", "--app", f"{module}:app", "--backend", f"sqlite:///{for_status}"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)  # status read the file, upgraded
    assert version(for_status) == SCHEMA_VERSION

    app = App("app", backend=f"sqlite:///{for_monitor}")
    with TestClient(create_monitor_app(app), base_url=BASE_URL, client=LOOPBACK_CLIENT) as client:
        totals = client.get("/api/overview").json()["totals"]
    assert totals["success"] == 1 and totals["registered"] == 1
    assert version(for_monitor) == SCHEMA_VERSION
