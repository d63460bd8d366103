"""``taskgate monitor``: refusing an open bind without a token, the missing extra, and a real
monitor process answering ``/`` and ``/metrics``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from taskgate import App
from taskgate.cli import cli
from tests.conftest import WAIT
from tests.monitor.support import free_port


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_a_non_loopback_host_without_a_token_is_refused(host: str) -> None:
    result = CliRunner().invoke(cli, ["monitor", "--app", "no_such_module:app", "--host", host])
    assert result.exit_code == 2
    assert "refusing to serve the monitor" in result.output
    assert "TASKGATE_MONITOR_TOKEN" in result.output


def test_importing_taskgate_does_not_import_the_monitor_stack() -> None:
    code = "import sys, taskgate, taskgate.cli; print('starlette' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_the_extra_the_command_says_what_to_install(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["starlette"] = None  # as if the extra were not installed
        from taskgate.cli import main
        sys.argv = ["taskgate", "monitor", "--app", "whatever:app"]
        main()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert out.returncode == 2, out.stderr
    assert "pip install 'taskgate[monitor]'" in out.stderr


def test_the_real_command_serves_pages_and_metrics(tmp_path: Path) -> None:
    backend = f"sqlite:///{tmp_path / 'store.db'}"
    app_id = f"cli-{uuid.uuid4().hex[:8]}"
    (tmp_path / "monitored.py").write_text(
        textwrap.dedent(
            f"""
            from taskgate import App

            app = App({app_id!r}, backend={backend!r})

            @app.task
            def add(a: int) -> int:
                return a
            """
        )
    )
    local = App(app_id, backend=backend)
    local.purge()  # creates the store, which the monitor never does
    port = free_port()
    token = f"tok-{uuid.uuid4().hex}"
    env = {**os.environ, "TASKGATE_MONITOR_TOKEN": token, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "taskgate", "monitor", "--app", "monitored:app"]
    command += ["--port", str(port)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        response = _first_answer(f"{base}/", headers, process)
        assert response.status_code == 200
        assert "taskgate monitor" in response.text and 'id="live-updated-at"' in response.text
        metrics = httpx.get(f"{base}/metrics", headers=headers, timeout=WAIT)
        assert metrics.status_code == 200 and "taskgate_runners" in metrics.text
        assert httpx.get(f"{base}/", timeout=WAIT).status_code == 401
    finally:
        process.terminate()
        out, err = process.communicate(timeout=WAIT)
    assert f"http://127.0.0.1:{port}/" in out
    assert token not in out + err  # never echoed nor logged


def _first_answer(
    url: str, headers: dict[str, str], process: subprocess.Popen[str]
) -> httpx.Response:
    """The first answer of the monitor at ``url``, polling while it starts (it binds after
    loading the app); fails when the process exits first or after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return httpx.get(url, headers=headers, timeout=WAIT)
        except httpx.TransportError:
            if process.poll() is not None:
                _, err = process.communicate()
                pytest.fail(f"taskgate monitor exited {process.returncode}: {err}")
            assert time.monotonic() < deadline, "taskgate monitor did not answer"
            time.sleep(0.05)
