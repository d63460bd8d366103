"""Every fenced ``python`` block of the documentation runs, so the docs cannot drift from the code.

Each page is one test: its python blocks run in order in one namespace (a later block uses what
an earlier one defined), in a fresh temporary directory, with the ``TASKGATE_*`` environment
cleared and ``TASKGATE_BACKEND=memory://`` unless the page's code names another backend (a
relative SQLite path then lands in the temporary directory). A block whose first line is a file
name comment (``# tasks.py``) is written to that file instead and imported by later blocks, as a
reader's own module would be. Shell, Redis and configuration snippets use other fences
(``console``, ``toml``, ``ini``...) and are not run. A python block that cannot run here is
marked on the line before it with ``<!-- no-run: why -->``; such marks are rare and need a reason.
"""

from __future__ import annotations

import re
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskgate import App

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)$")
NO_RUN = re.compile(r"^\s*<!--\s*no-run:\s*(?P<why>.*?)\s*-->\s*$")
FILE_COMMENT = re.compile(r"^# (?P<module>[A-Za-z_]\w*)\.py\s*$")
# Fences whose content is not Python run by this test. Anything else is a typo to catch.
OTHER_LANGUAGES = {
    "console", "bash", "sh", "shell", "text", "toml", "ini", "yaml", "json", "dockerfile",
    "systemd", "mermaid", "lua", "sql", "pycon", "diff",
}  # fmt: skip
MAX_NO_RUN = 4


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, first line number, code and no-run reason."""

    page: Path
    language: str
    line: int
    code: str
    no_run: str | None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, in order (indented fences, as in admonitions, included)."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        language = match["info"].strip().split(" ")[0].lstrip("{").lstrip(".").rstrip("}")
        previous = lines[index - 1] if index else ""
        if not previous.strip() and index > 1:
            previous = lines[index - 2]
        why = NO_RUN.match(previous)
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        code = "\n".join(line[indent:] for line in lines[index + 1 : end])
        found.append(Block(page, language, index + 2, code, why["why"] if why else None))
        index = end + 1
    return found


def python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.language in ("python", "py", "python3")]


def test_the_docs_have_pages_with_runnable_code() -> None:
    assert len(PAGES) >= 15
    assert sum(1 for page in PAGES for b in python_blocks(page) if b.no_run is None) >= 30


def test_every_fence_names_a_known_language_and_no_run_marks_are_rare() -> None:
    unknown = [
        f"{b.page.relative_to(DOCS)}:{b.line}: {b.language or '(none)'}"
        for page in PAGES
        for b in blocks(page)
        if b.language not in OTHER_LANGUAGES | {"python", "py", "python3"}
    ]
    assert unknown == [], "fences need a language (python runs; console, toml... do not)"
    marked = [b for page in PAGES for b in python_blocks(page) if b.no_run is not None]
    assert all(b.no_run for b in marked), "a no-run mark must say why"
    assert len(marked) <= MAX_NO_RUN, [f"{b.page.name}:{b.line}" for b in marked]


def _live_runners(namespace: dict[str, object]) -> list[str]:
    apps = [value for value in namespace.values() if isinstance(value, App)]
    return [app.app_id for app in apps if app._runner is not None and app._runner.is_running]


@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(DOCS))
)
def test_the_python_blocks_of_a_page_run_in_order(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASKGATE_BACKEND", "memory://")
    monkeypatch.syspath_prepend(str(tmp_path))
    module_name = "docs_" + re.sub(r"\W", "_", str(page.relative_to(DOCS).with_suffix("")))
    # A real module, so that pickle finds the classes and functions a page defines.
    module = types.ModuleType(module_name)
    monkeypatch.setitem(sys.modules, module_name, module)
    written: list[str] = []
    threads_before = set(threading.enumerate())
    try:
        for block in python_blocks(page):
            if block.no_run is not None:
                continue
            first = block.code.splitlines()[0] if block.code else ""
            file_comment = FILE_COMMENT.match(first)
            if file_comment is not None:
                (tmp_path / f"{file_comment['module']}.py").write_text(block.code + "\n")
                written.append(file_comment["module"])
                sys.modules.pop(file_comment["module"], None)
                continue
            # Padded so that a traceback names the page's own line numbers.
            source = "\n" * (block.line - 1) + block.code
            exec(compile(source, str(page), "exec"), module.__dict__)
        assert _live_runners(module.__dict__) == [], "a page that starts a runner stops it"
    finally:
        # Modules the page's files became (and any a block imported from the temporary
        # directory, such as the conftest of a pytest run) leave with the page.
        local = [
            name
            for name, loaded in list(sys.modules.items())
            if str(getattr(loaded, "__file__", None) or "").startswith(str(tmp_path))
        ]
        for name in {*written, *local}:
            loaded = sys.modules.pop(name, None)
            if loaded is not None:
                for value in vars(loaded).values():
                    if isinstance(value, App) and value._runner is not None:
                        value.runner.stop_runner_loop(force=True)
        for value in list(module.__dict__.values()):
            if isinstance(value, App) and value._runner is not None:
                value.runner.stop_runner_loop(force=True)
    leftover = [
        t for t in set(threading.enumerate()) - threads_before if t.is_alive() and not t.daemon
    ]
    assert leftover == [], f"threads left running: {leftover}"
