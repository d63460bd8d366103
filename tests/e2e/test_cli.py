"""The ``taskgate`` command line, per backend.

``status``, ``inspect``, ``purge`` and the ``--app`` errors run in-process through click's
``CliRunner`` against the app module of ``tests/e2e/conftest.py``; ``runner start`` runs as a
real subprocess and is stopped by SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskgate import App, Invocation, InvocationStatus
from taskgate.cli import cli, load_app

WAIT = 15.0
AppModuleFactory = Callable[[str], ModuleType]
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"


def run_cli(*args: str, input: str | None = None) -> Result:
    """Invoke the CLI in-process (stdout and stderr captured separately)."""
    return CliRunner().invoke(cli, list(args), input=input)


def spec(module: ModuleType) -> str:
    """The ``--app`` value of an app module."""
    return f"{module.__name__}:app"


def table_row(*cells: str) -> str:
    """A regex matching one rich table row with these cells, in order."""
    return r"│\s*" + r"\s*│\s*".join(re.escape(cell) for cell in cells) + r"\s*│"


# --- help and loading ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        *([], ["runner"], ["runner", "start"], ["status"], ["inspect"], ["invocations"]),
        ["cancel"],
        *(["limits"], ["limits", "list"], ["limits", "set"], ["limits", "reset"], ["purge"]),
        ["monitor"],
    ],
    ids=lambda c: " ".join(c) or "taskgate",
)
def test_every_command_has_help(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    if command not in ([], ["runner"], ["limits"]):
        assert "--app MODULE:ATTR" in result.stdout
        assert "--backend URL" in result.stdout


def test_the_command_list_shows_every_summary_whole() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0, result.output
    commands = result.stdout.split("Commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in commands] == [
        "cancel",
        "inspect",
        "invocations",
        "limits",
        "monitor",
        "purge",
        "runner",
        "status",
    ]
    for line in commands:
        assert not line.rstrip().endswith("..."), line  # click cuts a summary that is too long


def test_load_app_returns_the_module_app_object(app_module: ModuleType) -> None:
    assert load_app(spec(app_module)) is app_module.app


@pytest.mark.parametrize(
    ("make_spec", "expected"),
    [
        pytest.param(lambda mod: mod, "use 'module:attribute'", id="no-colon"),
        pytest.param(lambda mod: f"{mod}:", "use 'module:attribute'", id="no-attr"),
        pytest.param(
            lambda mod: "taskgate_no_such_module_x:app",
            "No module named 'taskgate_no_such_module_x'",
            id="unknown-module",
        ),
        pytest.param(lambda mod: f"{mod}:nope", "has no attribute 'nope'", id="missing-attr"),
        pytest.param(lambda mod: f"{mod}:not_an_app", "not a taskgate App", id="not-an-app"),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["purge", "--yes"], ["inspect", "some-id"]])
def test_bad_app_option_is_a_clean_usage_error(
    app_module: ModuleType,
    tmp_path: Path,
    make_spec: Callable[[str], str],
    expected: str,
    command: list[str],
) -> None:
    result = run_cli(*command, "--app", make_spec(app_module.__name__))
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert app_module.app.invocations() == []  # nothing was done (purge did not run)


def test_app_can_come_from_the_environment(
    app_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKGATE_APP", spec(app_module))
    result = run_cli("status")
    assert result.exit_code == 0, result.output
    assert app_module.app.app_id in result.stdout


# --- status --------------------------------------------------------------------------------------


def test_status_of_an_empty_app(app_module: ModuleType) -> None:
    result = run_cli("status", "--app", spec(app_module))
    assert result.exit_code == 0, result.output
    assert f"app {app_module.app.app_id} on " in result.stdout
    assert "no invocations" in result.stdout
    assert "no live runners" in result.stdout
    assert "no parked invocations" in result.stdout


def test_status_counts_invocations_by_task_and_status(app_module: ModuleType) -> None:
    app_module.add(1)
    app_module.add(2)
    app_module.fail("x")
    result = run_cli("status", "--app", spec(app_module))
    assert result.exit_code == 0, result.output
    add_id, fail_id = app_module.add.task_id, app_module.fail.task_id
    assert re.search(table_row(add_id, "registered", "2"), result.stdout), result.stdout
    assert re.search(table_row(fail_id, "registered", "1"), result.stdout), result.stdout
    assert re.search(table_row("total", "", "3"), result.stdout), result.stdout


def test_status_and_inspect_show_runners_and_parked_invocations(
    app_module: ModuleType,
    run_runner: Callable[[Any], Any],
    wait_status: Callable[[Invocation[Any], InvocationStatus], None],
) -> None:
    app: App = app_module.app
    with run_runner(app.runner):
        try:
            holder = app_module.hold()
            wait_status(holder, InvocationStatus.RUNNING)
            parked = app_module.hold()
            wait_status(parked, InvocationStatus.CONCURRENCY_CONTROLLED)
            blocked = parked.blocked_by()
            assert blocked is not None

            status = run_cli("status", "--app", spec(app_module))
            inspected = run_cli("inspect", parked.invocation_id, "--app", spec(app_module))
        finally:
            app_module.GATE.set()
        assert holder.get_result(WAIT) == "released"
        assert parked.get_result(WAIT) == "released"

    assert status.exit_code == 0, status.output
    hold_id = app_module.hold.task_id
    assert re.search(table_row(hold_id, "concurrency_controlled", "1"), status.stdout)
    assert re.search(table_row(hold_id, "running", "1"), status.stdout)
    assert re.search(rf"{re.escape(app.runner.runner_id)}\s*│\s*{ISO_UTC}", status.stdout)
    parked_row = table_row(f"task {blocked.scope_key}", "-", "1")  # a TASK scope: no key values
    assert re.search(parked_row, status.stdout), status.stdout

    assert inspected.exit_code == 0, inspected.output
    out = inspected.stdout
    assert re.search(r"status\s+concurrency_controlled", out), out
    assert re.search(rf"waiting for\s+{re.escape(blocked.scope_key)}", out), out
    assert re.search(rf"slots held by\s+{holder.invocation_id}", out), out


# --- inspect -------------------------------------------------------------------------------------


def test_inspect_a_waiting_invocation(app_module: ModuleType) -> None:
    invocation = app_module.add(5, b=7)
    result = run_cli("inspect", invocation.invocation_id, "--app", spec(app_module))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"app {app_module.app.app_id} on {app_module.app.conf.backend_display}\n")
    assert re.search(rf"invocation\s+{invocation.invocation_id}", out)
    assert re.search(rf"task\s+{re.escape(app_module.add.task_id)}", out)
    assert re.search(r"status\s+registered", out)
    assert re.search(r"attempt\s+0", out)
    assert re.search(r"retries\s+0 of max 0", out)
    assert re.search(r"runner\s+-", out)
    assert re.search(rf"created\s+{ISO_UTC}", out)
    assert re.search(r"arguments\s+a=5\s+b=7", out)
    assert "result" not in out
    assert re.search(table_row("registered") + rf"\s*{ISO_UTC}\s*│\s*-", out), out


def test_inspect_a_successful_invocation(
    app_module: ModuleType, run_runner: Callable[[Any], Any]
) -> None:
    app: App = app_module.app
    with run_runner(app.runner):
        invocation = app_module.add(1)
        assert invocation.get_result(WAIT) == 3
    result = run_cli("inspect", invocation.invocation_id, "--app", spec(app_module))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"status\s+success", out)
    assert re.search(r"attempt\s+1", out)
    assert re.search(r"arguments\s+a=1\s+b=2", out)
    assert re.search(r"result\s+3\b", out)
    assert re.search(rf"runner\s+- \(last run by {re.escape(app.runner.runner_id)}\)", out)
    history = [line for line in out.splitlines() if re.search(ISO_UTC, line)]
    history_statuses = [re.findall(r"(registered|running|success)", line) for line in history]
    assert [found[0] for found in history_statuses if found][-3:] == [
        "registered",
        "running",
        "success",
    ], out
    assert app.runner.runner_id in history[-1]


def test_inspect_a_failed_invocation_shows_the_error(
    app_module: ModuleType, run_runner: Callable[[Any], Any]
) -> None:
    message = "kaboom [red]not markup[/red]"
    with run_runner(app_module.app.runner):
        invocation = app_module.fail(message)
        with pytest.raises(ValueError, match="kaboom"):
            invocation.get_result(WAIT)
    result = run_cli("inspect", invocation.invocation_id, "--app", spec(app_module))
    assert result.exit_code == 0, result.output
    assert re.search(r"status\s+failed", result.stdout)
    assert re.search(rf"error\s+ValueError: {re.escape(message)}", result.stdout), result.stdout


def test_inspect_an_unknown_invocation_exits_1(app_module: ModuleType) -> None:
    result = run_cli("inspect", "no-such-id", "--app", spec(app_module))
    assert result.exit_code == 1, result.output
    assert "no invocation 'no-such-id'" in result.stderr
    assert app_module.app.app_id in result.stderr
    assert "Traceback" not in result.output


# --- purge ---------------------------------------------------------------------------------------


def test_purge_with_yes_deletes_everything(app_module: ModuleType) -> None:
    invocations = [app_module.add(i) for i in range(3)]
    result = run_cli("purge", "--yes", "--app", spec(app_module))
    assert result.exit_code == 0, result.output
    assert "3 invocation(s) deleted" in result.stdout
    assert app_module.app.invocations() == []
    assert app_module.app.backend.get(invocations[0].invocation_id) is None


@pytest.mark.parametrize("backend_url", ["redis"], indirect=True)
def test_purge_empties_a_redis_store_of_an_earlier_layout(
    app_module: ModuleType, backend_url: str
) -> None:
    # What a build before layout 3 left: a record under long field names, its task's index a
    # zset. Other commands refuse the store, naming purge; purge empties it.
    import redis

    backend = app_module.app.backend
    client = redis.Redis.from_url(backend_url)
    prefix = backend._prefix
    client.hset(prefix + "inv:old-1", mapping={"task_id": "t", "status": "registered"})
    client.zadd(prefix + "task:t", {"old-1": 1.5})
    client.hset(prefix + "counts", "t\x1fregistered", 1)
    for command in ("status", "inspect"):
        args = (command, "old-1") if command == "inspect" else (command,)
        refused = run_cli(*args, "--app", spec(app_module))
        assert refused.exit_code == 1, refused.output
        assert "earlier taskgate" in refused.stderr and "taskgate purge" in refused.stderr
        assert "Traceback" not in refused.output
    result = run_cli("purge", "--yes", "--app", spec(app_module))
    assert result.exit_code == 0, result.output
    assert "every invocation deleted" in result.stdout
    assert client.exists(prefix + "inv:old-1", prefix + "task:t") == 0
    client.close()
    fresh = load_app(spec(app_module))
    assert fresh.invocations() == []


def test_purge_asks_for_confirmation(app_module: ModuleType) -> None:
    invocation = app_module.add(1)
    declined = run_cli("purge", "--app", spec(app_module), input="n\n")
    assert declined.exit_code == 1, declined.output
    assert "Delete every invocation" in declined.output
    assert "Aborted" in declined.stderr
    assert app_module.app.get_invocation(invocation.invocation_id).status is (
        InvocationStatus.REGISTERED
    )

    accepted = run_cli("purge", "--app", spec(app_module), input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "1 invocation(s) deleted" in accepted.stdout
    assert app_module.app.invocations() == []


# --- runner start --------------------------------------------------------------------------------


def test_process_runner_on_memory_exits_2(app_module_factory: AppModuleFactory) -> None:
    module = app_module_factory("memory://")
    result = run_cli("runner", "start", "--app", spec(module), "--runner", "ProcessRunner")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "memory" in result.stderr
    assert "ProcessRunner" in result.stderr
    assert "Traceback" not in result.output


def test_thread_runner_start_runs_work_and_stops_cleanly_on_sigterm(
    app_module: ModuleType, tmp_path: Path
) -> None:
    _run_work_then_sigterm(app_module, tmp_path, ["--threads", "2"], "ThreadRunner, threads 2")


def test_process_runner_start_runs_work_and_stops_cleanly_on_sigterm(
    app_module_factory: AppModuleFactory, shared_backend_url: str, tmp_path: Path
) -> None:
    _run_work_then_sigterm(
        app_module_factory(shared_backend_url),
        tmp_path,
        ["--runner", "ProcessRunner", "--processes", "1", "--threads", "2"],
        "ProcessRunner, processes 1, threads 2",
    )


def _run_work_then_sigterm(
    app_module: ModuleType, tmp_path: Path, options: list[str], described: str
) -> None:
    marker = tmp_path / "marker.txt"  # the app module registers a task writing it at import
    env = {**os.environ, "CLI_TEST_MARKER": str(marker), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", spec(app_module)]
    process = subprocess.Popen(
        [*command, *options, "--log-level", "info"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the runner did not execute the invocation"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, out + err
    app = app_module.app
    backend = re.escape(app.conf.backend_display)
    assert re.search(
        rf"INFO\s+taskgate\.cli: .*starting: app {app.app_id}, backend {backend},", err
    )
    assert described in err
    tasks = ", ".join(sorted(app.tasks))
    assert re.search(rf"INFO\s+taskgate\.cli: runner \S+ tasks: {re.escape(tasks)}$", err, re.M), (
        err
    )
    private = "lives in this process: no other process can submit work to this runner"
    assert (private in err) == (app.conf.backend_url == "memory://"), err
    assert re.search(r"taskgate\.cli: runner \S+ exited cleanly", err), err
    assert "received SIGTERM" in err
    assert "Traceback" not in err
