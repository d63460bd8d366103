"""The code of README's "Limits" section compiles and its declarations run (on ``memory://``)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from taskgate import App, InvocationStatus, Limit

README = Path(__file__).resolve().parents[2] / "README.md"


def limits_blocks() -> list[str]:
    """The fenced python blocks between the ``## Limits`` heading and the next ``## `` one."""
    text = README.read_text()
    section = text.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_the_declaration_api_and_three_recipes() -> None:
    blocks = limits_blocks()
    assert len(blocks) == 4
    assert all("app.limit(" in block and "limits=[" in block for block in blocks)


@pytest.mark.parametrize("index", range(4))
def test_a_block_compiles_and_runs_on_memory(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = limits_blocks()[index]
    code = compile(block, f"README.md (Limits, block {index + 1})", "exec")
    monkeypatch.chdir(tmp_path)  # the default store is not used, but would land here
    monkeypatch.setenv("TASKGATE_BACKEND", "memory://")
    namespace = {"__name__": f"readme_limits_{uuid.uuid4().hex[:8]}"}
    try:
        exec(code, namespace)
        app = namespace["app"]
        assert isinstance(app, App) and app.conf.backend_url == "memory://"
        declared = [value for value in namespace.values() if isinstance(value, Limit)]
        assert declared and {info.name for info in app.limits()} >= {d.name for d in declared}
        # The calls a recipe makes registered and wait for a runner: nothing ran, nothing failed.
        for invocation in app.invocations(limit=10_000):
            assert invocation.status is InvocationStatus.REGISTERED
    finally:
        if isinstance(namespace.get("app"), App):
            namespace["app"].backend.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
