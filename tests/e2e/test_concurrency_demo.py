"""The concurrency demo as a user runs it: ``python run_demo.py --with-runner`` on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "concurrency_demo"
ACCOUNTS = 3
CALLS = 8
CONTROLLED = ("running_keys", "running_keys_drop", "registration_and_running_keys")
POLICIES = ("no_control", *CONTROLLED)


def run_demo(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the demo with its own runner and provider on an SQLite file in ``tmp_path``."""
    env = {**os.environ, "TASKGATE_BACKEND": f"sqlite:///{tmp_path}/demo.db"}
    env.pop("DEMO_PROVIDER_URL", None)  # the demo starts its own provider
    command = [
        sys.executable,
        "run_demo.py",
        "--with-runner",
        f"--accounts={ACCOUNTS}",
        f"--calls={CALLS}",
    ]
    return subprocess.run(
        command, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def table_rows(output: str) -> dict[str, dict[str, int]]:
    """The demo's table, by policy: the integer columns by name."""
    names = ("registered", "provider_calls", "collisions", "dropped", "folded")
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in POLICIES:
            rows[cells[0]] = dict(zip(names, map(int, cells[1:6]), strict=True))
    return rows


def test_controlled_policies_never_collide(tmp_path: Path) -> None:
    done = run_demo(tmp_path)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert f"backend:  sqlite:///{tmp_path}/demo.db" in done.stdout, report
    rows = table_rows(done.stdout)
    assert sorted(rows) == sorted(POLICIES), report
    total = ACCOUNTS * CALLS

    for policy in CONTROLLED:
        assert rows[policy]["collisions"] == 0, report

    # Every call runs exactly once without control, and with running control that waits.
    for policy in ("no_control", "running_keys"):
        assert rows[policy]["registered"] == total, report
        assert rows[policy]["provider_calls"] == total, report
        assert rows[policy]["dropped"] == rows[policy]["folded"] == 0, report

    # Dropping: every registered call either ran once or was dropped, and at least one ran.
    drop = rows["running_keys_drop"]
    assert drop["registered"] == total, report
    assert drop["provider_calls"] + drop["dropped"] == total, report
    assert drop["provider_calls"] >= ACCOUNTS, report

    # Folding: every call registered or was folded; each registered invocation ran once.
    fold = rows["registration_and_running_keys"]
    assert fold["registered"] + fold["folded"] == total, report
    assert fold["provider_calls"] == fold["registered"] >= ACCOUNTS, report
    assert fold["dropped"] == 0, report
