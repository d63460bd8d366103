"""The checks of the soak test, as pure functions over the intervals file and the store records.

Nothing here talks to a backend or a process: the driver hands in the interval lines written by
the task bodies, the stored :class:`~taskgate.record.InvocationRecord` of every registered
invocation and what ``get_result`` returned, and gets back a :class:`Findings` with the figures
and every violation found (with a few example invocation ids per kind).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taskgate.record import InvocationRecord, Transition
from taskgate.status import InvocationStatus

S = InvocationStatus
EXAMPLES_PER_KIND = 3
UNLIMITED = 0
"""The ``limit`` of a line whose task has no running concurrency control: no limit to check."""

# What a body's line says for each outcome a runner may report for that attempt. A timed-out
# body (``limit_timeout``) is retried, or fails once its retries are used up. A run that ends
# CANCELLED may have any line, or none: the cancel may land before, in or after the body.
LINE_OUTCOMES_FOR = {
    S.SUCCESS: frozenset({"ok"}),
    S.RETRY: frozenset({"retry", "timeout"}),
    # retries exhausted, a non-retryable error, or a hanging body its timeout did not stop
    # (that line is a violation of its own, see check_interrupted_lines)
    S.FAILED: frozenset({"retry", "fatal", "timeout", "not interrupted"}),
}
FINAL_STATUSES = (S.SUCCESS, S.FAILED, S.CANCELLED)
"""The final statuses a soak invocation may end in (CANCELLED only if the driver cancelled
it: judged by ``soak_control.check_cancels``)."""


@dataclass(frozen=True)
class Interval:
    """One line of the intervals file: a body that ran to its end."""

    invocation_id: str
    attempt: int
    key: str
    limit: int
    pid: int
    start: float
    end: float
    outcome: str


@dataclass(frozen=True)
class AttemptOutcome:
    """What the store's history says happened to one claim (attempt) of an invocation.

    ``status`` is the transition that ended the run (``SUCCESS``, ``FAILED``, ``RETRY``, or
    ``REGISTERED`` when recovered or handed back); ``None`` while the history ends ``RUNNING``.
    ``claimed_by`` is the runner that claimed it, ``ended_by`` the runner that reported the end
    (``None`` for the store's own recovery).
    """

    attempt: int
    claimed_by: str | None
    status: InvocationStatus | None
    ended_by: str | None


@dataclass(frozen=True)
class DriverOutcome:
    """What ``get_result`` gave the driver: a value, an exception type name, or a timeout."""

    value: object = None
    error: str | None = None
    timed_out: bool = False


@dataclass
class Findings:
    """Figures and violations of one soak run."""

    counts: Counter[str] = field(default_factory=Counter)
    max_concurrency: dict[int, int] = field(default_factory=dict)
    unlimited_peak: int = 0
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rows: list[tuple[str, str]] = field(default_factory=list)
    """Extra report lines ``(name, value)`` of checks kept in modules of their own."""

    def violate(self, kind: str, example: str) -> None:
        """Record one violation of ``kind`` (``example`` names the invocation or key)."""
        self.violations[kind].append(example)

    @property
    def violation_count(self) -> int:
        """How many violations of any kind were found."""
        return sum(len(examples) for examples in self.violations.values())


# --- reading -----------------------------------------------------------------------------------


def load_intervals(path: Path, findings: Findings) -> list[Interval]:
    """The lines of the intervals file; a line that does not parse is a violation (torn write).

    A line written twice (an interrupted body retries its write: see ``soak_app``) is read once
    and counted.
    """
    intervals: list[Interval] = []
    if not path.exists():
        return intervals
    seen: set[bytes] = set()
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if raw in seen:
            findings.counts["interval lines written twice (interrupted write)"] += 1
            continue
        seen.add(raw)
        try:
            data = json.loads(raw)
            intervals.append(
                Interval(
                    data["id"],
                    int(data["attempt"]),
                    data["key"],
                    int(data["limit"]),
                    int(data["pid"]),
                    float(data["start"]),
                    float(data["end"]),
                    data["outcome"],
                )
            )
        except (ValueError, KeyError, TypeError):
            findings.violate("malformed interval line", f"line {number}: {raw[:120]!r}")
    return intervals


def runner_pid(runner_id: str | None) -> int | None:
    """The pid inside a runner id ``host-pid-random`` (hosts may contain dashes)."""
    if runner_id is None:
        return None
    try:
        return int(runner_id.rsplit("-", 2)[1])
    except (IndexError, ValueError):
        return None


def attempt_outcomes(history: Sequence[Transition]) -> list[AttemptOutcome]:
    """Split a history into its runs: the k-th ``RUNNING`` transition is attempt k."""
    outcomes: list[AttemptOutcome] = []
    claimed_by: str | None = None
    running = False
    for transition in history:
        if transition.status is S.RUNNING:
            if running:  # two claims in a row without an end: record the first as open
                outcomes.append(AttemptOutcome(len(outcomes) + 1, claimed_by, None, None))
            claimed_by, running = transition.runner_id, True
        elif running:
            outcomes.append(
                AttemptOutcome(
                    len(outcomes) + 1, claimed_by, transition.status, transition.runner_id
                )
            )
            running = False
    if running:
        outcomes.append(AttemptOutcome(len(outcomes) + 1, claimed_by, None, None))
    return outcomes


# --- check 1: no key above its limit ----------------------------------------------------------


def max_overlap(intervals: Iterable[Interval]) -> int:
    """The largest number of intervals open at one instant (touching ends do not overlap)."""
    events = sorted(
        [(i.start, 1) for i in intervals] + [(i.end, -1) for i in intervals],
        key=lambda event: (event[0], event[1]),  # at equal times, ends before starts
    )
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


def peak_intervals(intervals: Sequence[Interval]) -> list[Interval]:
    """The intervals open together at the first instant of peak overlap (for explanations)."""
    peak = max_overlap(intervals)
    for candidate in sorted(intervals, key=lambda i: i.start):
        moment = candidate.start
        open_then = [i for i in intervals if i.start <= moment < i.end]
        if len(open_then) == peak:
            return open_then
    return []


def check_limits(intervals: Sequence[Interval], findings: Findings) -> None:
    """Check 1: per key, overlapping recorded intervals never exceed the key's running_limit.

    Runs of a task without a limit (``UNLIMITED``) are not checked; their peak over all keys is
    kept as a figure, to show that they did run side by side.
    """
    by_key: dict[tuple[str, int], list[Interval]] = defaultdict(list)
    unlimited: list[Interval] = []
    for interval in intervals:
        if interval.limit == UNLIMITED:
            unlimited.append(interval)
        else:  # by limit too: a key shared by two limit classes must not mix their runs
            by_key[interval.key, interval.limit].append(interval)
    findings.unlimited_peak = max_overlap(unlimited)
    for (key, limit), runs in sorted(by_key.items()):
        peak = max_overlap(runs)
        findings.max_concurrency[limit] = max(findings.max_concurrency.get(limit, 0), peak)
        if peak > limit:
            findings.violate("key above its running_limit", f"key {key}: {peak} > {limit}")


# --- checks 2-4: every invocation final once, successes once, nothing lost ------------------


def check_invocations(
    records: Mapping[str, InvocationRecord | None],
    intervals: Sequence[Interval],
    driver: Mapping[str, DriverOutcome],
    findings: Findings,
) -> None:
    """Checks 2, 3 and 4 for every registered invocation, plus the run-by-run cross-check."""
    lines: dict[str, dict[int, list[Interval]]] = defaultdict(lambda: defaultdict(list))
    for interval in intervals:
        lines[interval.invocation_id][interval.attempt].append(interval)
    for invocation_id, record in records.items():
        if record is None:
            findings.violate("lost (not in the store)", invocation_id)
            continue
        _count_figures(record, findings)
        _check_final_once(record, findings)
        _check_runs(record, lines.get(invocation_id, {}), findings)
        _check_driver(record, driver.get(invocation_id), findings)
    for invocation_id in set(lines) - set(records):
        findings.violate("interval of an unknown invocation", invocation_id)


def check_recoveries(
    records: Mapping[str, InvocationRecord | None], killed_pids: set[int], findings: Findings
) -> None:
    """A run the store recovered by lease must have been claimed by a runner that was killed.

    The claim of a runner that stayed alive must never expire: if it does, another runner may
    run the invocation while the first is still executing it.
    """
    for record in records.values():
        if record is None:
            continue
        for run in attempt_outcomes(record.history):
            if run.status is not S.REGISTERED or run.ended_by is not None:
                continue
            if runner_pid(run.claimed_by) not in killed_pids:
                findings.violate(
                    "claim of a live runner recovered", f"{record.invocation_id}#{run.attempt}"
                )


def classify_lost_claims(
    lost: Iterable[tuple[str, str]],
    records: Mapping[str, InvocationRecord | None],
    findings: Findings,
) -> None:
    """Sort the heartbeat's "lost the claim" warnings ``(runner_id, invocation_id)``.

    When the runner's own run of the invocation ended with an outcome that runner reported,
    nothing was lost: the warning raced with the report (counted as spurious). Otherwise the
    claim really was taken away from a live runner (counted; :func:`check_recoveries` judges).
    """
    for runner_id, invocation_id in lost:
        record = records.get(invocation_id)
        runs = attempt_outcomes(record.history) if record is not None else []
        reported = any(
            run.claimed_by == runner_id and run.ended_by == runner_id
            for run in runs
            if run.status in LINE_OUTCOMES_FOR
        )
        findings.counts["lost-claim warnings: spurious" if reported else "lost-claim: real"] += 1


def _count_figures(record: InvocationRecord, findings: Findings) -> None:
    counts = findings.counts
    counts[f"status {record.status.value}"] += 1
    counts["retries"] += record.num_retries
    counts["runs (claims)"] += record.attempt
    counts["recoveries (num_recoveries)"] += record.num_recoveries
    for outcome in attempt_outcomes(record.history):
        if outcome.status is S.REGISTERED:
            kind = "recovered by lease" if outcome.ended_by is None else "handed back"
            counts[kind] += 1
    if record.status is S.FAILED and _ended_by_recovery(record):
        counts["failed: runner lost (max_recoveries)"] += 1


def _ended_by_recovery(record: InvocationRecord) -> bool:
    """A final invocation failed by ``recover`` (its runners kept dying), not by a runner."""
    return bool(record.history) and record.history[-1].runner_id is None


def _check_final_once(record: InvocationRecord, findings: Findings) -> None:
    """Checks 2 and 4: SUCCESS, FAILED or CANCELLED, exactly one final transition, and it is
    the last."""
    invocation_id = record.invocation_id
    if not record.status.is_final:
        findings.violate(f"stuck in {record.status.value}", invocation_id)
        return
    if record.status not in FINAL_STATUSES:
        findings.violate(f"unexpected final status {record.status.value}", invocation_id)
    finals = [t for t in record.history if t.status.is_final]
    successes = [t for t in finals if t.status is S.SUCCESS]
    if len(successes) > 1:
        findings.violate("doubly successful", invocation_id)
    if len(finals) != 1 or not record.history[-1].status.is_final:
        findings.violate("not exactly one final transition", invocation_id)
    retries = sum(1 for t in record.history if t.status is S.RETRY)
    if retries != record.num_retries:
        findings.violate("num_retries differs from RETRY transitions", invocation_id)


def _check_runs(
    record: InvocationRecord,
    lines: Mapping[int, list[Interval]],
    findings: Findings,
) -> None:
    """Check 3 and the cross-check of every run against the interval lines.

    - the store's attempt is the number of claims in its history;
    - an outcome a runner reported (SUCCESS, RETRY, FAILED) has exactly one line for that
      attempt, from that runner's pid, with a matching outcome;
    - a line for a run the store recovered is a body that completed but was re-run because its
      runner died (informational);
    - no line names an attempt the store never handed out.
    """
    invocation_id = record.invocation_id
    runs = attempt_outcomes(record.history)
    if record.attempt != len(runs):
        findings.violate("attempt differs from claims in history", invocation_id)
    for run in runs:
        found = lines.get(run.attempt, [])
        if len(found) > 1:
            findings.violate("one attempt ran twice", f"{invocation_id}#{run.attempt}")
        if found and runner_pid(run.claimed_by) not in {line.pid for line in found}:
            findings.violate("line from another process", f"{invocation_id}#{run.attempt}")
        if run.status is S.REGISTERED:
            findings.counts["bodies completed but re-run (runner died)"] += int(bool(found))
            continue
        _check_reported_run(invocation_id, run, found, findings)
    for attempt in sorted(a for a in lines if not 1 <= a <= len(runs)):
        findings.violate("line for an attempt never claimed", f"{invocation_id}#{attempt}")


def _check_reported_run(
    invocation_id: str, run: AttemptOutcome, found: list[Interval], findings: Findings
) -> None:
    """A run whose end a runner reported must have its line, with the same outcome."""
    if run.status is None or run.ended_by is None:
        return  # still open (reported as stuck), or failed by recovery: no line expected
    if run.status is S.CANCELLED:
        findings.counts["runs cancelled while running"] += 1
        return  # interrupted anywhere (or ended just before the cancel): any line, or none
    expected = LINE_OUTCOMES_FOR.get(run.status)
    if expected is None:
        findings.violate(f"run ended as {run.status.value}", f"{invocation_id}#{run.attempt}")
    elif not found:
        findings.violate(
            f"{run.status.value} reported without a completed body",
            f"{invocation_id}#{run.attempt}",
        )
    elif not any(line.outcome in expected for line in found):
        findings.violate(
            f"{run.status.value} reported for a body that ended {found[0].outcome}",
            f"{invocation_id}#{run.attempt}",
        )


def _check_driver(
    record: InvocationRecord, outcome: DriverOutcome | None, findings: Findings
) -> None:
    """What ``get_result`` returned agrees with the store: value and attempt, or the error."""
    invocation_id = record.invocation_id
    if outcome is None or outcome.timed_out:
        findings.violate("get_result timed out", invocation_id)
        return
    if record.status is S.SUCCESS:
        if outcome.error is not None or not isinstance(outcome.value, tuple):
            findings.violate("SUCCESS but get_result raised", invocation_id)
        elif outcome.value[1] != record.attempt:
            findings.violate("result from another attempt than the stored one", invocation_id)
    elif record.status is S.FAILED:
        if outcome.error is None:
            findings.violate("FAILED but get_result returned a value", invocation_id)
        else:
            findings.counts[f"failed: {outcome.error}"] += 1
    elif record.status is S.CANCELLED and outcome.error != "InvocationCancelledError":
        findings.violate(
            "CANCELLED but get_result did not raise InvocationCancelledError", invocation_id
        )
