"""What the report's sections share: the rows of the main table, medians over runs, markdown
tables and ratios. Pure functions of ``results.json`` (no matplotlib), so they are unit-tested.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True)
class Metric:
    """One row of the results table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    fmt: str

    def render(self, value: float | None) -> str:
        return "n/a" if value is None else format(value, self.fmt)


def metrics(settings: dict[str, Any]) -> list[Metric]:
    """The rows, in order, for the sizes the run used."""
    rows = [
        Metric(f"e2e_{n}", f"(a) end to end, {n:,} no-ops", "tasks/s", True, ",.0f")
        for n in settings["e2e"]
    ]
    trips = settings["round_trips"]
    rows += [
        Metric("rt_p50", f"(b) {trips} round trips, p50", "ms", False, ".2f"),
        Metric("rt_p99", f"(b) {trips} round trips, p99", "ms", False, ".2f"),
        Metric(
            "enqueue_rate",
            f"(c) enqueue {settings['enqueue']:,}, no worker",
            "calls/s",
            True,
            ",.0f",
        ),
        Metric(
            "keyed_wall", f"(d) per key, {settings['keyed_calls']} x 10 ms, wall", "s", False, ".2f"
        ),
    ]
    return rows


def runs_of(results: Results, system: str, key: str) -> list[float]:
    """The value of ``key`` in each run of ``system`` that produced it, in repetition order."""
    runs = sorted(results["runs"], key=lambda run: run["repetition"])
    return [
        run["figures"][key] for run in runs if run["system"] == system and key in run["figures"]
    ]


def is_variant(results: Results, system: str) -> bool:
    """Whether ``system`` is another worker shape of a system rather than a system of its own."""
    return bool(results["systems"].get(system, {}).get("variant_of"))


def concurrency(results: Results, system: str) -> int:
    """How many tasks the system's workers run at a time."""
    return int(results["systems"].get(system, {}).get("concurrency", 2))


def median(results: Results, system: str, key: str) -> float | None:
    values = runs_of(results, system, key)
    return statistics.median(values) if values else None


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A markdown table; ``align`` has one of ``l``/``r`` per column."""
    marks = {"l": ":---", "r": "---:"}
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(peer: float | None, base: float | None) -> str:
    if peer is None or base is None or base == 0:
        return "n/a"
    return f"{peer / base:.2f}x"


def peer_beats(metric: Metric, peer: float | None, base: float | None) -> bool:
    if peer is None or base is None:
        return False
    return peer > base if metric.higher_is_better else peer < base


def advantage(metric: Metric, winner: float, other: float) -> float:
    """How many times better ``winner`` is than ``other`` (always >= 1)."""
    if metric.higher_is_better:
        return winner / other if other else float("inf")
    return other / winner if winner else float("inf")
