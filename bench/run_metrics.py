"""What a runner's counters (taskgate/runner/metrics.py) add to each run. Prints figures; never
asserts on timing.

Times ``begin`` + ``finish`` of one accumulator (what a worker thread does around every body)
against an empty loop, the best of ``--repeat`` rounds of ``--runs`` runs, and for scale the two
``time.monotonic()`` reads they include; then one snapshot (``describe``: what each heartbeat
builds) with ``--tasks`` task ids counted.

    .venv/bin/python bench/run_metrics.py [--runs 200000] [--repeat 15] [--tasks 20]
"""

from __future__ import annotations

import argparse
import timeit

SETUP = """
from taskgate.record import Claim, OutcomeKind
from taskgate.runner.metrics import RunMetrics
metrics = RunMetrics()
counts = metrics.accumulator()
claim = Claim("inv-1", "tests.task", b"", 1, 0, 0)
success = OutcomeKind.SUCCESS
for n in range({tasks}):
    counts.finish(f"tests.task{{n}}", success, counts.begin(claim))
"""


def best(statement: str, setup: str, runs: int, repeat: int) -> float:
    """Seconds per execution of ``statement``: the best round (the least disturbed)."""
    return min(timeit.repeat(statement, setup, number=runs, repeat=repeat)) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args()
    setup = SETUP.format(tasks=args.tasks)
    run = 'counts.finish("tests.task", success, counts.begin(claim))'
    added = best(run, setup, args.runs, args.repeat) - best("pass", setup, args.runs, args.repeat)
    clocks = best("m(); m()", "import time; m = time.monotonic", args.runs, args.repeat)
    describe = best('metrics.describe("r", "thread", 8, None, 0.0)', setup, 200, 5)
    print(f"added per run:          {added * 1e6:.3f} us")
    print(f"  of which 2 clock reads: {clocks * 1e6:.3f} us")
    print(f"describe ({args.tasks} tasks):    {describe * 1e6:.1f} us per heartbeat")


if __name__ == "__main__":
    main()
