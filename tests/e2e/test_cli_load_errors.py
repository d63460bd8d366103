"""What the CLI says when ``--app`` cannot be loaded: the real cause, and a traceback when the
app's own code failed (always shown: the user's code is at fault, nothing else explains it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from taskgate.cli import cli

COMMANDS = [
    ["status"],
    ["inspect", "some-id"],
    ["invocations"],
    ["limits", "list"],
    ["purge", "--yes"],
]


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding app modules that fail in different ways; the current directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    files = {
        "settings_app.py": "from taskgate import App\napp = App('x', backend='memory://')\n",
        "missing_dep_app.py": "import taskgate_missing_dependency_y\n",
        "raising_app.py": "import raising_helper\n",
        "raising_helper.py": "def configure():\n    raise RuntimeError('bad configuration')\n"
        "\n\nconfigure()\n",
        "pkg/__init__.py": "",
        "pkg/inner_missing.py": "import pkg.nothere_z\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    for name in ("settings_app", "missing_dep_app", "raising_app", "raising_helper", "pkg"):
        sys.modules.pop(name, None)
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_invalid_setting_is_reported_as_such(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("TASKGATE_THREADS", "abc")
    result = run_cli(*command, "--app", "settings_app:app")
    assert result.exit_code == 2, result.output
    assert "TASKGATE_THREADS must be int, got 'abc'" in result.stderr
    assert "invalid settings" in result.stderr
    assert "cannot import" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_dependency_of_the_app_module_shows_its_traceback(workdir: Path) -> None:
    result = run_cli("status", "--app", "missing_dep_app:app")
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert err.startswith("Traceback (most recent call last):"), err
    assert f'File "{workdir / "missing_dep_app.py"}", line 1, in <module>' in err
    assert "No module named 'taskgate_missing_dependency_y'" in err
    assert "module 'missing_dep_app' was found, but a module it imports is missing" in err
    assert "searched the current directory" not in err  # the app module itself was found
    assert "importlib" not in err  # the import machinery's frames are left out
    assert err.rstrip().splitlines()[-1].startswith("Error: --app: ")


def test_an_exception_while_importing_the_app_shows_the_users_frames(workdir: Path) -> None:
    result = run_cli("status", "--app", "raising_app:app")
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert f'File "{workdir / "raising_app.py"}", line 1, in <module>' in err
    assert f'File "{workdir / "raising_helper.py"}", line 5, in <module>' in err
    assert f'File "{workdir / "raising_helper.py"}", line 2, in configure' in err
    assert "RuntimeError: bad configuration" in err
    assert "raised while importing module 'raising_app'" in err
    assert "importlib" not in err and "locate.py" not in err


@pytest.mark.parametrize(
    "spec",
    ["taskgate_no_such_module_x:app", "taskgate_no_such_pkg_x.mod:app", "pkg.missing_mod:app"],
)
def test_a_missing_app_module_says_where_it_was_looked_for(workdir: Path, spec: str) -> None:
    result = run_cli("status", "--app", spec)
    assert result.exit_code == 2, result.output
    assert f"searched the current directory ({workdir}) and PYTHONPATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_module_inside_the_apps_package_shows_its_traceback(workdir: Path) -> None:
    result = run_cli("status", "--app", "pkg.inner_missing:app")
    assert result.exit_code == 2, result.output
    assert "No module named 'pkg.nothere_z'" in result.stderr
    assert "Traceback" in result.stderr
    assert "searched the current directory" not in result.stderr


def test_the_real_command_line_reports_a_settings_error_with_exit_code_2(workdir: Path) -> None:
    env = {**os.environ, "TASKGATE_THREADS": "abc"}
    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "settings_app:app"]
    done = subprocess.run(
        command, check=False, cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "TASKGATE_THREADS" in done.stderr
    assert "cannot import" not in done.stderr
