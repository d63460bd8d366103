"""The report's plots (matplotlib, in the ``report`` venv): end-to-end throughput and CPU per
task."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from costs import cpu_plot_data, cpu_size
from tables import Results, runs_of

CLIP_FACTOR = 3.0  # the CPU plot's axis fits totals up to this many times the median total


def plot_throughput(results: Results, path: Path) -> None:
    """Grouped bars: end-to-end tasks/s per system, one bar per batch size, run range as lines."""
    systems = results["settings"]["systems"]
    sizes = results["settings"]["e2e"]
    width = 0.8 / max(1, len(sizes))
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    for index, size in enumerate(sizes):
        key = f"e2e_{size}"
        xs, heights, lows, highs = [], [], [], []
        for position, name in enumerate(systems):
            values = runs_of(results, name, key)
            if not values:
                continue
            mid = statistics.median(values)
            xs.append(position + (index - (len(sizes) - 1) / 2) * width)
            heights.append(mid)
            lows.append(mid - min(values))
            highs.append(max(values) - mid)
        bars = ax.bar(xs, heights, width, label=f"{size:,} tasks", yerr=[lows, highs], capsize=3)
        ax.bar_label(bars, labels=[f"{h:,.0f}" for h in heights], fontsize=7, padding=2)
    ax.set_xticks(range(len(systems)), systems)
    ax.set_ylabel("tasks/s (enqueue all, then await every result)")
    title = (
        f"End-to-end throughput, 2 worker processes, one Redis "
        f"(median of {results['settings']['repetitions']})"
    )
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_cpu(results: Results, path: Path) -> None:
    """Stacked bars: CPU per task of each system, by process group (caller, workers, redis)."""
    systems, stacks = cpu_plot_data(results)
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    bottoms = [0.0] * len(systems)
    for label, values in stacks.items():
        ax.bar(range(len(systems)), values, 0.6, bottom=bottoms, label=label)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    # RQ and Pynenc cost 10-20x the others: on a scale that fits them, the rest would be a
    # sliver. The axis fits the systems within CLIP_FACTOR x the median total; taller bars are
    # cut at the top and carry their total.
    fitting = [t for t in bottoms if t <= CLIP_FACTOR * statistics.median(bottoms)] or bottoms
    top = 1.15 * max(fitting)
    ax.set_ylim(0, top)
    for position, total in enumerate(bottoms):
        if total <= top:
            ax.annotate(f"{total:,.0f}", (position, total), ha="center", va="bottom", fontsize=8)
        else:
            ax.annotate(
                f"{total:,.0f}\n(cut)",
                (position, top * 0.97),
                ha="center",
                va="top",
                fontsize=8,
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
            )
    ax.set_xticks(range(len(systems)), systems, fontsize=8)
    ax.set_ylabel("CPU µs per task (lower is better)")
    title = (
        f"CPU per task by process group, end to end, {cpu_size(results):,} no-ops "
        f"(median of {results['settings']['repetitions']})"
    )
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
