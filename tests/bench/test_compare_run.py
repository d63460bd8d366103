"""bench/compare/run.py: the options of a full and of a --quick run."""

from __future__ import annotations

import run


def test_quick_sizes_are_defaults_that_options_override() -> None:
    args = run.parse_args(["--quick", "--backlog", "0", "--systems", "taskgate,huey"])
    assert args.backlog == 0
    assert args.e2e == run.QUICK_SIZES["e2e"] and args.repetitions == 1
    assert args.systems == ["taskgate", "huey"]
    assert run.outputs(args.quick)["markdown"].parent == run.QUICK_DIR
    full = run.parse_args([])
    assert full.backlog == 100000 and full.e2e == [2000, 20000]
    assert run.outputs(full.quick)["markdown"] == run.REPO / "BENCHMARKS.md"
