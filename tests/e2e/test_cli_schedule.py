"""``taskgate cancel``, and what ``status``/``inspect`` show of queues, priorities, delays,
cancellation and periodic tasks (API.md sections 5, 9 and 12).

The app module here is its own (not the shared one of ``conftest.py``): it declares periodic
tasks, which a runner of the shared module would otherwise tick in every other test.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskgate import App, Invocation, InvocationStatus
from taskgate.cli import cli
from taskgate.cli.render import format_time
from taskgate.errors import InvocationCancelledError
from taskgate.record import ConcurrencyPlan, InvocationRecord

WAIT = 15.0
STUCK_SECONDS = 3.0
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"

SCHEDULE_APP = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    from taskgate import App

    app = App({app_id!r}, backend=os.environ["TASKGATE_BACKEND"], threads=2,
              shutdown_grace_seconds=5.0)


    @app.task
    def add(a: int, b: int = 2) -> int:
        return a + b


    @app.task(queue="reports", priority=5)
    def report(name: str) -> str:
        return name


    @app.task
    def spin(path: str) -> None:
        # Short sleeps: an interruption raised in the body lands between two of them.
        Path(path).write_text("started")
        deadline = time.monotonic() + {wait}
        while time.monotonic() < deadline:
            time.sleep(0.01)


    @app.task
    def stuck(seconds: float) -> None:
        # One C call: an interruption raised in this thread lands only when it returns.
        time.sleep(seconds)


    @app.task(every=3600.0)
    def hourly() -> None:
        pass


    @app.task(cron="0 0 1 1 *", queue="yearly")
    def new_year(greeting: str = "happy") -> str:
        return greeting
    """
)


def _schedule_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> Iterator[ModuleType]:
    """The module above on ``url``, imported, its store existing and empty."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TASKGATE_BACKEND", url)
    name = f"cli_schedule_app_{uuid.uuid4().hex[:10]}"
    source = SCHEDULE_APP.format(app_id=f"test-cli-{uuid.uuid4().hex[:12]}", wait=WAIT)
    (tmp_path / f"{name}.py").write_text(source)
    module = importlib.import_module(name)
    module.app.purge()
    yield module
    module.app.purge()
    module.app.backend.close()
    sys.modules.pop(name, None)


@pytest.fixture
def schedule_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend_url: str
) -> Iterator[ModuleType]:
    """The module above on the test's backend."""
    yield from _schedule_module(tmp_path, monkeypatch, backend_url)


@pytest.fixture
def shared_schedule_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_backend_url: str
) -> Iterator[ModuleType]:
    """The module above on a store other processes share (SQLite, Redis)."""
    yield from _schedule_module(tmp_path, monkeypatch, shared_backend_url)


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def spec(module: ModuleType) -> str:
    return f"{module.__name__}:app"


def run_json(*args: str, exit_code: int = 0) -> Any:
    result = run_cli(*args, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


# --- cancel --------------------------------------------------------------------------------------


def test_cancel_a_waiting_invocation_by_prefix(schedule_app: ModuleType) -> None:
    invocation = schedule_app.add(1)
    other = schedule_app.add(2)
    prefix = invocation.invocation_id[:12]

    result = run_cli("cancel", prefix, "--app", spec(schedule_app))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"cancelled {invocation.invocation_id}"), result.stdout
    assert "never will" in result.stdout
    assert invocation.status is InvocationStatus.CANCELLED
    assert other.status is InvocationStatus.REGISTERED
    with pytest.raises(InvocationCancelledError):
        invocation.get_result(WAIT)

    inspected = run_cli("inspect", prefix, "--app", spec(schedule_app))
    assert inspected.exit_code == 0, inspected.output
    assert re.search(r"status\s+cancelled", inspected.stdout), inspected.stdout
    assert re.search(r"outcome\s+cancelled: it never ran", inspected.stdout), inspected.stdout
    document = run_json("inspect", prefix, "--app", spec(schedule_app))
    assert (document["status"], document["cancel_requested"]) == ("cancelled", False)
    assert [entry["status"] for entry in document["history"]][-1] == "cancelled"


def test_cancel_twice_then_a_final_one_then_an_unknown_id(
    schedule_app: ModuleType, run_runner: Callable[[Any], Any]
) -> None:
    app: App = schedule_app.app
    cancelled = schedule_app.add(1)
    first = run_json("cancel", cancelled.invocation_id, "--app", spec(schedule_app))
    assert first == {
        "app": app.app_id,
        "backend": app.conf.backend_display,
        "invocation_id": cancelled.invocation_id,
        "task": schedule_app.add.task_id,
        "outcome": "cancelled",
        "status": "cancelled",
    }
    again = run_cli("cancel", cancelled.invocation_id, "--app", spec(schedule_app))
    assert again.exit_code == 0, again.output  # cancelling twice is not an error
    assert "cancelled already" in again.stdout

    with run_runner(app.runner):
        done = schedule_app.add(1)
        assert done.get_result(WAIT) == 3
    final = run_cli("cancel", done.invocation_id, "--app", spec(schedule_app))
    assert final.exit_code == 1, final.output
    assert "not cancelled" in final.stdout and "already final (success)" in final.stdout
    document = run_json("cancel", done.invocation_id, "--app", spec(schedule_app), exit_code=1)
    assert (document["outcome"], document["status"]) == ("already_final", "success")
    assert done.status is InvocationStatus.SUCCESS

    unknown = run_cli("cancel", "no-such-id", "--app", spec(schedule_app))
    assert unknown.exit_code == 1, unknown.output
    assert "no invocation 'no-such-id'" in unknown.stderr
    assert "Traceback" not in unknown.output


def test_cancel_a_running_invocation_interrupts_it(
    schedule_app: ModuleType,
    run_runner: Callable[[Any], Any],
    wait_status: Callable[[Invocation[Any], InvocationStatus], None],
    tmp_path: Path,
) -> None:
    app: App = schedule_app.app
    started = tmp_path / "started"
    with run_runner(app.runner):
        invocation = schedule_app.spin(str(started))
        wait_status(invocation, InvocationStatus.RUNNING)
        result = run_cli("cancel", invocation.invocation_id, "--app", spec(schedule_app))
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"cancel requested for {invocation.invocation_id}")
        assert "stops once its body is interrupted" in result.stdout
        began = time.monotonic()
        with pytest.raises(InvocationCancelledError):
            invocation.get_result(WAIT)
        assert time.monotonic() - began < WAIT / 2  # interrupted, not run to its end
    assert invocation.status is InvocationStatus.CANCELLED
    inspected = run_cli("inspect", invocation.invocation_id, "--app", spec(schedule_app))
    assert re.search(r"outcome\s+cancelled: its run was interrupted", inspected.stdout), (
        inspected.stdout
    )


def test_a_cancel_requested_while_the_body_is_in_a_c_call(
    schedule_app: ModuleType,
    run_runner: Callable[[Any], Any],
    wait_status: Callable[[Invocation[Any], InvocationStatus], None],
) -> None:
    """Until its body returns from the C call, the invocation stays RUNNING, cancel requested."""
    app: App = schedule_app.app
    with run_runner(app.runner):
        invocation = schedule_app.stuck(STUCK_SECONDS)
        wait_status(invocation, InvocationStatus.RUNNING)
        first = run_json("cancel", invocation.invocation_id, "--app", spec(schedule_app))
        assert first["outcome"] == "cancel_requested"
        # Within the C call's STUCK_SECONDS: still running, the cancel pending.
        again = run_json("cancel", invocation.invocation_id, "--app", spec(schedule_app))
        document = run_json("inspect", invocation.invocation_id, "--app", spec(schedule_app))
        text = run_cli("inspect", invocation.invocation_id, "--app", spec(schedule_app))
        with pytest.raises(InvocationCancelledError):
            invocation.get_result(WAIT)
    assert (again["outcome"], again["status"]) == ("cancel_already_requested", "running")
    assert (document["status"], document["cancel_requested"]) == ("running", True)
    assert re.search(r"cancel requested\s+yes", text.stdout), text.stdout
    history = [t.status for t in invocation.history]
    assert history[-2:] == [InvocationStatus.RUNNING, InvocationStatus.CANCELLED]


def test_cancel_in_a_real_process(shared_schedule_app: ModuleType) -> None:
    """``python -m taskgate cancel`` in a process of its own, on a store other processes share."""
    schedule_app = shared_schedule_app
    invocation = schedule_app.report("q1")
    command = [sys.executable, "-m", "taskgate", "cancel", invocation.invocation_id[:10]]
    done = subprocess.run(
        [*command, "--app", spec(schedule_app), "--json"],
        check=False,
        cwd=os.getcwd(),
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["outcome"] == "cancelled"
    assert invocation.status is InvocationStatus.CANCELLED


# --- status: queues and periodic tasks -----------------------------------------------------------


def test_status_shows_ready_depth_per_queue(schedule_app: ModuleType) -> None:
    schedule_app.add(1)
    schedule_app.report("a")
    schedule_app.report("b")
    cancelled = schedule_app.report("c")
    cancelled.cancel()
    schedule_app.add.with_options(delay=600)(5)  # scheduled: not ready, not in a queue's depth

    document = run_json("status", "--app", spec(schedule_app))
    assert document["queues"] == [
        {"queue": "default", "ready": 1},
        {"queue": "reports", "ready": 2},
    ]
    counts = {(c["task"], c["status"]): c["count"] for c in document["counts"]}
    assert counts[(schedule_app.report.task_id, "cancelled")] == 1
    assert counts[(schedule_app.add.task_id, "scheduled")] == 1

    text = run_cli("status", "--app", spec(schedule_app))
    assert text.exit_code == 0, text.output
    assert re.search(r"Queue\s*┃\s*Ready \(waiting for a runner\)", text.stdout), text.stdout
    assert re.search(r"reports\s*│\s*2", text.stdout), text.stdout
    assert re.search(r"cancelled\s*│\s*1", text.stdout), text.stdout
    assert re.search(r"scheduled\s*│\s*1", text.stdout), text.stdout


def test_status_lists_periodic_tasks_with_next_and_last_tick(schedule_app: ModuleType) -> None:
    app: App = schedule_app.app
    before = time.time()
    document = run_json("status", "--app", spec(schedule_app))
    periodic = {entry["task"]: entry for entry in document["periodic"]}
    assert set(periodic) == {schedule_app.hourly.task_id, schedule_app.new_year.task_id}
    hourly = periodic[schedule_app.hourly.task_id]
    assert (hourly["schedule"], hourly["queue"], hourly["last_tick"]) == (
        "every 3600 s",
        "default",
        None,
    )
    assert re.fullmatch(ISO_UTC, hourly["next_tick"])
    new_year = periodic[schedule_app.new_year.task_id]
    assert (new_year["schedule"], new_year["queue"]) == ("cron 0 0 1 1 *", "yearly")
    assert re.fullmatch(r"\d{4}-01-01T00:00:00\.000\+00:00", new_year["next_tick"])
    assert new_year["next_tick"] > format_time(before)

    tick = float(int(before // 3600) * 3600)  # an hourly tick already passed
    record = InvocationRecord(
        invocation_id=uuid.uuid4().hex,
        task_id=schedule_app.hourly.task_id,
        arguments=app.serializer.dumps({}),
        plan=ConcurrencyPlan(),
        scheduled_for=tick,
        created_at=time.time(),
    )
    assert app.backend.register_tick(record, tick) is not None
    document = run_json("status", "--app", spec(schedule_app))
    periodic = {entry["task"]: entry for entry in document["periodic"]}
    assert periodic[schedule_app.hourly.task_id]["last_tick"] == format_time(tick)

    text = run_cli("status", "--app", spec(schedule_app))
    assert text.exit_code == 0, text.output
    assert "Periodic tasks" in text.stdout
    assert re.search(
        rf"{re.escape(schedule_app.hourly.task_id)}\s*│\s*every 3600 s\s*│\s*default\s*│\s*"
        rf"{ISO_UTC} \(in [\d.]+ s\)\s*│\s*{re.escape(format_time(tick))}",
        text.stdout,
    ), text.stdout


# --- inspect: queue, priority, scheduled_for --------------------------------------------------


def test_inspect_shows_queue_priority_and_scheduled_time(schedule_app: ModuleType) -> None:
    delayed = schedule_app.report.with_options(delay=600, priority=-3)("later")
    document = run_json("inspect", delayed.invocation_id, "--app", spec(schedule_app))
    assert document["status"] == "scheduled"
    assert (document["queue"], document["priority"]) == ("reports", -3)
    assert delayed.scheduled_for is not None
    assert document["scheduled_for"] == format_time(delayed.scheduled_for)
    assert document["cancel_requested"] is False

    text = run_cli("inspect", delayed.invocation_id, "--app", spec(schedule_app))
    assert text.exit_code == 0, text.output
    assert re.search(r"status\s+scheduled", text.stdout)
    assert re.search(r"queue\s+reports, priority -3", text.stdout), text.stdout
    assert re.search(rf"scheduled for\s+{ISO_UTC} \(in [\d.]+ s\)", text.stdout), text.stdout

    plain = schedule_app.add(1)
    document = run_json("inspect", plain.invocation_id, "--app", spec(schedule_app))
    assert (document["queue"], document["priority"], document["scheduled_for"]) == (
        "default",
        0,
        None,
    )

    # A scheduled invocation is a waiting one: cancel takes it off the timed structure.
    result = run_cli("cancel", delayed.invocation_id, "--app", spec(schedule_app))
    assert result.exit_code == 0, result.output
    assert delayed.status is InvocationStatus.CANCELLED


def test_invocations_lists_cancelled_and_scheduled_ones(schedule_app: ModuleType) -> None:
    cancelled = schedule_app.add(1)
    assert cancelled.cancel()
    scheduled = schedule_app.add.with_options(delay=600)(2)
    schedule_app.add(3)
    for status, wanted in (("cancelled", cancelled), ("scheduled", scheduled)):
        document = run_json("invocations", "--status", status, "--app", spec(schedule_app))
        assert [row["invocation_id"] for row in document["invocations"]] == [wanted.invocation_id]
        assert document["invocations"][0]["status"] == status
        text = run_cli("invocations", "--status", status.upper(), "--app", spec(schedule_app))
        assert text.exit_code == 0, text.output
        assert wanted.invocation_id in text.stdout
