"""``taskgate limits list|set|reset``, parked invocations per limit in ``status``, and what blocks
an invocation in ``inspect``, on every backend; a real CLI process on the shared ones.

Invocations are admitted by claiming them for a runner id directly (``runner-A``): the claim
is the backend's admission step, so slots, waiters and rate windows are set up without any
task running and without timing.
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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskgate import App, InvocationStatus
from taskgate.cli import cli

WAIT = 15.0
RUNNER = "runner-A"
LIMITS_MODULE = textwrap.dedent(
    """
    import os

    from taskgate import App

    app = App({app_id!r}, backend=os.environ["TASKGATE_BACKEND"])
    api = app.limit("partner-api", concurrency=2)
    customer = app.limit("customer", concurrency=1, key="customer_id")
    quota = app.limit("quota", rate="1/h", key="api_key")
    tenant = app.limit("tenant", concurrency=1, key="tenant")


    @app.task(limits=[api, customer])
    def sync(customer_id: int) -> int:
        return customer_id


    @app.task(limits=[quota])
    def call(api_key: str) -> str:
        return api_key


    @app.task(limits=[tenant])
    def work(tenant: int, n: int) -> int:
        return n
    """
)


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def run_json(*args: str) -> Any:
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@contextmanager
def imported_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> Iterator[ModuleType]:
    """The module above, imported on ``url`` from ``tmp_path`` (the working directory, as for a
    user running ``taskgate`` next to their code), its store existing and empty."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TASKGATE_BACKEND", url)
    name = f"limits_app_{uuid.uuid4().hex[:10]}"
    source = LIMITS_MODULE.format(app_id=f"test-cli-limits-{uuid.uuid4().hex[:12]}")
    (tmp_path / f"{name}.py").write_text(source)
    module = importlib.import_module(name)
    module.app.purge()
    try:
        yield module
    finally:
        module.app.purge()
        module.app.backend.close()
        sys.modules.pop(name, None)


@pytest.fixture
def limits_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend_url: str
) -> Iterator[ModuleType]:
    """The module on each backend."""
    with imported_module(tmp_path, monkeypatch, backend_url) as module:
        yield module


@pytest.fixture
def shared_limits_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_backend_url: str
) -> Iterator[ModuleType]:
    """The module on each backend that other processes can share."""
    with imported_module(tmp_path, monkeypatch, shared_backend_url) as module:
        yield module


def spec(module: ModuleType) -> str:
    return f"{module.__name__}:app"


def admit_queued(app: App) -> list[str]:
    """Claim for RUNNER until nothing is REGISTERED: each claim admits or parks; the admitted."""
    admitted: list[str] = []
    deadline = time.monotonic() + WAIT
    while any(
        status is InvocationStatus.REGISTERED and n
        for (_, status), n in app.backend.stats().by_task_and_status.items()
    ):
        assert time.monotonic() < deadline, "invocations stayed REGISTERED"
        admitted += [c.invocation_id for c in app.backend.claim(RUNNER, 100, 60.0, 0)]
    return admitted


def claim_until(app: App, invocation_id: str) -> list[str]:
    """Claim for RUNNER until ``invocation_id`` (woken, back on the ready queue) is admitted."""
    admitted: list[str] = []
    deadline = time.monotonic() + WAIT
    while invocation_id not in admitted:
        assert time.monotonic() < deadline, f"{invocation_id} was not admitted"
        admitted += [c.invocation_id for c in app.backend.claim(RUNNER, 100, 60.0, 0)]
    return admitted


def setup_waiters(module: ModuleType) -> dict[str, str]:
    """sync(1) runs and sync(1) waits for customer 1; sync(2) runs; sync(3) waits for the
    partner API (2 slots, both held); call('k') ran and call('k') waits for its rate."""
    ids = {
        "run1": module.sync(1).invocation_id,
        "wait1": module.sync(1).invocation_id,
        "run2": module.sync(2).invocation_id,
        "wait3": module.sync(3).invocation_id,
        "call": module.call("k").invocation_id,
        "rated": module.call("k").invocation_id,
    }
    assert sorted(admit_queued(module.app)) == sorted([ids["run1"], ids["run2"], ids["call"]])
    return ids


def by_name(document: Any) -> dict[str, Any]:
    return {limit["name"]: limit for limit in document["limits"]}


def iso_epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --- limits list -----------------------------------------------------------------------------


def test_limits_list_json_shows_effective_values_holders_and_waiters(
    limits_module: ModuleType,
) -> None:
    app: App = limits_module.app
    ids = setup_waiters(limits_module)
    document = run_json("limits", "list", "--app", spec(limits_module))
    assert (document["app"], document["backend"]) == (app.app_id, app.conf.backend_display)
    limits = by_name(document)
    assert sorted(limits) == ["customer", "partner-api", "quota", "tenant"]

    api = limits["partner-api"]
    assert {k: api[k] for k in ("key", "declared", "overridden", "concurrency", "rate")} == {
        "key": [],
        "declared": True,
        "overridden": False,
        "concurrency": 2,
        "rate": None,
    }
    assert (api["slots_held"], api["waiting"], api["window_starts"]) == (2, 1, 0)
    (budget,) = api["budgets"]
    assert (budget["key"], budget["key_values"], budget["waiting"]) == (
        "limit partner-api",
        None,
        1,
    )
    assert sorted(h["invocation_id"] for h in budget["holders"]) == sorted(
        [ids["run1"], ids["run2"]]
    )
    assert {h["runner_id"] for h in budget["holders"]} == {RUNNER}
    assert api["oldest_wait_since"] == budget["oldest_wait_since"] is not None

    customer = limits["customer"]
    assert (customer["key"], customer["slots_held"], customer["waiting"]) == (["customer_id"], 2, 1)
    rows = {b["key_values"]: b for b in customer["budgets"]}
    assert sorted(rows) == ["customer_id=1", "customer_id=2"]
    assert rows["customer_id=1"]["key"] == "limit customer#customer_id=1"
    assert [h["invocation_id"] for h in rows["customer_id=1"]["holders"]] == [ids["run1"]]
    assert (rows["customer_id=1"]["waiting"], rows["customer_id=2"]["waiting"]) == (1, 0)
    assert rows["customer_id=2"]["oldest_wait_since"] is None

    quota = limits["quota"]
    assert quota["rate"] == {"count": 1, "period_seconds": 3600.0}
    assert (quota["concurrency"], quota["slots_held"], quota["waiting"]) == (None, 0, 1)
    assert quota["window_starts"] == 1
    (rated,) = quota["budgets"]
    assert (rated["key_values"], rated["window_starts"], rated["holders"]) == ("api_key='k'", 1, [])

    assert limits["tenant"]["budgets"] == [] and limits["tenant"]["waiting"] == 0


def table_rows(out: str, columns: int) -> dict[tuple[str, str], list[str]]:
    """The rows of a rich table with ``columns`` columns, by their first two cells."""
    rows = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == columns and (cells[0] or cells[1]):
            rows[(cells[0], cells[1])] = cells
    return rows


def test_limits_list_table(limits_module: ModuleType) -> None:
    ids = setup_waiters(limits_module)
    result = run_cli("limits", "list", "--app", spec(limits_module))
    assert result.exit_code == 0, result.output
    assert f"app {limits_module.app.app_id} on " in result.stdout
    rows = table_rows(result.stdout, 10)
    # Limit, Key, Concurrency, Rate, Overridden, Slots held, Waiting, Oldest wait, Starts, Held by
    api = rows[("partner-api", "-")]
    assert api[2:7] + api[8:9] == ["2", "-", "no", "2/2", "1", "-"]
    assert api[7].endswith(" s")
    assert f"{sorted([ids['run1'], ids['run2']])[0][:8]} on {RUNNER}" == api[9]
    assert rows[("customer", "by customer_id")][2:7] == ["1 per key", "-", "no", "2", "1"]
    assert rows[("", "customer_id=1")][5:7] + rows[("", "customer_id=1")][9:] == [
        "1/1",
        "1",
        f"{ids['run1'][:8]} on {RUNNER}",
    ]
    assert rows[("", "customer_id=2")][5:8] == ["1/1", "0", "-"]
    quota = rows[("quota", "by api_key")]
    assert quota[2:7] + quota[8:9] == ["-", "1/h per key", "no", "0", "1", "1"]
    assert rows[("", "api_key='k'")][5:9:3] == ["0", "1/1"]
    assert rows[("tenant", "by tenant")][5:7] == ["0", "0"]


def test_the_limits_help_lists_its_commands_with_whole_summaries() -> None:
    result = run_cli("limits", "--help")
    assert result.exit_code == 0, result.output
    commands = result.stdout.split("Commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in commands] == ["list", "reset", "set"]
    for line in commands:
        assert not line.rstrip().endswith("..."), line  # click cuts a summary that is too long
    assert "--json keys: app, backend, limits [{name," in run_cli("limits", "list", "-h").stdout


# --- limits set / reset ------------------------------------------------------------------------


def test_set_raises_a_limit_at_once_and_reset_restores_it(limits_module: ModuleType) -> None:
    app: App = limits_module.app
    ids = setup_waiters(limits_module)
    result = run_cli(
        "limits", "set", "partner-api", "--concurrency", "3", "--app", spec(limits_module)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"limit 'partner-api' overridden in app {app.app_id} on ")
    assert "now concurrency 3, rate none (override); 2 slot(s) held" in result.stdout
    api = by_name(run_json("limits", "list", "--app", spec(limits_module)))["partner-api"]
    assert (api["overridden"], api["concurrency"]) == (True, 3)
    # Raising the limit woke the waiter: the next claim admits it.
    assert claim_until(app, ids["wait3"]) == [ids["wait3"]]

    result = run_cli("limits", "set", "quota", "--rate", "5/2.5s", "--app", spec(limits_module))
    assert result.exit_code == 0, result.output
    assert "now concurrency none, rate 5/2.5s (override)" in result.stdout
    quota = by_name(run_json("limits", "list", "--app", spec(limits_module)))["quota"]
    assert (quota["overridden"], quota["rate"]) == (True, {"count": 5, "period_seconds": 2.5})
    text = run_cli("limits", "list", "--app", spec(limits_module)).stdout
    assert table_rows(text, 10)[("quota", "by api_key")][3:5] == ["5/2.5s per key", "yes"]

    for name in ("partner-api", "quota"):
        result = run_cli("limits", "reset", name, "--app", spec(limits_module))
        assert result.exit_code == 0, result.output
        assert f"limit {name!r} reset in app {app.app_id}" in result.stdout
        assert "(declared)" in result.stdout
    limits = by_name(run_json("limits", "list", "--app", spec(limits_module)))
    assert (limits["partner-api"]["overridden"], limits["partner-api"]["concurrency"]) == (False, 2)
    assert limits["quota"]["rate"] == {"count": 1, "period_seconds": 3600.0}
    # Lowering below the holders interrupts nothing: the three stay RUNNING.
    assert limits["partner-api"]["slots_held"] == 3
    assert app.get_invocation(ids["wait3"]).status is InvocationStatus.RUNNING


def test_set_of_a_name_the_app_does_not_declare_warns(limits_module: ModuleType) -> None:
    result = run_cli(
        "limits", "set", "partner-apl", "--concurrency", "3", "--app", spec(limits_module)
    )
    assert result.exit_code == 0, result.output
    assert "limit 'partner-apl' overridden in app" in result.stdout
    assert "does not declare a limit 'partner-apl'" in result.stderr
    listed = by_name(run_json("limits", "list", "--app", spec(limits_module)))["partner-apl"]
    assert (listed["declared"], listed["overridden"], listed["concurrency"]) == (False, True, 3)
    text = run_cli("limits", "list", "--app", spec(limits_module)).stdout
    assert "yes (not declared by this app)" in text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--concurrency", "0"], "concurrency of limit 'partner-api' must be an int of at least 1"),
        (["--concurrency", "two"], "'two' is not a valid integer"),
        (["--rate", "10/x"], "invalid rate '10/x': a rate is \"M/P\""),
        (["--rate", "0/s"], "invalid rate '0/s'"),
        ([], "give --concurrency N, --rate M/P or both"),
    ],
)
@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_set_with_an_invalid_value_exits_2_with_the_message(
    limits_module: ModuleType, arguments: list[str], message: str
) -> None:
    result = run_cli("limits", "set", "partner-api", *arguments, "--app", spec(limits_module))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert limits_module.app.backend.limit_overrides() == {}


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_an_invalid_limit_name_exits_2(limits_module: ModuleType) -> None:
    for command in (["set", "a#b", "--concurrency", "2"], ["reset", "a#b"]):
        result = run_cli("limits", *command, "--app", spec(limits_module))
        assert result.exit_code == 2, result.output
        assert "invalid limit name 'a#b'" in result.stderr


@pytest.mark.parametrize(
    "command", [["list"], ["set", "x", "--concurrency", "2"], ["reset", "x"]], ids=lambda c: c[0]
)
@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_limits_commands_refuse_a_missing_sqlite_file_and_create_nothing(
    limits_module: ModuleType, tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "nonexistent_dir" / "x.db"
    result = run_cli(
        "limits", *command, "--app", spec(limits_module), "--backend", f"sqlite:///{missing}"
    )
    assert result.exit_code == 2, result.output
    assert f"no taskgate store at {missing}:" in result.stderr
    assert not missing.parent.exists()


# --- status and inspect --------------------------------------------------------------------------


def test_status_counts_waiters_per_limit_and_key(limits_module: ModuleType) -> None:
    setup_waiters(limits_module)
    parked = run_json("status", "--app", spec(limits_module))["parked"]
    assert parked == [
        {
            "scope_key": "limit customer#customer_id=1",
            "limit": "customer",
            "task": None,
            "key_values": "customer_id=1",
            "count": 1,
        },
        {
            "scope_key": "limit partner-api",
            "limit": "partner-api",
            "task": None,
            "key_values": None,
            "count": 1,
        },
        {
            "scope_key": "limit quota#api_key='k'",
            "limit": "quota",
            "task": None,
            "key_values": "api_key='k'",
            "count": 1,
        },
    ]
    result = run_cli("status", "--app", spec(limits_module))
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout, 3)
    assert rows[("limit customer", "customer_id=1")] == ["limit customer", "customer_id=1", "1"]
    assert rows[("limit partner-api", "-")][2] == "1"
    assert rows[("limit quota", "api_key='k'")][2] == "1"


def test_inspect_shows_the_budget_its_holders_and_a_rate_block(limits_module: ModuleType) -> None:
    ids = setup_waiters(limits_module)
    blocked = run_json("inspect", ids["wait1"], "--app", spec(limits_module))["blocked_by"]
    assert blocked == {
        "scope_key": "limit customer#customer_id=1",
        "limit": "customer",
        "key_values": "customer_id=1",
        "holders": [ids["run1"]],
        "ready_at": None,
    }
    text = run_cli("inspect", ids["wait1"], "--app", spec(limits_module)).stdout
    assert "waiting for    limit customer#customer_id=1" in text
    assert f"slots held by  {ids['run1']} on {RUNNER}" in text

    started = limits_module.app.get_invocation(ids["call"]).history[-1].timestamp
    rated = run_json("inspect", ids["rated"][:12], "--app", spec(limits_module))["blocked_by"]
    assert (rated["scope_key"], rated["holders"]) == ("limit quota#api_key='k'", [])
    # The window (1 start per hour) admits again an hour after the start, on the store's clock.
    assert abs(iso_epoch(rated["ready_at"]) - (started + 3600)) < 5
    text = run_cli("inspect", ids["rated"], "--app", spec(limits_module)).stdout
    assert re.search(r"blocked by\s+its rate: the window is full", text), text
    assert re.search(rf"ready at\s+{re.escape(rated['ready_at'])} \(in 3\d{{3}}\.\d s\)", text), (
        text
    )
    assert "slots held by" not in text


# --- many waiters --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_ten_thousand_waiters_give_short_tables(limits_module: ModuleType) -> None:
    app: App = limits_module.app
    tenants, calls = 2500, 5  # 2,500 tenants run one each; 10,000 calls wait
    limits_module.work.parallelize([(t, n) for n in range(calls) for t in range(tenants)])
    assert len(admit_queued(app)) == tenants

    result = run_cli("limits", "list", "--app", spec(limits_module))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) < 60, result.stdout
    rows = table_rows(result.stdout, 10)
    assert rows[("tenant", "by tenant")][5:7] == [str(tenants), "10000"]
    assert rows[("", f"... {tenants - 20} more key values")][5:7] == [
        str(tenants - 20),
        str(4 * (tenants - 20)),
    ]
    tenant = by_name(run_json("limits", "list", "--app", spec(limits_module)))["tenant"]
    assert (len(tenant["budgets"]), tenant["waiting"]) == (tenants, 10000)

    result = run_cli("status", "--app", spec(limits_module))
    assert len(result.stdout.splitlines()) < 60, result.stdout
    rows = table_rows(result.stdout, 3)
    assert rows[("", f"... {tenants - 20} more key values")][2] == str(4 * (tenants - 20))


# --- other processes -----------------------------------------------------------------------------


def taskgate_process(module: ModuleType, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m taskgate ARGS --app MODULE:app`` in the working directory; must exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", "taskgate", *args, "--app", spec(module)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_other_processes_see_the_store_and_override_it(shared_limits_module: ModuleType) -> None:
    app: App = shared_limits_module.app
    ids = setup_waiters(shared_limits_module)

    listed = json.loads(taskgate_process(shared_limits_module, "limits", "list", "--json").stdout)
    api = by_name(listed)["partner-api"]
    assert (api["slots_held"], api["waiting"]) == (2, 1)
    assert {h["runner_id"] for h in api["budgets"][0]["holders"]} == {RUNNER}
    status = json.loads(taskgate_process(shared_limits_module, "status", "--json").stdout)
    assert {p["scope_key"]: p["count"] for p in status["parked"]} == {
        "limit customer#customer_id=1": 1,
        "limit partner-api": 1,
        "limit quota#api_key='k'": 1,
    }
    text = taskgate_process(shared_limits_module, "limits", "list").stdout
    assert table_rows(text, 10)[("partner-api", "-")][5:7] == ["2/2", "1"]

    # An override stored by another process applies to this one's next admission.
    taskgate_process(shared_limits_module, "limits", "set", "partner-api", "--concurrency", "3")
    assert {info.name: info for info in app.limits()}["partner-api"].overridden
    assert claim_until(app, ids["wait3"]) == [ids["wait3"]]
    taskgate_process(shared_limits_module, "limits", "reset", "partner-api")
    assert app.backend.limit_overrides() == {}
