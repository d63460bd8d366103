"""The soak's report: what the driver saw (:class:`Run`), its figures and its violations.

``soak.py`` drives and checks; this module only holds the run's data and prints it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from soak_checks import DriverOutcome, Findings, Interval, peak_intervals
from soak_control import CancelAttempt
from soak_fleet import Fleet, StopReport

from taskgate.invocation import Invocation
from taskgate.record import InvocationRecord


@dataclass
class Registered:
    """One registered invocation and the call that made it."""

    invocation: Invocation[Any]
    task: str
    key: str


@dataclass
class Run:
    """What the driver saw during one soak run."""

    registered: list[Registered] = field(default_factory=list)
    outcomes: dict[str, DriverOutcome] = field(default_factory=dict)
    etas: dict[str, float] = field(default_factory=dict)
    """The eta of each delayed call, by invocation id."""
    cancels: dict[str, CancelAttempt] = field(default_factory=dict)
    canceller_error: BaseException | None = None
    registration_seconds: float = 0.0
    duration_seconds: float = 0.0
    kills: int = 0
    stop: StopReport = field(default_factory=StopReport)
    killer_error: BaseException | None = None


@dataclass
class Evidence:
    """What the checks looked at, kept to explain violations."""

    records: dict[str, InvocationRecord | None]
    intervals: list[Interval]


# --- the report -------------------------------------------------------------------------------


def report(backend: str, shape: str, run: Run, findings: Findings, fleet: Fleet) -> None:
    """Print the figures of the workload, then those of the checks."""
    for name, value in [
        ("backend", backend),
        *workload_rows(shape, run, findings, fleet),
        *check_rows(findings),
    ]:
        print(f"  {name:<18} {value}", flush=True)


def workload_rows(shape: str, run: Run, findings: Findings, fleet: Fleet) -> list[tuple[str, str]]:
    """What ran: sizes, durations, outcomes, retries, kills and recoveries."""
    counts = findings.counts
    duration = max(run.duration_seconds, 1e-9)
    final = counts["status success"] + counts["status failed"] + counts["status cancelled"]
    failures = {k.removeprefix("failed: "): v for k, v in counts.items() if k.startswith("failed")}
    return [
        ("runners", shape),
        ("invocations", f"{len(run.registered)} (registered in {run.registration_seconds:.1f} s)"),
        ("tasks", format_counts(Counter(entry.task for entry in run.registered))),
        ("duration", f"{run.duration_seconds:.1f} s (first registration -> all final)"),
        (
            "throughput",
            f"{final / duration:.0f} invocations/s, "
            f"{counts['runs (claims)'] / duration:.0f} runs/s",
        ),
        ("successes", str(counts["status success"])),
        ("failures", f"{counts['status failed']} {format_counts(failures)}"),
        (
            "cancelled",
            f"{counts['status cancelled']} ({counts['runs cancelled while running']} while "
            "running)",
        ),
        ("retries", str(counts["retries"])),
        ("runs (claims)", str(counts["runs (claims)"])),
        ("kills performed", f"{run.kills} (runner processes started: {len(fleet.all)})"),
        (
            "recoveries",
            f"{counts['recovered by lease']} runs recovered by lease "
            f"(num_recoveries sum {counts['recoveries (num_recoveries)']})",
        ),
        (
            "re-run bodies",
            f"{counts['bodies completed but re-run (runner died)']} completed but re-run "
            "because their runner died (informational)",
        ),
    ]


def check_rows(findings: Findings) -> list[tuple[str, str]]:
    """What the checks saw: peak concurrency, log lines, violations."""
    counts, violations = findings.counts, findings.violations
    peaks = sorted(findings.max_concurrency.items())
    logs = {k.removeprefix("log: "): v for k, v in counts.items() if k.startswith("log: ")}
    lost = sum(len(v) for k, v in violations.items() if k.startswith(("lost", "stuck")))
    return [
        ("max concurrency", ", ".join(f"limit {limit}: {peak}" for limit, peak in peaks)),
        *findings.rows,
        ("unlimited peak", f"{findings.unlimited_peak} no_limit runs at once (informational)"),
        ("interval lines", str(counts["interval lines"])),
        ("runner logs", format_counts(logs)),
        (
            "lost-claim warns",
            f"{counts['lost-claim warnings: spurious']} spurious (the run ended normally), "
            f"{counts['lost-claim: real']} real",
        ),
        ("violations", str(findings.violation_count)),
        ("lost", str(lost)),
        ("doubly-successful", str(len(violations.get("doubly successful", [])))),
    ]


def cancel_counts(counts: Counter[str]) -> dict[str, int]:
    """The ``cancel() of a ... invocation: True/False`` figures, by their tail."""
    prefix = "cancel() of a "
    return {k.removeprefix(prefix): v for k, v in counts.items() if k.startswith(prefix)}


def format_counts(counts: dict[str, int]) -> str:
    return "(" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")"


def print_violations(findings: Findings, evidence: Evidence) -> None:
    """Each kind of violation with its count, examples, and the story of the first example."""
    for kind, examples in sorted(findings.violations.items()):
        print(f"  VIOLATION {kind}: {len(examples)}, e.g. {examples[:3]}", flush=True)
        explain(examples[0], evidence)


def explain(example: str, evidence: Evidence) -> None:
    """Print the store history and interval lines behind one example of a violation."""
    records, intervals = evidence.records, evidence.intervals
    if example.startswith("key "):
        key = example.split()[1].rstrip(":")
        for interval in peak_intervals([i for i in intervals if i.key == key]):
            print(f"      {interval}", flush=True)
        return
    invocation_id = example.split("#", maxsplit=1)[0]
    record = records.get(invocation_id)
    if record is None:
        return
    print(
        f"      {invocation_id} status {record.status.value} attempt {record.attempt} "
        f"retries {record.num_retries} recoveries {record.num_recoveries}",
        flush=True,
    )
    for transition in record.history:
        print(
            f"      {transition.timestamp:.6f} {transition.status.value:<22} "
            f"{transition.runner_id or '-'}",
            flush=True,
        )
    for interval in intervals:
        if interval.invocation_id == invocation_id:
            print(f"      line {interval}", flush=True)
