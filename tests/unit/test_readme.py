"""The README's promises hold: its two set-up commands, its example (run on ``memory://``), and
links that lead to files of the repository."""

from __future__ import annotations

import re
import sys
import types
import uuid
from pathlib import Path

import pytest

from taskgate import App, InvocationStatus, Limit

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.M)


def test_the_set_up_is_exactly_the_two_make_commands() -> None:
    (block,) = fenced("sh")
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_example_runs_and_prints_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (block,) = fenced("python")
    assert len(block.splitlines()) <= 25, "the README's example stays short"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASKGATE_BACKEND", raising=False)
    # A real module, as the reader's script would be, so that the runner finds the task.
    module = types.ModuleType(f"readme_{uuid.uuid4().hex[:8]}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    try:
        exec(compile(block, "README.md (example)", "exec"), module.__dict__)
        app = module.__dict__["app"]
        assert isinstance(app, App) and app.conf.backend_url == "memory://"
        declared = [value for value in module.__dict__.values() if isinstance(value, Limit)]
        assert declared and {info.name for info in app.limits()} >= {d.name for d in declared}
        assert all(i.status is InvocationStatus.SUCCESS for i in module.__dict__["group"])
        assert not app.runner.is_running
    finally:
        if isinstance(module.__dict__.get("app"), App):
            module.__dict__["app"].backend.close()
    printed = capsys.readouterr().out.splitlines()
    promised = re.findall(r"print\(.*\)  # (\[.*?\])", block)
    assert printed == promised
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # memory://: no file written


def test_every_relative_link_and_image_names_a_file_of_the_repository() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    relative = [t for t in targets if "://" not in t]
    assert relative, "the README links into the docs"
    assert [t for t in relative if not (ROOT / t).exists()] == []
