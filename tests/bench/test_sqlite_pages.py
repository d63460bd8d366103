"""bench/sqlite_pages.py names the b-tree of every WAL page an operation writes; and through it,
what SQLite schema v6 promises: a registration writes no page of the status index."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "sqlite_pages.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sqlite_pages", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_operation_writes_pages_only_of_the_b_trees_it_changes(tmp_path: Path) -> None:
    pages = load()
    store = pages.Store(tmp_path)
    try:
        store.register(60)
        store.run(20)
        store.stop_checkpoints()
        registered = pages.measure(store, store.register, 20)
        ran = pages.measure(store, store.run, 20)
    finally:
        store.backend.close()
    # A registration: its row, the unique index of ids and the ready queue (and, when the file
    # grows, its header); never the status index, which leaves fresh registrations out.
    assert {"invocations", "sqlite_autoindex_invocations_1", "queue"} <= set(registered)
    assert set(registered) <= {
        "invocations",
        "sqlite_autoindex_invocations_1",
        "queue",
        "(file header)",
    }
    assert 3.0 <= sum(registered.values()) < 5.0
    # A finish and a claim: the two rows, the status index (the finished one's entry moves,
    # the claimed one's is added), the expiry index and the ready queue.
    assert {"invocations", "invocations_by_status_task", "invocations_by_expiry", "queue"} <= set(
        ran
    )


def test_the_script_prints_frames_per_operation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["sqlite_pages.py", "--ops", "5", "--warm", "10"])
    load().main()
    out = capsys.readouterr().out
    for operation in ("register", "finish_and_claim", "claim, finish"):
        assert f"{operation}: " in out
    assert "invocations_by_status_task" in out
