"""``taskgate --log-format json``: a runner's stderr is one JSON object per line (issue 14).

A real ``taskgate runner start`` process on SQLite, with a ProcessRunner, so that the lines of
its worker process (which configures its own logging) are JSON too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.conftest import AppModuleFactory

WAIT = 60.0


@pytest.fixture
def sqlite_app(app_module_factory: AppModuleFactory, tmp_path: Path) -> ModuleType:
    module = app_module_factory(f"sqlite:///{tmp_path / 'logs.db'}")
    module.app.purge()
    return module


def _run_runner(app_module: ModuleType, *global_options: str, env: dict[str, str]) -> str:
    """Start a runner, run one success and one failure through it, stop it; its stderr."""
    command = [sys.executable, "-m", "taskgate", *global_options, "runner", "start"]
    options = ["--app", f"{app_module.__name__}:app", "--runner", "ProcessRunner"]
    runner = subprocess.Popen(
        [*command, *options, "--processes", "1", "--threads", "1"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ok, failing = app_module.add(1, 2), app_module.fail("on purpose")
        assert ok.get_result(WAIT) == 3
        with pytest.raises(ValueError):
            failing.get_result(WAIT)
    finally:
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=WAIT)
    assert runner.returncode == 0, err
    return err


def test_every_stderr_line_of_a_runner_is_json_with_ids_on_lifecycle_lines(
    sqlite_app: ModuleType,
) -> None:
    err = _run_runner(sqlite_app, "--log-format", "json", env={})
    lines = [json.loads(line) for line in err.splitlines()]  # every line, or this raises
    assert lines
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line)
    started = [line for line in lines if " started (attempt" in line["message"]]
    failed = [
        line for line in lines if line["message"].endswith("failed: ValueError('on purpose')")
    ]
    assert len(started) == 2 and len(failed) == 1
    for line in [*started, *failed]:
        assert line["invocation_id"] in line["message"]
        assert line["task"].endswith((".add", ".fail"))
        assert line["attempt"] == 1
        assert line["runner_id"].endswith("-w1")  # logged by the worker process
    assert "Traceback (most recent call last)" in failed[0]["exc_info"]


def test_the_environment_variable_chooses_json_too(sqlite_app: ModuleType) -> None:
    err = _run_runner(sqlite_app, env={"TASKGATE_LOG_FORMAT": "json"})
    assert all(json.loads(line)["message"] for line in err.splitlines())


def test_plain_stays_the_default(sqlite_app: ModuleType) -> None:
    err = _run_runner(sqlite_app, env={})
    assert err and not err.lstrip().startswith("{")
