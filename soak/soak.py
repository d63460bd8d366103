"""The taskgate soak test: concurrency control under load, failures, retries and runner kills.

Usage (from the repository root; ``make soak`` runs the first form)::

    .venv/bin/python soak/soak.py                    # SQLite, then Redis
    .venv/bin/python soak/soak.py --backend redis    # one backend
    .venv/bin/python soak/soak.py --keep             # keep the work directory (logs, intervals)

Each backend runs in a child process of its own, in a new session: if it outlives its hard time
limit the whole process group (driver, runners, redis-server) is killed and the soak fails. In
the child, the driver starts 3 runner processes of 4 threads through the command line, registers
5,000 invocations of five tasks (about one in five of ``no_limit``, without running concurrency
control, which Redis may hand straight to a waiting runner; one in five of ``limit_stack``, with
two limits, one keyed, and a rate; about one in seven of ``limit_timeout``, whose hanging bodies
are interrupted by their timeout; the rest of two keyed tasks, running_limit 1 and 2, 25 keys
each; one call in ten delayed by up to 1.5 s), SIGKILLs a random runner every 2-3 s and starts
a replacement, cancels about 3% of the invocations (some while they run), waits until every
invocation is final, stops the runners with SIGTERM, and checks the intervals the bodies
recorded against the store. See
``soak/README.md`` for the checks and how to read the output. Exit code 0 when every check of
every backend passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from soak_checks import (
    DriverOutcome,
    Findings,
    check_invocations,
    check_limits,
    check_recoveries,
    classify_lost_claims,
    load_intervals,
    runner_pid,
)
from soak_control import (
    CANCEL_SHARE,
    DELAY_SHARE,
    MAX_DELAY_SECONDS,
    Canceller,
    check_cancels,
    check_delays,
    check_interrupted_lines,
    percentile_text,
)
from soak_fleet import Fleet, Killer
from soak_limits import STACK_KEY_PREFIX, check_stack
from soak_report import (
    Evidence,
    Registered,
    Run,
    cancel_counts,
    format_counts,
    print_violations,
    report,
)

from taskgate import App
from taskgate.errors import ResultTimeoutError
from taskgate.record import InvocationRecord
from taskgate.testing import RedisServer

HERE = Path(__file__).resolve().parent
BACKENDS = ("sqlite", "redis")
RUNNERS = 3
THREADS = 4
INVOCATIONS = 5000
KEYS = 50
UNLIMITED_SHARE = 0.2
"""The share of calls to ``no_limit``: enough of them to be handed to waiting runners (Redis)
often, while the keyed tasks still park on their keys."""
STACK_SHARE = 0.2
"""The share of calls to ``limit_stack`` (two limits, one keyed, and a rate)."""
TIMEOUT_SHARE = 0.15
"""The share of calls to ``limit_timeout`` (some of its bodies hang until their timeout)."""
MIN_DELAY_SECONDS = 0.05
BURSTS = 10
BURST_LEAD_SECONDS = 0.2
"""Each burst starts this long before a kill: bursts spread the work over ~25 s, one per kill,
and every kill of the registration phase hits runners mid-burst."""
KILL_EVERY_SECONDS = (2.0, 3.0)
WAIT_SECONDS = 100.0
"""Every invocation must be final this long after registration starts, else the soak fails."""
BACKEND_TIMEOUT_SECONDS = 150.0
"""Hard limit for one backend's child process (its whole process group is killed)."""
READY_TIMEOUT_SECONDS = 10.0
EXIT_TIMEOUT = 124
# Log records start with a time (the CLI's plain format); the lines that follow them without one
# are their continuation (a traceback logged with the record).
LOG_RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
LOST_CLAIM = re.compile(
    r"runner (?P<runner>\S+) lost the claim on \d+ invocation\(s\): (?P<ids>[^;]+);"
)
LOG_CATEGORIES = {
    # A final task failure (the soak's FatalError, or retries exhausted): a WARNING whose
    # traceback follows on the next lines, as the runner is meant to log it.
    "failed: ": "task failed (with traceback)",
    "recovered": "recovered by a heartbeat",
    "lost the claim": "live runner lost a claim",
    "rejected report": "late report rejected",
    "handed invocation": "handed back on stop",
    "ran past its timeout": "timeout interrupt raised",
    "timed out after": "timed out (reported)",
    "cancelled while running": "cancelled while running",
}


# --- the parent: one child process per backend ------------------------------------------------


def run_children(backends: Sequence[str], options: argparse.Namespace) -> int:
    """Soak each backend in a child process; 0 when all passed."""
    results = {backend: run_child(backend, options) for backend in backends}
    print("\n=== soak summary ===", flush=True)
    for backend, code in results.items():
        verdict = "PASS" if code == 0 else f"FAIL (exit code {code})"
        print(f"  {backend:<8} {verdict}", flush=True)
    return 0 if all(code == 0 for code in results.values()) else 1


def run_child(backend: str, options: argparse.Namespace) -> int:
    """Run ``soak.py --child BACKEND`` in a new session; kill its group past the hard limit."""
    workdir = tempfile.mkdtemp(prefix=f"taskgate-soak-{backend}-")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", backend]
    command += ["--workdir", workdir]
    command += ["--invocations", str(options.invocations), "--seed", str(options.seed)]
    command += ["--slow-fraction", str(options.slow_fraction)]
    command += ["--keep"] if options.keep else []
    child = subprocess.Popen(command, start_new_session=True)
    try:
        return child.wait(BACKEND_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        print(
            f"soak on {backend} exceeded its hard limit of {BACKEND_TIMEOUT_SECONDS:.0f} s; "
            f"killing it with its runners; work directory kept: {workdir}",
            flush=True,
        )
        return EXIT_TIMEOUT
    finally:
        if child.poll() is None:
            kill_group(child)


def kill_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(5.0)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


# --- the child: one backend -------------------------------------------------------------------


@contextlib.contextmanager
def backend_url(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh store: an SQLite file in ``workdir``, or a private redis-server."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'soak.db'}"
        return
    with RedisServer() as server:
        yield server.url


def soak_one(backend: str, options: argparse.Namespace) -> int:
    """Soak one backend; prints the figures and returns 0 when every check passed.

    A SIGTERM (the parent's hard limit) raises SystemExit, so the runners and the
    redis-server are still cleaned up by the ``finally`` blocks.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix=f"taskgate-soak-{backend}-"))
    passed = False
    try:
        with backend_url(backend, workdir) as url:
            passed = soak_store(backend, url, workdir, options)
    finally:
        if passed and not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}", flush=True)
    return 0 if passed else 1


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def soak_store(backend: str, url: str, workdir: Path, options: argparse.Namespace) -> bool:
    """Drive, then verify, a soak against the store at ``url``; True when it passed."""
    intervals_path = workdir / "intervals.jsonl"
    settings = {
        "SOAK_BACKEND": url,
        "SOAK_APP_ID": f"soak-{uuid.uuid4().hex[:8]}",
        "SOAK_INTERVALS": str(intervals_path),
        "SOAK_SLOW_FRACTION": str(options.slow_fraction),
    }
    os.environ.update(settings)  # soak_app reads them at import, here and in the runners
    import soak_app

    header = f"=== soak on {backend}: {url}, app {soak_app.app.app_id}, seed {options.seed} ==="
    print(header, flush=True)
    pythonpath = [str(HERE), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))}
    fleet = Fleet(HERE, env, workdir, RUNNERS, THREADS)
    try:
        run = drive(soak_app, fleet, random.Random(options.seed), options.invocations)
    finally:
        fleet.close()
    findings, evidence = verify(soak_app.app, run, intervals_path, fleet)
    low, high = KILL_EVERY_SECONDS
    shape = f"{RUNNERS} x {THREADS} threads, one SIGKILL every {low:g}-{high:g} s"
    report(backend, shape, run, findings, fleet)
    print_violations(findings, evidence)
    print(f"  {'RESULT':<18} {'PASS' if findings.violation_count == 0 else 'FAIL'}", flush=True)
    return findings.violation_count == 0


def drive(soak_app: Any, fleet: Fleet, rng: random.Random, count: int) -> Run:
    """Start the runners and the killer, register ``count`` calls, wait, stop the runners."""
    run = Run()
    fleet.start()
    killer = Killer(fleet, random.Random(rng.random()), *KILL_EVERY_SECONDS)
    killer.start()
    canceller = Canceller(run.registered, random.Random(rng.random()), int(count * CANCEL_SHARE))
    canceller.start()
    try:
        started = time.monotonic()
        register_all(soak_app, rng, count, killer, run)
        run.registration_seconds = time.monotonic() - started
        print(f"registered {count} invocations in {run.registration_seconds:.1f} s", flush=True)
        run.outcomes = wait_all(run.registered, started + WAIT_SECONDS)
        run.duration_seconds = time.monotonic() - started
    finally:
        canceller.stop()
        run.cancels, run.canceller_error = canceller.attempts, canceller.error
        killer.stop()
        run.killer_error = killer.error
    run.kills = fleet.kills
    wait_until_serving(soak_app.app, fleet)
    run.stop = fleet.stop()
    return run


def wait_until_serving(app: App, fleet: Fleet) -> None:
    """Wait until every live runner has announced itself in the store (or a short timeout).

    A runner handles SIGTERM once it runs; a replacement SIGTERMed while still importing would
    die of the signal instead of stopping cleanly, which is not what the stop check is about.
    """
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        announced = {runner_pid(runner) for runner in app.backend.stats().runners}
        if fleet.live_pids() <= announced:
            return
        time.sleep(0.1)


def register_all(soak_app: Any, rng: random.Random, count: int, killer: Killer, run: Run) -> None:
    """Register ``count`` calls on random keys, in ``BURSTS`` bursts, as fast as possible.

    Each burst starts ``BURST_LEAD_SECONDS`` before the killer's next kill, so every kill of
    the registration phase hits runners in the middle of a burst. About ``DELAY_SHARE`` of the
    calls are delayed (``with_options(eta=...)``, 50 ms to ``MAX_DELAY_SECONDS`` ahead); their
    etas go to ``run.etas``. Appends to ``run.registered`` (the canceller reads it meanwhile).
    """
    per_burst = -(-count // BURSTS)
    aimed_at = 0
    for burst_start in range(0, count, per_burst):
        aimed_at = killer.wait_before_next_kill(aimed_at, BURST_LEAD_SECONDS)
        for seq in range(burst_start, min(count, burst_start + per_burst)):
            task, key = pick_call(soak_app, rng)
            if rng.random() < DELAY_SHARE:
                eta = time.time() + rng.uniform(MIN_DELAY_SECONDS, MAX_DELAY_SECONDS)
                invocation = task.with_options(eta=eta)(key, seq)
                run.etas[invocation.invocation_id] = eta
            else:
                invocation = task(key, seq)
            run.registered.append(Registered(invocation, task.__name__, key))


def pick_call(soak_app: Any, rng: random.Random) -> tuple[Any, str]:
    """The task and key of the next call, drawn from ``rng`` (the seed replays them).

    About ``UNLIMITED_SHARE`` of the calls go to ``no_limit`` (keys ``u00``...: a label only),
    ``STACK_SHARE`` to ``limit_stack`` (keys ``s00``...), ``TIMEOUT_SHARE`` to
    ``limit_timeout`` (keys ``t00``...).
    The rest pick one of ``KEYS`` keys: ``k00``-``k24`` call ``limit_one``, the others
    ``limit_two``.
    """
    index = rng.randrange(KEYS)
    roll = rng.random()
    if roll < UNLIMITED_SHARE:
        return soak_app.no_limit, f"u{index:02d}"
    if roll < UNLIMITED_SHARE + STACK_SHARE:
        return soak_app.limit_stack, f"{STACK_KEY_PREFIX}{index:02d}"
    if roll < UNLIMITED_SHARE + STACK_SHARE + TIMEOUT_SHARE:
        return soak_app.limit_timeout, f"t{index:02d}"
    task = soak_app.limit_one if index < KEYS // 2 else soak_app.limit_two
    return task, f"k{index:02d}"


def wait_all(registered: Sequence[Registered], deadline: float) -> dict[str, DriverOutcome]:
    """``get_result`` of every invocation, all within ``deadline`` (a ``time.monotonic``)."""
    outcomes: dict[str, DriverOutcome] = {}
    for entry in registered:
        invocation = entry.invocation
        remaining = max(0.0, deadline - time.monotonic())
        try:
            outcomes[invocation.invocation_id] = DriverOutcome(
                value=invocation.get_result(timeout=remaining)
            )
        except ResultTimeoutError:
            outcomes[invocation.invocation_id] = DriverOutcome(timed_out=True)
        except Exception as exc:
            outcomes[invocation.invocation_id] = DriverOutcome(error=type(exc).__name__)
    return outcomes


# --- verification -----------------------------------------------------------------------------


def verify(app: App, run: Run, intervals_path: Path, fleet: Fleet) -> tuple[Findings, Evidence]:
    """Run every check; the findings hold the figures and the violations."""
    findings = Findings()
    records: dict[str, InvocationRecord | None] = {
        entry.invocation.invocation_id: app.backend.get(entry.invocation.invocation_id)
        for entry in run.registered
    }
    intervals = load_intervals(intervals_path, findings)
    findings.counts["interval lines"] = len(intervals)
    check_limits(intervals, findings)
    import soak_app  # imported by soak_store, once the environment is set

    check_stack(intervals, records, soak_app.limit_stack.task_id, soak_app.stack_shared, findings)
    check_invocations(records, intervals, run.outcomes, findings)
    check_cancels(records, run.cancels, intervals, findings)
    lateness = check_delays(records, run.etas, findings)
    overrun = check_interrupted_lines(intervals, soak_app.TIMEOUT_SECONDS, findings)
    findings.rows += [
        ("delayed calls", f"{len(run.etas)}; first start after eta: {percentile_text(lateness)}"),
        (
            "timeouts",
            f"{findings.counts['timed-out bodies']} bodies timed out "
            f"({soak_app.TIMEOUT_SECONDS:g} s); stopped after it: {percentile_text(overrun)}",
        ),
        ("cancels", format_counts(cancel_counts(findings.counts))),
    ]
    check_store_totals(app, len(run.registered), findings)
    check_runners(run, findings)
    check_recoveries(records, {r.pid for r in fleet.all if r.killed}, findings)
    counts, lost_claims = scan_logs(fleet, findings)
    findings.counts.update(counts)
    classify_lost_claims(lost_claims, records, findings)
    return findings, Evidence(records, intervals)


def check_store_totals(app: App, expected: int, findings: Findings) -> None:
    """Check 4 from the store's own counts: all final, nothing parked, nothing extra."""
    stats = app.backend.stats()
    total = 0
    for (task_id, status), count in stats.by_task_and_status.items():
        total += count
        if count and not status.is_final:
            findings.violate("stats: not final", f"{count} x {task_id} {status.value}")
    if total != expected:
        findings.violate("stats: total differs from registered", f"{total} != {expected}")
    for key, count in stats.parked_by_key.items():
        if count:
            findings.violate("stats: parked left", f"{count} on {key}")
    listed = app.invocations(limit=expected + 100)
    if len(listed) != expected:
        findings.violate("invocations(): count differs", f"{len(listed)} != {expected}")


def check_runners(run: Run, findings: Findings) -> None:
    """Runners must only die when killed, and stop cleanly on SIGTERM."""
    for runner in run.stop.crashed:
        findings.violate(
            "runner crashed", f"runner {runner.index} pid {runner.pid} exit {runner.exit_code}"
        )
    for runner in run.stop.unclean:
        findings.violate(
            "runner did not stop cleanly",
            f"runner {runner.index} pid {runner.pid} exit {runner.exit_code}",
        )
    if run.killer_error is not None:
        findings.violate("killer thread failed", repr(run.killer_error))
    if run.canceller_error is not None:
        findings.violate("canceller thread failed", repr(run.canceller_error))


def scan_logs(fleet: Fleet, findings: Findings) -> tuple[Counter[str], list[tuple[str, str]]]:
    """Count the runners' warning and error lines by kind; error lines are violations.

    Also returns the ``(runner_id, invocation_id)`` pairs of the heartbeat's "lost the claim"
    warnings, for :func:`classify_lost_claims`.
    """
    counts: Counter[str] = Counter()
    lost: list[tuple[str, str]] = []
    for runner in fleet.all:
        record_kind: str | None = None  # the kind of the log record the line belongs to
        for line in runner.log_path.read_text(errors="replace").splitlines():
            if LOG_RECORD_START.match(line):
                kind = record_kind = classify_log_line(line)
            elif record_kind is not None and record_kind.startswith("task failed"):
                continue  # the traceback of a task failure's own log record
            else:
                kind = classify_log_line(line)  # a traceback no log record announced: an error
            if kind is None:
                continue
            counts[f"log: {kind}"] += 1
            if kind.startswith("error"):
                findings.violate("runner logged an error", f"runner {runner.index}: {line}")
            if match := LOST_CLAIM.search(line):
                lost += [(match["runner"], i.strip()) for i in match["ids"].split(",")]
    return counts, lost


def classify_log_line(line: str) -> str | None:
    """The kind of a runner log line worth counting, or None."""
    for needle, kind in LOG_CATEGORIES.items():
        if needle in line:
            return kind
    if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
        return "error"
    if " WARNING " in line:
        return "other warning"
    return None


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (``--child`` is internal: one backend, in this process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", action="append", choices=BACKENDS, help="repeatable; default: all"
    )
    parser.add_argument("--invocations", type=int, default=INVOCATIONS)
    parser.add_argument("--seed", type=int, default=random.randrange(2**31))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--slow-fraction",
        type=float,
        default=0.0,
        help="fraction of runs that outlive the lease (1.5-2.5 s), to exercise lease renewal",
    )
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Entry point: the parent runs the children; a child soaks one backend."""
    options = parse_args(argv)
    if options.child is not None:
        return soak_one(options.child, options)
    return run_children(options.backend or list(BACKENDS), options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
