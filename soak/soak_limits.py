"""The soak's checks of ``limit_stack``, the task with two limits (one keyed) and a rate.

``limit_stack`` lists ``soak-shared`` (``STACK_CONCURRENCY`` runs at once over all keys, and at
most ``STACK_RATE`` starts) and ``soak-keyed`` (one run at a time per ``key``). The per-key limit
is checked with the others (its lines carry ``limit`` 1 and keys ``s00``...); this module adds
the two checks of the shared limit:

- no more than ``STACK_CONCURRENCY`` recorded intervals of ``limit_stack`` open at one instant;
- no more than ``rate.count`` starts within any window of ``rate.period``. Starts are the
  ``RUNNING`` transitions of the store's histories (every claim counts, retries and runs later
  recovered included): they carry the admission's own time on the store's clock, so the check
  is exact up to ``RATE_TOLERANCE_SECONDS`` of rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from soak_checks import Findings, Interval, max_overlap

from taskgate import Limit
from taskgate.record import InvocationRecord, Rate
from taskgate.status import InvocationStatus

STACK_KEY_PREFIX = "s"
"""The keys of ``limit_stack`` calls (``s00``-``s49``): its lines are told apart by them."""
RATE_TOLERANCE_SECONDS = 0.001


def max_starts_in_window(starts: Iterable[float], window: float) -> int:
    """The largest number of ``starts`` within any half-open window ``[t, t + window)``."""
    ordered = sorted(starts)
    peak = first = 0
    for last, start in enumerate(ordered):
        while start - ordered[first] >= window:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def check_stack(
    intervals: Sequence[Interval],
    records: Mapping[str, InvocationRecord | None],
    task_id: str,
    shared: Limit,
    findings: Findings,
) -> None:
    """The shared limit of ``limit_stack``: runs at once, and starts in any window of its rate.

    Adds the report's line on it to ``findings.rows``.
    """
    concurrency, rate = shared.concurrency, shared.rate
    assert concurrency is not None and rate is not None, "soak-shared has both"
    stack = [i for i in intervals if i.key.startswith(STACK_KEY_PREFIX)]
    peak = max_overlap(stack)
    findings.counts["stack: peak runs at once"] = peak
    if peak > concurrency:
        findings.violate("limit_stack above soak-shared's concurrency", f"{peak} > {concurrency}")
    starts = [
        transition.timestamp
        for record in records.values()
        if record is not None and record.task_id == task_id
        for transition in record.history
        if transition.status is InvocationStatus.RUNNING
    ]
    window = rate.period - RATE_TOLERANCE_SECONDS
    in_window = max_starts_in_window(starts, window)
    findings.counts["stack: starts"] = len(starts)
    findings.counts["stack: peak starts in a window"] = in_window
    if in_window > rate.count:
        findings.violate(
            "limit_stack above soak-shared's rate",
            f"{in_window} starts within {rate.period:g} s > {rate.count}",
        )
    findings.rows.append(stack_row(findings, concurrency, rate))


def stack_row(findings: Findings, concurrency: int, rate: Rate) -> tuple[str, str]:
    """The report's line on the shared limit of ``limit_stack``."""
    counts = findings.counts
    return (
        "limit_stack",
        f"{counts['stack: peak runs at once']}/{concurrency} at once, "
        f"{counts['stack: peak starts in a window']}/{rate.count} starts in any "
        f"{rate.period:g} s ({counts['stack: starts']} starts)",
    )
