"""The demo's figures and verdicts, as pure functions over the calls the provider recorded.

A call's start and end are taken at the provider, on the same clock as the backend's (SQLite
uses ``time.time()`` on this machine; Redis the server's clock, on this machine too). They lie
inside the time the invocation held its slot, so calls in flight at once at the provider can
only undercount slots held at once: a count above the limit is a real violation.

Starts are a little later than the admissions that took the rate tokens, by a delay that varies
(thread scheduling, the HTTP request). A rate "M/P" is therefore checked over windows of
``P * (1 - JITTER_SHARE)``: exact enough to catch a rate that is not enforced (M calls would then
start within milliseconds), and never failing because one call reached the provider late.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taskgate import Limit
from taskgate.record import Rate

JITTER_SHARE = 0.2
"""The share of a rate's window allowed for the delay between an admission and its call."""


@dataclass(frozen=True)
class Call:
    """One call the provider recorded."""

    labels: dict[str, str]
    start: float
    end: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Call:
        """A call from the provider's JSON."""
        return cls(dict(data["labels"]), float(data["start"]), float(data["end"]))


@dataclass(frozen=True)
class Admission:
    """When one invocation of a tenant first waited for its limits (None: it never waited) and
    when it was first admitted (None: never), on the store's clock."""

    tenant: str
    parked_at: float | None
    admitted_at: float | None


@dataclass(frozen=True)
class Row:
    """One line of the report: a figure, the limit it is held against, and the verdict.

    ``ok`` is None for an informational row (times), which never fails the demo.
    """

    recipe: str
    check: str
    seen: str
    allowed: str
    ok: bool | None

    @property
    def verdict(self) -> str:
        """``ok``, ``VIOLATION`` or ``info``."""
        return "info" if self.ok is None else "ok" if self.ok else "VIOLATION"


# --- figures -----------------------------------------------------------------------------------


def max_in_flight(calls: Iterable[Call]) -> int:
    """The largest number of calls in progress at one instant (touching ends do not overlap)."""
    events = sorted([(c.start, 1) for c in calls] + [(c.end, -1) for c in calls])
    in_flight = peak = 0
    for _, delta in events:  # at equal times, -1 sorts first: an end before a start
        in_flight += delta
        peak = max(peak, in_flight)
    return peak


def max_starts_in_window(calls: Iterable[Call], window: float) -> int:
    """The largest number of calls that started within any window of ``window`` seconds."""
    starts = sorted(c.start for c in calls)
    peak = first = 0
    for last, start in enumerate(starts):
        while start - starts[first] >= window:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def by_label(calls: Iterable[Call], label: str) -> dict[str, list[Call]]:
    """The calls grouped by the value of one of their labels."""
    groups: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        groups[call.labels[label]].append(call)
    return dict(groups)


def ideal_seconds(calls: int, limit: Limit, work: float, chain: int = 1) -> float:
    """The shortest possible time for ``calls`` calls of ``work`` seconds under ``limit``.

    ``chain`` calls must in any case run one after the other (one key's calls under a limit of
    1 per key).
    """
    fastest = chain * work
    if limit.concurrency is not None:
        fastest = max(fastest, math.ceil(calls / limit.concurrency) * work)
    if limit.rate is not None:  # the last window's first start, then its work
        fastest = max(fastest, (math.ceil(calls / limit.rate.count) - 1) * limit.rate.period + work)
    return fastest


# --- rows --------------------------------------------------------------------------------------


def concurrency_row(recipe: str, what: str, calls: Sequence[Call], allowed: int) -> Row:
    """Calls in flight at once (at most ``allowed``)."""
    seen = max_in_flight(calls)
    return Row(recipe, f"{what}: calls at once", str(seen), str(allowed), seen <= allowed)


def per_key_concurrency_row(
    recipe: str, what: str, calls: Sequence[Call], label: str, allowed: int
) -> Row:
    """Calls in flight at once for any one value of ``label`` (at most ``allowed``)."""
    seen = max((max_in_flight(group) for group in by_label(calls, label).values()), default=0)
    return Row(
        recipe, f"{what}: calls at once per {label}", str(seen), str(allowed), seen <= allowed
    )


def rate_row(recipe: str, what: str, calls: Sequence[Call], rate: Rate, label: str = "") -> Row:
    """Starts within any window of the rate (per value of ``label`` when given)."""
    window = rate.period * (1 - JITTER_SHARE)
    groups = by_label(calls, label).values() if label else [calls]
    seen = max((max_starts_in_window(group, window) for group in groups), default=0)
    per = f" per {label}" if label else ""
    check = f"{what}: starts in any {window:g} s{per} (rate {rate})"
    return Row(recipe, check, str(seen), str(rate.count), seen <= rate.count)


def fairness_row(recipe: str, admissions: Sequence[Admission], small: str, allowed: int) -> Row:
    """Fairness for tenant ``small``: for each of its invocations that had to wait, how many
    invocations of other tenants were admitted while it waited (the largest, at most
    ``allowed``).

    First come, first served would make it wait for every invocation queued before its own: the
    figure in brackets counts the other tenants' invocations not yet admitted when the first of
    ``small``'s invocations began to wait.
    """
    if any(a.admitted_at is None for a in admissions):
        return Row(recipe, "fairness: an invocation was never admitted", "-", str(allowed), False)
    others = [a.admitted_at or 0.0 for a in admissions if a.tenant != small]
    waits = [
        (a.parked_at, a.admitted_at or 0.0)
        for a in admissions
        if a.tenant == small and a.parked_at is not None
    ]
    seen = max((sum(since < t < until for t in others) for since, until in waits), default=0)
    first_wait = min((since for since, _ in waits), default=math.inf)
    backlog = sum(t > first_wait for t in others)
    check = (
        f"fairness: other tenants admitted while tenant {small!r} waited "
        f"(first come, first served: {backlog})"
    )
    return Row(recipe, check, str(seen), str(allowed), seen <= allowed)


def time_row(recipe: str, seconds: float, ideal: float) -> Row:
    """The recipe's wall time against the ideal (informational: machines differ)."""
    return Row(recipe, "total time (ideal)", f"{seconds:.2f} s", f"{ideal:.2f} s", None)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a plain-text table."""
    header = ("recipe", "check", "seen", "allowed", "result")
    cells = [header, *((r.recipe, r.check, r.seen, r.allowed, r.verdict) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    align: list[Callable[[str, int], str]] = [str.ljust, str.ljust, str.rjust, str.rjust, str.ljust]
    return "\n".join(
        "  ".join(
            fit(cell, width) for fit, cell, width in zip(align, row, widths, strict=True)
        ).rstrip()
        for row in cells
    )
