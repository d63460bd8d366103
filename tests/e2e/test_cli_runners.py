"""Two runner processes started from the command line share one store, on shared backends."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parents[1] / "apps"
WAIT = 60.0


@pytest.fixture
def shared_env(shared_backend_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    app_id = f"cli-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", shared_backend_url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", app_id)
    monkeypatch.syspath_prepend(str(APPS))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path]),
        "PYTHONUNBUFFERED": "1",
    }


def test_two_cli_runners_share_the_work_and_never_overlap_on_a_key(
    shared_env: dict[str, str],
) -> None:
    sys.modules.pop("shared_app", None)
    import shared_app

    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "shared_app:app"]
    runners = [
        subprocess.Popen(
            [*command, "--threads", "2"],
            env=shared_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        # Both runners live (announced by their first renewal) before any work: a runner still
        # importing when the work is done would die of the SIGTERM, its handler not set yet.
        deadline = time.monotonic() + WAIT
        while len(shared_app.app.backend.stats().runners) < 2:
            assert time.monotonic() < deadline, "the runners did not start"
            time.sleep(0.01)
        invocations = [shared_app.exclusive(f"key-{n % 4}", n, 0.01) for n in range(40)]
        results = [invocation.get_result(WAIT) for invocation in invocations]
    finally:
        for runner in runners:
            runner.send_signal(signal.SIGTERM)
        outputs = [runner.communicate(timeout=WAIT) for runner in runners]
        shared_app.app.purge()
        sys.modules.pop("shared_app", None)
    for runner, (_, err) in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, err
        assert "Traceback" not in err
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for n, (_, start, end) in enumerate(results):
        by_key[f"key-{n % 4}"].append((start, end))
    for intervals in by_key.values():
        intervals.sort()
        assert all(b[0] >= a[1] for a, b in itertools.pairwise(intervals))
    assert {pid for pid, _, _ in results} == {runner.pid for runner in runners}
