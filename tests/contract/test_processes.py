"""Atomicity across processes (R4 and U1 with several processes), on backends processes share."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskgate import App
from taskgate.runner import ProcessRunner

APPS = Path(__file__).resolve().parents[1] / "apps"
WAIT = 60.0


@pytest.fixture
def shared_app(
    shared_backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[App, Any]]:
    """The ``shared_app`` module, on a fresh app id of the test's shared backend."""
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", shared_backend_url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", f"proc-{uuid.uuid4().hex[:12]}")
    monkeypatch.syspath_prepend(str(APPS))
    sys.modules.pop("shared_app", None)
    import shared_app

    yield shared_app.app, shared_app
    shared_app.app.purge()
    shared_app.app.backend.close()
    sys.modules.pop("shared_app", None)


def _python(call: str, **pipes: Any) -> subprocess.Popen[str]:
    """A Python process that imports the shared app (from this test's env) and runs ``call``."""
    return subprocess.Popen(
        [sys.executable, "-c", f"import shared_app; {call}"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path])},
        **pipes,
    )


def test_simultaneous_calls_from_8_processes_register_one_invocation(
    shared_app: tuple[App, Any],
) -> None:
    app, module = shared_app
    callers = [_python("shared_app.race_one_call()", stdin=subprocess.PIPE) for _ in range(8)]
    try:
        for caller in callers:  # every process is connected and waiting
            assert caller.stdout is not None and caller.stdout.readline().strip() == "ready"
        for caller in callers:  # release them together
            assert caller.stdin is not None
            caller.stdin.write("go\n")
            caller.stdin.flush()
        ids = {caller.communicate(timeout=WAIT)[0].strip() for caller in callers}
    finally:
        for caller in callers:
            caller.kill()
    assert all(caller.returncode == 0 for caller in callers)
    assert len(ids) == 1
    assert [i.invocation_id for i in app.invocations(task=module.deduplicated)] == list(ids)


def _run_process_runner(app: App) -> tuple[ProcessRunner, threading.Thread]:
    app.conf.processes = 3
    runner = ProcessRunner(app, app_spec="shared_app:app")
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    return runner, thread


def _stop(runner: ProcessRunner, thread: threading.Thread) -> None:
    runner.stop_runner_loop()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_3_runner_processes_never_overlap_on_one_key(shared_app: tuple[App, Any]) -> None:
    app, module = shared_app
    invocations = [module.exclusive("same", n) for n in range(60)]
    runner, thread = _run_process_runner(app)
    try:
        results = [invocation.get_result(WAIT) for invocation in invocations]
    finally:
        _stop(runner, thread)
    intervals = sorted((start, end) for _, start, end in results)
    overlaps = [(a, b) for a, b in itertools.pairwise(intervals) if b[0] < a[1]]
    assert overlaps == []
    assert len(results) == 60


def test_keys_run_in_parallel_and_work_spreads_over_processes(
    shared_app: tuple[App, Any],
) -> None:
    app, module = shared_app
    invocations = [module.exclusive(f"key-{n % 6}", n, 0.02) for n in range(60)]
    runner, thread = _run_process_runner(app)
    try:
        results = [invocation.get_result(WAIT) for invocation in invocations]
    finally:
        _stop(runner, thread)
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for n, (_, start, end) in enumerate(results):
        by_key[f"key-{n % 6}"].append((start, end))
    for intervals in by_key.values():
        intervals.sort()
        assert all(b[0] >= a[1] for a, b in itertools.pairwise(intervals))
    assert len({pid for pid, _, _ in results}) >= 2


def test_a_dead_worker_process_is_replaced(shared_app: tuple[App, Any]) -> None:
    app, module = shared_app
    first = module.exclusive("a", 0)
    runner, thread = _run_process_runner(app)
    try:
        victim = first.get_result(WAIT)[0]
        os.kill(victim, 9)
        later = [module.exclusive(f"k{n}", n) for n in range(30)]
        pids = {invocation.get_result(WAIT)[0] for invocation in later}
    finally:
        _stop(runner, thread)
    assert victim not in pids


def test_a_dead_worker_processs_work_is_taken_back_at_once(
    shared_app: tuple[App, Any], tmp_path: Path
) -> None:
    app, module = shared_app
    app.conf.lease_seconds = 600.0  # lease recovery could not explain what follows
    marker = tmp_path / "held"
    held = module.held("k", 1, str(marker))
    runner, thread = _run_process_runner(app)
    try:
        deadline = time.monotonic() + WAIT
        while not marker.exists() or not marker.read_text():  # the first attempt holds the key
            assert time.monotonic() < deadline, "the held task never started"
            time.sleep(0.01)
        os.kill(int(marker.read_text()), 9)
        # The supervisor sees its worker exit and recovers its claim: attempt 2 runs at once.
        n, attempt, _ = held.get_result(WAIT)
    finally:
        _stop(runner, thread)
    assert (n, attempt) == (1, 2)
    assert held.num_retries == 0  # a recovery, not a retry


def test_many_processes_hammering_one_store_see_no_lock_errors(
    shared_app: tuple[App, Any],
) -> None:
    app, _ = shared_app
    hammers = [_python("shared_app.hammer(150)", stderr=subprocess.PIPE) for _ in range(6)]
    outputs = [hammer.communicate(timeout=WAIT) for hammer in hammers]
    for hammer, (out, err) in zip(hammers, outputs, strict=True):
        assert hammer.returncode == 0, err
        assert out.startswith("ok"), err
    assert "locked" not in "".join(err for _, err in outputs)
    finished = sum(int(out.split()[1]) for out, _ in outputs)
    # Every claim was finished exactly once; what no hammer claimed is still waiting.
    assert finished == len(app.invocations(status="success", limit=10_000))
    assert finished + len(app.invocations(status="registered", limit=10_000)) == 900


def test_process_runner_is_built_from_settings_on_a_fresh_app(
    shared_app: tuple[App, Any],
) -> None:
    app, _ = shared_app  # its backend is not built yet
    app.conf.runner_cls = "ProcessRunner"
    done = threading.Event()
    built: list[Any] = []

    def build() -> None:  # used to deadlock: the runner lock was the backend lock
        built.append(app.runner)
        done.set()

    threading.Thread(target=build, daemon=True).start()
    assert done.wait(WAIT)
    assert isinstance(built[0], ProcessRunner)
