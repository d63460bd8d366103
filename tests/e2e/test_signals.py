"""A runner on the main thread stops cleanly on SIGTERM and SIGINT, per backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from taskgate import App

    app = App("signals", backend=sys.argv[1], shutdown_grace_seconds=10)

    @app.task
    def announce() -> None:
        print("running", flush=True)

    announce()
    app.runner.run()
    print("stopped cleanly", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_runner_stops_on_signal(backend_url: str, sig: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, backend_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "running"  # the runner is executing work
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped cleanly" in out
