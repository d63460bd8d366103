"""The soak's scheduling and control mix: delayed calls, timeouts and cancels, and their checks.

Driver side: :class:`Canceller`, a thread that cancels about ``CANCEL_SHARE`` of the registered
invocations while the soak runs, most of them among the latest registered (so that many are
running or parked when cancelled, some still scheduled), half of those picked while
``RUNNING``. Delayed calls are made by the driver itself (``soak.py``): about ``DELAY_SHARE``
of the calls, with an ``eta`` up to ``MAX_DELAY_SECONDS`` ahead.

Checks (pure functions over the store records, the interval lines and what the driver did):

- **cancels**: ``cancel()`` returned True exactly for the invocations that end ``CANCELLED``
  (a True answer for a running one means it ends ``CANCELLED`` whatever its body then does);
  an invocation nobody cancelled never ends ``CANCELLED`` and no body of it records being
  interrupted by a cancel; a cancelled one has no ``SUCCESS`` transition (checked with the
  others as "doubly successful"/"not exactly one final transition").
- **delays**: a delayed invocation stores its eta as ``scheduled_for`` and no run of it starts
  before that (the ``RUNNING`` transition's time, the store's clock, with
  ``EARLY_TOLERANCE_SECONDS`` of rounding); how late the first start came is a figure.
- **interruptions**: a hanging ``limit_timeout`` body always gets interrupted (no line ends
  ``not interrupted``), and no body is stopped by an exception other than a timeout or a
  cancel; how long after its timeout a timed-out body stopped is a figure.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from soak_checks import Findings, Interval

from taskgate.record import InvocationRecord
from taskgate.status import InvocationStatus

S = InvocationStatus
DELAY_SHARE = 0.1
MAX_DELAY_SECONDS = 1.5
CANCEL_SHARE = 0.03
CANCEL_EVERY_SECONDS = 0.03
CANCEL_WINDOW = 200
"""The canceller picks among the latest this many registered invocations."""
EARLY_TOLERANCE_SECONDS = 0.005
TIMEOUT_TOLERANCE_SECONDS = 0.05
"""A body measures its own start a little after the runner armed its timeout."""


@dataclass(frozen=True)
class CancelAttempt:
    """One ``cancel()`` the driver made: what it returned and the status read just before."""

    returned: bool
    status_before: InvocationStatus


class Canceller(threading.Thread):
    """Cancels random recent invocations of ``registered`` until stopped or its budget is spent.

    ``registered`` is the driver's list of :class:`soak.Registered` entries, appended to while
    this thread reads it (appends and indexing are atomic under the GIL).
    """

    def __init__(self, registered: Sequence[Any], rng: random.Random, budget: int) -> None:
        super().__init__(name="soak-canceller", daemon=True)
        self.registered = registered
        self.rng = rng
        self.budget = budget
        self.attempts: dict[str, CancelAttempt] = {}
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Stop and join the thread."""
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        try:
            while len(self.attempts) < self.budget and not self._stop_event.wait(
                CANCEL_EVERY_SECONDS
            ):
                self._cancel_one()
        except BaseException as exc:  # reported by the driver as a violation
            self.error = exc

    def _cancel_one(self) -> None:
        count = len(self.registered)
        if not count:
            return
        invocation = self.registered[self.rng.randrange(max(0, count - CANCEL_WINDOW), count)]
        invocation = invocation.invocation
        if invocation.invocation_id in self.attempts:
            return
        status = invocation.status
        # Half of the picks only cancel a running invocation: waiting ones are the majority.
        if status.is_final or (status is not S.RUNNING and self.rng.random() < 0.5):
            return
        self.attempts[invocation.invocation_id] = CancelAttempt(invocation.cancel(), status)


def check_cancels(
    records: Mapping[str, InvocationRecord | None],
    attempts: Mapping[str, CancelAttempt],
    intervals: Sequence[Interval],
    findings: Findings,
) -> None:
    """``cancel()`` True exactly for those that end CANCELLED; nobody else is cancelled."""
    counts = findings.counts
    for invocation_id, attempt in attempts.items():
        record = records.get(invocation_id)
        if record is None:
            continue  # reported as lost by the main checks
        before = "running" if attempt.status_before is S.RUNNING else "waiting"
        counts[f"cancel() of a {before} invocation: {attempt.returned}"] += 1
        cancelled = record.status is S.CANCELLED
        if attempt.returned and not cancelled:
            findings.violate(f"cancel() True but ended {record.status.value}", invocation_id)
        if not attempt.returned and cancelled:
            findings.violate("cancel() False but ended cancelled", invocation_id)
    for invocation_id, record in records.items():
        if record is not None and record.status is S.CANCELLED and invocation_id not in attempts:
            findings.violate("cancelled without a cancel", invocation_id)
    for line in intervals:
        if line.outcome == "cancelled" and line.invocation_id not in attempts:
            findings.violate(
                "body interrupted by a cancel of another invocation",
                f"{line.invocation_id}#{line.attempt}",
            )


def check_delays(
    records: Mapping[str, InvocationRecord | None],
    etas: Mapping[str, float],
    findings: Findings,
) -> list[float]:
    """Delayed invocations keep their eta and never start before it; returns the lateness of
    each first start (seconds after the eta), for the report."""
    lateness: list[float] = []
    for invocation_id, eta in etas.items():
        record = records.get(invocation_id)
        if record is None:
            continue
        stored = record.scheduled_for
        if stored is None or abs(stored - eta) > EARLY_TOLERANCE_SECONDS:
            findings.violate("scheduled_for differs from the eta", f"{invocation_id}: {stored}")
        if not record.history or record.history[0].status is not S.SCHEDULED:
            findings.violate("delayed call not registered SCHEDULED", invocation_id)
        starts = [t.timestamp for t in record.history if t.status is S.RUNNING]
        if starts and starts[0] < eta - EARLY_TOLERANCE_SECONDS:
            findings.violate(
                "delayed call started before its eta", f"{invocation_id}: {eta - starts[0]:.3f} s"
            )
        if starts:
            lateness.append(starts[0] - eta)
    return lateness


def check_interrupted_lines(
    intervals: Sequence[Interval], timeout_seconds: float, findings: Findings
) -> list[float]:
    """Hanging bodies are interrupted; no other exception stops a body. Returns, for each
    timed-out body, how long after its timeout it stopped (seconds)."""
    overrun: list[float] = []
    for line in intervals:
        where = f"{line.invocation_id}#{line.attempt}"
        if line.outcome == "not interrupted":
            findings.violate("timeout did not interrupt a hanging body", where)
        elif line.outcome.startswith("interrupted"):
            findings.violate(f"body stopped by an unexpected {line.outcome}", where)
        elif line.outcome == "timeout":
            findings.counts["timed-out bodies"] += 1
            overrun.append(line.end - line.start - timeout_seconds)
            if line.end - line.start < timeout_seconds - TIMEOUT_TOLERANCE_SECONDS:
                findings.violate("timed out before its timeout", where)
    return overrun


def percentile_text(values: Sequence[float], unit_scale: float = 1000.0) -> str:
    """``p50 X ms, p99 Y ms, max Z ms`` of ``values`` (seconds), or ``-`` when empty."""
    if not values:
        return "-"
    ordered = sorted(values)

    def at(pct: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]

    return (
        f"p50 {at(50) * unit_scale:.0f} ms, p99 {at(99) * unit_scale:.0f} ms, "
        f"max {ordered[-1] * unit_scale:.0f} ms"
    )
