"""Reproduce a soak finding: a retry re-claimed by its own worker is never renewed.

Not part of ``make soak``. Usage: ``.venv/bin/python soak/repro_retry_reclaim.py [sqlite|redis]``.

Two CLI runners of one thread each, lease 1 s, and one invocation of
``soak_app.retry_then_slow`` (running_limit 1): its first run raises a retryable error at once;
the retry sleeps 2.5 s. The worker reports the retry through ``finish_and_claim``, which hands
the same invocation straight back to it as attempt 2. ``ThreadRunner._finish_and_next`` then
calls ``_track(claims)`` (in flight: attempt 2) followed by ``_forget([invocation_id])``, which
drops attempt 2 from the in-flight claims: the heartbeat never renews it, its lease expires
while it runs, ``recover`` hands it to the other runner, and both run the invocation at once.

Exit code 1 when that happens (two runs of the key overlap, or a live runner's claim was
recovered), 0 when it does not (fixed).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from soak_checks import Findings, check_limits, check_recoveries, load_intervals
from soak_fleet import Fleet

from soak import HERE, backend_url, wait_until_serving

RESULT_TIMEOUT_SECONDS = 20.0


def reproduce(backend: str) -> int:
    """Run the probe on ``backend``; print what the store and the bodies saw."""
    workdir = Path(tempfile.mkdtemp(prefix=f"taskgate-repro-{backend}-"))
    try:
        with backend_url(backend, workdir) as url:
            return probe(url, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def probe(url: str, workdir: Path) -> int:
    """Register one ``retry_then_slow`` call with two one-thread runners, then check it."""
    intervals_path = workdir / "intervals.jsonl"
    os.environ.update(
        {"SOAK_BACKEND": url, "SOAK_APP_ID": "repro", "SOAK_INTERVALS": str(intervals_path)}
    )
    import soak_app

    env = {**os.environ, "PYTHONPATH": str(HERE)}
    fleet = Fleet(HERE, env, workdir, size=2, threads=1)
    try:
        fleet.start()
        wait_until_serving(soak_app.app, fleet)
        invocation = soak_app.retry_then_slow("probe")
        print("result:", invocation.get_result(timeout=RESULT_TIMEOUT_SECONDS))
        fleet.stop()
    finally:
        fleet.close()
    record = soak_app.app.backend.get(invocation.invocation_id)
    assert record is not None
    for transition in record.history:
        print(f"  {transition.timestamp:.3f} {transition.status.value:<10} {transition.runner_id}")
    findings = Findings()
    intervals = load_intervals(intervals_path, findings)
    for interval in intervals:
        print(
            f"  run: attempt {interval.attempt} pid {interval.pid} "
            f"{interval.start:.3f} -> {interval.end:.3f}"
        )
    check_limits(intervals, findings)
    check_recoveries({record.invocation_id: record}, set(), findings)
    for kind, examples in findings.violations.items():
        print(f"REPRODUCED: {kind}: {examples}")
    return 1 if findings.violation_count else 0


if __name__ == "__main__":
    sys.exit(reproduce(sys.argv[1] if len(sys.argv) > 1 else "sqlite"))
