"""``status --json`` and orphaned work, ``invocations``, and ``inspect`` by prefix and as JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskgate import App, Invocation, InvocationStatus
from taskgate.cli import cli
from taskgate.record import (
    ConcurrencyPlan,
    InvocationRecord,
    RunnerInfo,
    RunningEntry,
    TaskRunCounters,
)

WAIT = 15.0
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"
RunRunner = Callable[[Any], Any]


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def spec(module: ModuleType) -> str:
    return f"{module.__name__}:app"


def run_json(*args: str) -> Any:
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def claim_for_a_runner_that_is_gone(app: App) -> str:
    """Claim one queued invocation for a runner that never renews: RUNNING, nobody alive."""
    (claim,) = app.backend.claim("gone-runner", 1, app.conf.lease_seconds, 0)
    return claim.invocation_id


# --- status --------------------------------------------------------------------------------------


def test_status_json_has_the_documented_keys(app_module: ModuleType) -> None:
    app: App = app_module.app
    app_module.add(1)
    app_module.add(2)
    app_module.fail("x")
    document = run_json("status", "--app", spec(app_module))
    assert document == {
        "app": app.app_id,
        "backend": app.conf.backend_display,
        "counts": [
            {"task": app_module.add.task_id, "status": "registered", "count": 2},
            {"task": app_module.fail.task_id, "status": "registered", "count": 1},
        ],
        "total": 3,
        "running": 0,
        "orphaned_running": 0,
        "runners": [],
        "parked": [],
        "queues": [{"queue": "default", "ready": 3}],
        "periodic": [],
    }


def test_status_flags_running_invocations_without_a_live_runner_as_orphaned(
    app_module: ModuleType,
) -> None:
    app: App = app_module.app
    app_module.add(1)
    claim_for_a_runner_that_is_gone(app)

    text = run_cli("status", "--app", spec(app_module))
    assert text.exit_code == 0, text.output
    assert "no live runners" in text.stdout
    assert "1 RUNNING invocation(s) are orphaned" in text.stdout
    assert f"lease_seconds={app.conf.lease_seconds}" in text.stdout
    document = run_json("status", "--app", spec(app_module))
    assert (document["running"], document["orphaned_running"]) == (1, 1)

    app.backend.renew("live-runner", [], 30.0)  # a live runner will recover them: not orphaned
    text = run_cli("status", "--app", spec(app_module))
    assert "orphaned" not in text.stdout
    document = run_json("status", "--app", spec(app_module))
    assert (document["running"], document["orphaned_running"]) == (1, 0)
    assert [r["runner_id"] for r in document["runners"]] == ["live-runner"]
    assert re.fullmatch(ISO_UTC, document["runners"][0]["heartbeat_expires_at"])


# --- invocations ---------------------------------------------------------------------------------


def test_invocations_lists_newest_first_with_filters_and_limit(app_module: ModuleType) -> None:
    app: App = app_module.app
    first, second = app_module.add(1), app_module.add(2)
    failing = app_module.fail("x")
    running_id = claim_for_a_runner_that_is_gone(app)  # the oldest queued: first
    assert running_id == first.invocation_id

    listed = run_json("invocations", "--app", spec(app_module))
    ids = [row["invocation_id"] for row in listed["invocations"]]
    assert ids == [failing.invocation_id, second.invocation_id, first.invocation_id]
    assert listed["app"] == app.app_id and listed["backend"] == app.conf.backend_display
    assert listed["invocations"][2] == {
        "invocation_id": first.invocation_id,
        "task": app_module.add.task_id,
        "status": "running",
        "attempt": 1,
        "created_at": listed["invocations"][2]["created_at"],
        "runner_id": "gone-runner",
        "last_runner_id": "gone-runner",
    }
    assert re.fullmatch(ISO_UTC, listed["invocations"][2]["created_at"])

    by_task = run_json("invocations", "--app", spec(app_module), "--task", app_module.add.task_id)
    assert [r["invocation_id"] for r in by_task["invocations"]] == ids[1:]
    by_status = run_json("invocations", "--app", spec(app_module), "--status", "RUNNING")
    assert [r["invocation_id"] for r in by_status["invocations"]] == [running_id]
    limited = run_json("invocations", "--app", spec(app_module), "--limit", "1")
    assert [r["invocation_id"] for r in limited["invocations"]] == ids[:1]

    table = run_cli("invocations", "--app", spec(app_module))
    assert table.exit_code == 0, table.output
    rows = [line for line in table.stdout.splitlines() if re.search(ISO_UTC, line)]
    listed = [re.search(r"\b[0-9A-Za-z]{21}\b", row) for row in rows]
    assert [found.group() if found else None for found in listed] == ids
    assert re.search(rf"│\s*running\s*│\s*1\s*│\s*{ISO_UTC}\s*│\s*gone-runner\s*│", rows[2])


def test_invocations_of_an_empty_app(app_module: ModuleType) -> None:
    result = run_cli("invocations", "--app", spec(app_module))
    assert result.exit_code == 0, result.output
    assert "no invocations" in result.stdout
    assert run_json("invocations", "--app", spec(app_module))["invocations"] == []


# --- inspect -------------------------------------------------------------------------------------


def test_inspect_accepts_a_unique_prefix(app_module: ModuleType) -> None:
    invocation = app_module.add(5)
    for length in (4, 13):
        prefix = invocation.invocation_id[:length]
        result = run_cli("inspect", prefix, "--app", spec(app_module))
        assert result.exit_code == 0, result.output
        assert re.search(rf"invocation\s+{invocation.invocation_id}", result.stdout)


def test_an_ambiguous_prefix_exits_1_listing_matches(app_module: ModuleType) -> None:
    invocations = [app_module.add(i) for i in range(8)]
    result = run_cli("inspect", "", "--app", spec(app_module))  # the prefix of every id
    assert result.exit_code == 1, result.output
    assert "is the start of several invocation ids" in result.stderr
    listed = re.findall(r"\b[0-9A-Za-z]{21}\b", result.stderr)
    assert len(listed) == 5 and ", ..." in result.stderr
    assert set(listed) <= {i.invocation_id for i in invocations}

    for suffix in ("1", "2"):  # two ids made to share a prefix
        record = InvocationRecord(
            invocation_id=f"dup-{suffix}",
            task_id=app_module.add.task_id,
            arguments=app_module.app.serializer.dumps({"a": 1}),
            plan=ConcurrencyPlan(None, None, 1, False),
            max_retries=0,
        )
        app_module.app.backend.register(record)
    result = run_cli("inspect", "dup", "--app", spec(app_module))
    assert result.exit_code == 1, result.output
    assert "'dup' is the start of several invocation ids" in result.stderr
    assert "(dup-1, dup-2)" in result.stderr
    assert run_json("inspect", "dup-2", "--app", spec(app_module))["invocation_id"] == "dup-2"


def test_an_unknown_prefix_exits_1(app_module: ModuleType) -> None:
    app_module.add(1)
    result = run_cli("inspect", "zz-no-such", "--app", spec(app_module))
    assert result.exit_code == 1, result.output
    assert "no invocation 'zz-no-such' (nor one whose id starts with it)" in result.stderr


def test_inspect_json_of_a_failed_invocation(app_module: ModuleType, run_runner: RunRunner) -> None:
    app: App = app_module.app
    with run_runner(app.runner):
        invocation = app_module.fail("kaboom")
        with pytest.raises(ValueError, match="kaboom"):
            invocation.get_result(WAIT)
    document = run_json("inspect", invocation.invocation_id[:8], "--app", spec(app_module))
    assert document["invocation_id"] == invocation.invocation_id
    assert document["task"] == app_module.fail.task_id
    assert document["status"] == "failed"
    assert document["arguments"] == {"message": "'kaboom'"}
    assert document["result"] is None
    assert document["error"] == "ValueError: kaboom"
    assert document["runner_id"] is None
    assert document["last_runner_id"] == app.runner.runner_id
    assert [h["status"] for h in document["history"]] == ["registered", "running", "failed"]
    assert all(re.fullmatch(ISO_UTC, h["time"]) for h in document["history"])
    assert document["history"][-1]["runner_id"] == app.runner.runner_id
    assert set(document) >= {"traceback", "lease_expires_at", "num_retries", "max_retries"}


def test_inspect_json_of_a_success_and_of_a_parked_invocation(
    app_module: ModuleType,
    run_runner: RunRunner,
    wait_status: Callable[[Invocation[Any], InvocationStatus], None],
) -> None:
    app: App = app_module.app
    with run_runner(app.runner):
        done = app_module.add(1, b=5)
        assert done.get_result(WAIT) == 6
        try:
            holder = app_module.hold()
            wait_status(holder, InvocationStatus.RUNNING)
            parked = app_module.hold()
            wait_status(parked, InvocationStatus.CONCURRENCY_CONTROLLED)
            blocked = parked.blocked_by()
            assert blocked is not None
            parked_doc = run_json("inspect", parked.invocation_id, "--app", spec(app_module))
        finally:
            app_module.GATE.set()
        assert parked.get_result(WAIT) == "released"
    success = run_json("inspect", done.invocation_id, "--app", spec(app_module))
    assert (success["status"], success["result"], success["error"]) == ("success", "6", None)
    assert success["arguments"] == {"a": "1", "b": "5"}
    assert success["blocked_by"] is None
    assert parked_doc["status"] == "concurrency_controlled"
    assert parked_doc["blocked_by"] == {
        "scope_key": blocked.scope_key,
        "limit": None,
        "key_values": None,
        "holders": [holder.invocation_id],
        "ready_at": None,
    }


def test_status_shows_what_live_runners_describe(app_module: ModuleType) -> None:
    app: App = app_module.app
    now = time.time()
    app.backend.renew("described-runner", [], 30.0)
    app.backend.renew("silent-runner", [], 30.0)  # live, but announces nothing
    app.backend.announce_runner(
        RunnerInfo(
            "described-runner",
            "host-a",
            4242,
            "process-worker",
            2,
            ("default",),
            now - 60,
            now,
            running=(RunningEntry("inv-9", "tasks.slow", 1, now - 5),),
            tasks={"tasks.add": TaskRunCounters({"success": 7, "failed": 2}, (9,), 0.1)},
        ),
        30.0,
    )
    text = run_cli("status", "--app", spec(app_module))
    assert text.exit_code == 0, text.output
    [row] = [line for line in text.stdout.splitlines() if "described-runner" in line]
    for shown in ("process-worker", "host-a (4242)", "2", "1", "9"):
        assert shown in row
    document = run_json("status", "--app", spec(app_module))
    described, silent = document["runners"]
    assert silent == {
        "runner_id": "silent-runner",
        "heartbeat_expires_at": silent["heartbeat_expires_at"],
    }
    assert described["kind"] == "process-worker" and described["host"] == "host-a"
    assert (described["pid"], described["threads"], described["queues"]) == (4242, 2, ["default"])
    assert described["finished"] == 9
    [entry] = described["running"]
    assert (entry["invocation_id"], entry["task"], entry["attempt"]) == ("inv-9", "tasks.slow", 1)
    assert re.fullmatch(ISO_UTC, entry["started_at"])
