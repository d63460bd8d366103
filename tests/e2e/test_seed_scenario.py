"""The seed scenario (API.md section 1) as a user runs it: ``python sample.py``, per backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "concurrency_control"


def test_seed_scenario_runs_and_prints_each_step(backend_url: str) -> None:
    env = {**os.environ, "TASKGATE_BACKEND": backend_url}
    done = subprocess.run(
        [sys.executable, "sample.py"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"backend: {backend_url}" in out
    assert "10 calls -> 10 distinct invocation ids" in out
    assert "(DistributedInvocation, ReusedInvocation, ReusedInvocation)" in out
    assert "overlapping: True" in out
    assert "all 10 done, overlapping: False" in out
    assert "all checks passed" in out
