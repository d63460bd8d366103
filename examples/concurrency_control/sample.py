"""The seed scenario: registration and running concurrency control, step by step.

Run it from this folder (``make demo`` does): ``python sample.py``. It uses the backend named by
``TASKGATE_BACKEND`` (the embedded default when unset) and exits non-zero if any check fails.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Sequence

import tasks

from taskgate import DistributedInvocation, ReusedInvocation

logger = logging.getLogger("sample")


def any_run_in_parallel(results: Sequence[tasks.SleepResult]) -> bool:
    """Whether any two [start, end] intervals overlap."""
    ordered = sorted(results, key=lambda r: r.start)
    return any(later.start < earlier.end for earlier, later in itertools.pairwise(ordered))


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {message}")


def run_without_concurrency_control() -> None:
    invocations = [tasks.get_own_invocation_id() for _ in range(10)]
    ids = {i.invocation_id for i in invocations}
    logger.info("1. no registration control: 10 calls -> %s distinct invocation ids", len(ids))
    check(len(ids) == 10, f"expected 10 distinct ids, got {len(ids)}")


def run_with_registration_concurrency_control() -> None:
    invocations = [tasks.get_own_invocation_id_registration_concurrency() for _ in range(3)]
    ids = {i.invocation_id for i in invocations}
    kinds = ", ".join(type(i).__name__ for i in invocations)
    logger.info("2. registration control TASK: 3 calls -> ids %s (%s)", ids, kinds)
    check(len(ids) == 1, f"expected one invocation id, got {ids}")
    check(isinstance(invocations[0], DistributedInvocation), "first call must register")
    check(all(isinstance(i, ReusedInvocation) for i in invocations[1:]), "others must reuse")


def run_with_running_concurrency_control() -> None:
    tasks.app.purge()

    def run_runner() -> None:
        tasks.app.conf.runner_cls = "ThreadRunner"
        tasks.app.runner.run()

    runner_thread = threading.Thread(target=run_runner, daemon=True)
    runner_thread.start()

    started = time.perf_counter()
    no_control = [tasks.sleep_without_running_concurrency(0.1) for _ in range(10)]
    no_control_results = [i.result for i in no_control]
    elapsed = time.perf_counter() - started
    check(all(isinstance(r, tasks.SleepResult) for r in no_control_results), "SleepResult expected")
    logger.info(
        "3. no running control: 10 x 0.1 s took %.2f s, overlapping: %s",
        elapsed,
        any_run_in_parallel(no_control_results),
    )
    check(any_run_in_parallel(no_control_results), f"expected overlaps: {no_control_results}")

    started = time.perf_counter()
    controlled = [tasks.sleep_with_running_concurrency(0.1) for _ in range(10)]
    controlled_results = [i.result for i in controlled]
    elapsed = time.perf_counter() - started
    logger.info(
        "4. running control TASK: 10 x 0.1 s took %.2f s, all %s done, overlapping: %s",
        elapsed,
        len(controlled_results),
        any_run_in_parallel(controlled_results),
    )
    check(len(controlled_results) == 10, "all 10 controlled invocations must complete")
    check(not any_run_in_parallel(controlled_results), f"overlap: {controlled_results}")

    started = time.perf_counter()
    tasks.app.runner.stop_runner_loop()
    runner_thread.join(timeout=5)
    check(not runner_thread.is_alive(), "the runner thread did not end")
    logger.info("runner stopped in %.3f s", time.perf_counter() - started)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("taskgate").setLevel(logging.WARNING)
    logger.info("backend: %s", tasks.app.conf.backend_url)
    run_without_concurrency_control()
    run_with_registration_concurrency_control()
    run_with_running_concurrency_control()
    logger.info("all checks passed")


if __name__ == "__main__":
    main()
