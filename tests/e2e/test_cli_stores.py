"""Which store a command uses: ``--backend``, absolute SQLite paths, and read-only commands that
never create a store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result

from taskgate import App
from taskgate.cli import cli

AppModuleFactory = Callable[[str], ModuleType]
READ_ONLY = [
    ["status"],
    ["inspect", "some-id"],
    ["invocations"],
    ["limits", "list"],
    ["purge", "--yes"],
]


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def spec(module: ModuleType) -> str:
    return f"{module.__name__}:app"


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
def test_a_read_only_command_refuses_a_missing_sqlite_file_and_creates_nothing(
    app_module_factory: AppModuleFactory, tmp_path: Path, command: list[str]
) -> None:
    module = app_module_factory("memory://")
    missing = tmp_path / "nonexistent_dir" / "x.db"
    result = run_cli(*command, "--app", spec(module), "--backend", f"sqlite:///{missing}")
    assert result.exit_code == 2, result.output
    assert f"no taskgate store at {missing}:" in result.stderr
    assert "Traceback" not in result.output
    assert not missing.parent.exists()


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
def test_the_default_store_is_not_created_in_an_empty_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    name = f"default_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("from taskgate import App\napp = App('d')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli(*command, "--app", f"{name}:app")
    sys.modules.pop(name, None)
    assert result.exit_code == 2, result.output
    assert f"no taskgate store at {tmp_path / '.taskgate' / 'taskgate.db'}:" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.py"]


def test_status_in_a_real_process_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "plain_app.py").write_text("from taskgate import App\napp = App('d')\n")
    done = subprocess.run(
        [sys.executable, "-m", "taskgate", "status", "--app", "plain_app:app"],
        check=False,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert str(tmp_path / ".taskgate" / "taskgate.db") in done.stderr
    assert not (tmp_path / ".taskgate").exists()


def test_backend_option_wins_over_the_environment_and_the_apps_setting(
    app_module_factory: AppModuleFactory, tmp_path: Path
) -> None:
    module = app_module_factory("memory://")  # TASKGATE_BACKEND and the app: memory://
    other = App(module.app.app_id, backend=f"sqlite:///{tmp_path / 'other.db'}")
    other._register_call(module.add, {"a": 1, "b": 2})
    result = run_cli("invocations", "--app", spec(module), "--backend", other.conf.backend)
    other.backend.close()
    assert result.exit_code == 0, result.output
    assert f"on sqlite:///{tmp_path / 'other.db'}" in result.stdout
    assert module.add.task_id in result.stdout


def test_a_relative_backend_option_is_shown_as_the_absolute_path_it_means(
    app_module_factory: AppModuleFactory, tmp_path: Path
) -> None:
    module = app_module_factory(f"sqlite:///{tmp_path / 'rel.db'}")
    module.add(1)
    result = run_cli("status", "--app", spec(module), "--backend", "sqlite:///rel.db")
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert header == f"app {module.app.app_id} on sqlite:///{tmp_path / 'rel.db'}"
    assert header.split(" on ")[1].startswith("sqlite:////")
    assert re.search(rf"{re.escape(module.add.task_id)}\s*│\s*registered\s*│\s*1", result.stdout)
