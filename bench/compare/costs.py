"""The report's load-independent sections: CPU per task, Redis memory per invocation, the
backlog drain, taskgate's own rows (hot key, limits, delays, priorities), the embedded table, the
issue's checks and the capacity model.

Pure functions of ``results.json`` returning markdown ('' when the run has nothing for them), so
that they are unit-tested without matplotlib.
"""

from __future__ import annotations

import statistics
from typing import Any

from tables import Metric, Results, is_variant, median, runs_of, table

GROUPS = (("caller", "caller"), ("workers", "workers"), ("redis", "redis-server"))
# Targets of issue 16, for the "met" columns.
E2E_TARGET = 3.0  # taskgate at least 3x the best peer end to end
HOT_KEY_TARGET = 0.8
LIMITS_TARGET = 0.7
ADDED_AT_MOST = 0.10  # delays and priorities add at most 10% to the run: rate >= 1/1.1


def cpu_size(results: Results) -> int:
    """The end-to-end size whose CPU per task the tables show: the largest of the run."""
    return int(max(results["settings"]["e2e"]))


def systems_with(results: Results, key: str) -> list[str]:
    """The run's systems that have ``key`` in at least one run, in the run's order."""
    return [s for s in results["settings"]["systems"] if runs_of(results, s, key)]


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def paired_ratios(results: Results, system: str, top: str, bottom: str) -> list[float]:
    """``top / bottom`` within each run of ``system`` that has both, in repetition order."""
    runs = sorted(results["runs"], key=lambda run: run["repetition"])
    return [
        run["figures"][top] / run["figures"][bottom]
        for run in runs
        if run["system"] == system
        and run["figures"].get(top) is not None
        and run["figures"].get(bottom)
    ]


def run_metrics(results: Results) -> list[Metric]:
    """The load-independent figures listed run by run in "Every run" (where a system has them)."""
    prefix = f"cpu_e2e_{cpu_size(results)}"
    return [
        Metric(f"{prefix}_total", "CPU per task, total (a)", "µs", False, ",.0f"),
        Metric(f"{prefix}_redis", "CPU per task, redis-server (a)", "µs", False, ",.0f"),
        Metric("mem_queued_b", "Redis B per queued invocation", "B", False, ",.0f"),
        Metric("mem_finished_b", "Redis B per finished invocation", "B", False, ",.0f"),
        Metric("backlog_rate", "backlog drain (e)", "tasks/s", True, ",.0f"),
    ]


# --- CPU per task --------------------------------------------------------------------------------


def cpu_section(results: Results, image: str) -> str:
    """Microseconds of CPU per task by process group, end to end, with the stacked-bar plot."""
    size = cpu_size(results)
    prefix = f"cpu_e2e_{size}"
    systems = systems_with(results, f"{prefix}_total")
    if not systems:
        return ""
    base = median(results, "taskgate", f"{prefix}_total")
    rows = []
    for name in systems:
        cells = [fmt(median(results, name, f"{prefix}_{group}")) for group, _ in GROUPS]
        total = median(results, name, f"{prefix}_total")
        relative = f"{total / base:.2f}x" if total is not None and base else "n/a"
        rows.append([name, *cells, f"**{fmt(total)}**", relative])
    header = ["CPU per task (µs)", *(label for _, label in GROUPS), "total", "total / taskgate's"]
    return (
        "## CPU per task\n\n"
        f"CPU time per task of each process group over workload (a) with {size:,} no-ops "
        "(first enqueue to last result), from `/proc/<pid>/stat` (`utime + stime`, clock "
        "ticks) sampled before and after: **caller** is the agent process (enqueueing and "
        "awaiting), **workers** every process in the workers' process groups (pool children "
        "included, and children they reaped), **redis-server** the private server. Medians "
        "of the runs, each column on its own (so a total may differ from the sum of its "
        "medians by a little). Unlike the rates, these hardly depend on the machine's load: "
        "the same work costs the same CPU.\n\n"
        + table(header, rows, "lrrrrr")
        + f"\n\n![CPU per task by process group]({image})\n\n"
        "The plot's axis fits the systems within 3x the median total; taller bars are cut and "
        "carry their total."
    )


# --- Redis memory --------------------------------------------------------------------------------


def memory_section(results: Results) -> str:
    """Bytes of Redis ``used_memory`` per queued and per finished invocation."""
    systems = systems_with(results, "mem_queued_b")
    if not systems:
        return ""
    calls = results["settings"].get("memory_calls", 0)
    backlog = results["settings"].get("backlog", 0)
    rows = []
    for name in systems:
        row = [
            name,
            fmt(median(results, name, "mem_queued_b")),
            fmt(median(results, name, "mem_finished_b")),
        ]
        if backlog:
            row.append(fmt(median(results, name, "backlog_mem_queued_b")))
        rows.append(row)
    header = ["system", f"B per queued ({calls:,})", f"B per finished ({calls:,})"]
    if backlog:
        header.append(f"B per queued ({backlog:,}, backlog (e))")
    return (
        "## Redis memory per invocation\n\n"
        f"After `FLUSHALL`, {calls:,} awaited no-ops are enqueued with no worker running: "
        "the growth of `used_memory` divided by the calls is the cost of a **queued** "
        "invocation. Then the workers start and run them; once they are done, "
        f"{calls:,} more calls are made and awaited, and the growth over that second batch "
        "divided by its calls is a **finished** invocation with its result kept as the "
        "system keeps it by default (the workers' records about themselves are in neither "
        "figure). The caller reads every result without deleting it (Huey's read deletes by "
        "default, so it reads with `preserve=True`). Medians of the runs."
        + ("" if not backlog else " The last column is the queued figure at the backlog's size.")
        + "\n\n"
        + table(header, rows, "l" + "r" * (len(header) - 1))
    )


# --- the backlog drain ---------------------------------------------------------------------------


def backlog_section(results: Results) -> str:
    """Tasks/s draining a backlog of ``settings.backlog`` no-ops, or why a system skipped it."""
    settings = results["settings"]
    calls = settings.get("backlog", 0)
    if not calls:
        return ""
    budget = settings.get("backlog_budget", 0)
    rows = []
    for name in settings["systems"]:
        rates = runs_of(results, name, "backlog_rate")
        skipped = runs_of(results, name, "backlog_skipped_est_s")
        if rates:
            rows.append(
                [
                    name,
                    f"**{fmt(statistics.median(rates))}**",
                    fmt(median(results, name, "backlog_enqueue_rate")),
                    fmt(median(results, name, "cpu_backlog_redis")),
                    fmt(median(results, name, "cpu_backlog_total")),
                    str(len(rates)),
                ]
            )
        elif skipped:
            estimate = statistics.median(skipped)
            why = f"skipped: about {estimate / 60:.0f} min at its rates" if estimate else "skipped"
            rows.append([name, why, "", "", "", "0"])
        else:
            rows.append([name, "not run (an earlier workload failed)", "", "", "", "0"])
    header = [
        "system",
        "drain tasks/s",
        "enqueue calls/s",
        "redis-server µs/task",
        "total µs/task",
        "runs",
    ]
    reps = settings.get("backlog_repetitions", 1)
    return (
        f"## Backlog drain (e): {calls:,} queued no-ops\n\n"
        f"With the workers stopped, {calls:,} no-ops are enqueued; then the workers start and "
        "the caller awaits every result: tasks/s from the workers' start (their start-up "
        "included, as after restarting a fleet) to the last result, and the CPU per task of "
        f"the drain. It runs in the first {reps} repetition(s) only, to keep the whole run "
        f"bounded, and a system whose own (c) and (a) rates in that run put it above {budget:.0f} "
        "s skips it.\n\n" + table(header, rows, "lrrrrr")
    )


# --- taskgate's own rows -------------------------------------------------------------------------


def _feature_row(
    results: Results, label: str, top: str, bottom: str, target: float
) -> list[str] | None:
    """One row: ``top`` against its baseline ``bottom`` (keys of tasks/s figures; the CPU per
    task of each is under ``cpu_<key>_<group>``)."""
    ratios = paired_ratios(results, "taskgate", top, bottom)
    if not ratios:
        return None
    value = statistics.median(ratios)
    met = "yes" if value >= target else "**no**"
    cpu_top, cpu_bottom = f"cpu_{top}", f"cpu_{bottom}"
    cpu_ratios = paired_ratios(results, "taskgate", f"{cpu_bottom}_total", f"{cpu_top}_total")
    return [
        label,
        fmt(median(results, "taskgate", top)),
        fmt(median(results, "taskgate", bottom)),
        f"{value:.2f}x",
        f">= {target:.2f}x",
        met,
        f"{statistics.median(cpu_ratios):.2f}x" if cpu_ratios else "n/a",
        fmt(median(results, "taskgate", f"{cpu_top}_redis")),
        fmt(median(results, "taskgate", f"{cpu_top}_total")),
    ]


def taskgate_rows_section(results: Results) -> str:
    """The hot-key drain and the feature rows, each against its uncontrolled baseline."""
    settings = results["settings"]
    features, hot = settings.get("feature_calls", 0), settings.get("hot_calls", 0)
    least = 1 / (1 + ADDED_AT_MOST)
    specs = [
        (f"hot key: KEYS task, ONE key, {hot:,} drained", "hot_hot_key", "hot_uncontrolled",
         HOT_KEY_TARGET),
        (f"two limits (one keyed, 100 keys), {features:,} end to end", "feat_limits2",
         "feat_plain", LIMITS_TARGET),
        (f"delayed calls (`delay=0.001`), {features:,} end to end", "feat_delayed", "feat_plain",
         least),
        (f"priorities 0-9, {features:,} end to end", "feat_priority", "feat_plain", least),
    ]  # fmt: skip
    rows = [row for spec in specs if (row := _feature_row(results, *spec)) is not None]
    if not rows:
        return ""
    plain_redis = median(results, "taskgate", "cpu_feat_plain_redis")
    plain_total = median(results, "taskgate", "cpu_feat_plain_total")
    header = [
        "taskgate workload",
        "tasks/s",
        "baseline tasks/s",
        "ratio (median of runs)",
        "target",
        "met",
        "CPU ratio (baseline µs / these µs)",
        "redis-server µs/task",
        "total µs/task",
    ]
    return (
        "## taskgate's controls and options, against an uncontrolled task\n\n"
        "taskgate only (the peers lack these or the comparison would not be like for like). "
        "The ratio is taken within each run, then the median. **Hot key**: both worker "
        "processes are first held by a gate task; the backlog is enqueued behind them; the "
        "clock runs from releasing the gates to the last result, once for the uncontrolled "
        "no-op (the baseline) and once for a `running_concurrency=KEYS` no-op whose calls all "
        "have the same key, so one runs at a time and each admission waits for the previous "
        "release. **Two limits, delays, priorities**: as (a), with the plain no-op as the "
        "baseline (run first and last, the mean of the two); `delay=0` would be a plain "
        "call, so the delayed row uses 1 ms and every call goes through `SCHEDULED`."
        " The priority row cycles through priorities 0 to 9 call by call. Targets from "
        'issue 16 ("adds at most 10%" '
        f"is a ratio of at least {least:.2f}). On a machine shared with other work the rates "
        "move with its load; the **CPU ratio** (the baseline's total CPU per task over the "
        "row's, per run, then the median) does not, and reads against the same target when the "
        "cores are the bottleneck. The plain call's CPU per task in these runs: "
        f"redis-server {fmt(plain_redis)} µs, total {fmt(plain_total)} µs.\n\n"
        + table(header, rows, "lrrrrlrrr")
    )


# --- the embedded table --------------------------------------------------------------------------


def number(value: object) -> str:
    """A figure of the embedded rows, with as many decimals as its size warrants."""
    if not isinstance(value, int | float):
        return str(value)
    size = abs(value)
    return format(value, ",.0f" if size >= 100 else ".1f" if size >= 10 else ".2f")


def embedded_section(results: Results) -> str:
    """The rows of ``bench/embedded.py`` (kept under ``embedded``) as one table: a line per
    workload and unit, a column per system and configuration, in the order they came."""
    if "embedded_error" in results:
        return f"## Embedded\n\n`bench/embedded.py` failed in this run: {results['embedded_error']}"
    data: dict[str, Any] | None = results.get("embedded")
    if not data or not data.get("rows"):
        return ""
    columns: dict[tuple[str, str], None] = {}
    lines: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
    for row in data["rows"]:
        column = (str(row.get("system", "")), str(row.get("config", "")))
        line = (str(row.get("workload", "")), str(row.get("unit", "")))
        columns.setdefault(column)
        lines.setdefault(line, {})[column] = number(row.get("value"))
    header = ["workload", "unit", *(f"{system} {config}".strip() for system, config in columns)]
    rows = [
        [workload, unit, *(cells.get(column, "") for column in columns)]
        for (workload, unit), cells in lines.items()
    ]
    method = str(data.get("method", "")).strip()
    return (
        "## Embedded: taskgate SQLite and memory against Huey's\n\n"
        "From `bench/embedded.py` (run by `make bench-compare` after the Redis workloads)."
        + (f"\n\n{method}" if method else "")
        + "\n\n"
        + table(header, rows, "ll" + "r" * len(columns))
    )


# --- the issue's checks and the capacity model ---------------------------------------------------


def issue_checks(results: Results) -> list[str]:
    """Lines for "Where taskgate stands": end to end against the best peer (target 3x) at each
    size, and the p50 round trip against every peer's."""
    systems = [s for s in results["settings"]["systems"] if not is_variant(results, s)]
    peers = [s for s in systems if s != "taskgate"]
    if "taskgate" not in systems or not peers:
        return []
    lines = []
    for size in results["settings"]["e2e"]:
        ours = median(results, "taskgate", f"e2e_{size}")
        theirs = {p: v for p in peers if (v := median(results, p, f"e2e_{size}")) is not None}
        if ours is None or not theirs:
            continue
        best = max(theirs, key=lambda p: theirs[p])
        factor = ours / theirs[best]
        met = "met" if factor >= E2E_TARGET else "**not met**"
        lines.append(
            f"- Check, end to end {size:,}: taskgate / best peer ({best}) = **{factor:.2f}x** "
            f"(target >= {E2E_TARGET:.0f}x: {met})."
        )
    ours = median(results, "taskgate", "rt_p50")
    theirs = {p: v for p in peers if (v := median(results, p, "rt_p50")) is not None}
    if ours is not None and theirs:
        best = min(theirs, key=lambda p: theirs[p])
        below = "below every peer's: met" if ours < theirs[best] else "**not below every peer's**"
        lines.append(
            f"- Check, p50 round trip: taskgate {ours:.2f} ms, lowest peer {best} "
            f"{theirs[best]:.2f} ms ({theirs[best] / ours:.2f}x taskgate's): {below}."
        )
    return lines


def capacity_section(results: Results) -> str:
    """Tasks/s one Redis core sustains (1e6 / redis-server µs per task), and the sharding note."""
    size = cpu_size(results)
    key = f"cpu_e2e_{size}_redis"
    systems = systems_with(results, key)
    if "taskgate" not in systems:
        return ""
    rows = []
    for name in systems:
        micros = median(results, name, key)
        rows.append([name, fmt(micros), fmt(1e6 / micros if micros else None)])
    ours = median(results, "taskgate", key) or 0.0
    ceiling = f"{1e6 / ours:,.0f}" if ours else "n/a"
    return (
        "## Capacity model: what one Redis sustains, and spreading over several\n\n"
        "Redis runs commands on one core, so the redis-server CPU per task bounds what any "
        "number of runner hosts can push through one server: tasks/s <= 1,000,000 / (µs of "
        "redis-server CPU per task). From (a) with "
        f"{size:,} no-ops in this run, taskgate's figure is {fmt(ours)} µs, so **one Redis core "
        f"sustains about {ceiling} tasks/s** end to end (call, run, result, read) before it "
        "saturates, whatever the number of runners. Real tasks cost the same Redis work per "
        "call (arguments and results add only their bytes), so the ceiling holds for them too; "
        "limits and keyed concurrency add their own (see the rows above).\n\n"
        + table(["system", "redis-server µs/task", "tasks/s per Redis core"], rows, "lrr")
        + "\n\n"
        + SHARDING_NOTE
    )


SHARDING_NOTE = """### Beyond one Redis: sharding by key (a design note, not implemented)

Today every key of an app carries one Redis Cluster hash tag, `{app_id}` (the key prefix), so
that each server-side script may touch any of them atomically: an app lives on one primary,
however many runner hosts it has. To spread one app over several primaries, the keys must be
split by what has to change together in one atomic step.

- **Must stay together on one primary**: everything one admission decision reads and writes.
  An invocation's record, its queue entry and its result; a running key's slots (the holders
  and the waiters of one `KEYS`/`ARGUMENTS` scope: admission and release are one script); one
  limit's budget (its holders, waiters and rate window for one key value); the registration
  key that folds identical calls together (it must be found by every caller of those
  arguments). Each of these is a unit that hashes to one slot: the hash tag becomes
  `{app_id:<shard>}` instead of `{app_id}`.
- **Can be spread**: invocations with no control at all (any shard: round robin or by id), and
  independent scopes: scope A's slots and scope B's slots need not be on one primary, so a
  task's calls are routed by their key (`hash(task, key values) mod shards`) and every call of
  one key lands with that key's slots. Results are read where the invocation was written (the
  shard is part of the invocation id). Runners serve every shard (an inbox and a wake-up list
  per shard; handing new calls to a waiting runner stays within a shard); periodic ticks,
  limit overrides and the runner registry stay on one designated shard, as they are few and
  rarely written.
- **In the client**: a router that, from the task's options and the call's arguments,
  computes the shard before registering: the key for `KEYS`/`ARGUMENTS` scopes and keyed
  limits, any shard for uncontrolled calls. Each shard is then an ordinary single-primary
  store, and every guarantee holds within it unchanged.
- **The hard part is a limit shared across shards**: a limit without a key (one global budget,
  or a rate per app), or a call that must hold a keyed slot and an unkeyed limit at once,
  spans shards, and taking all its slots "in one atomic step or none" no longer fits one
  script. The options are to keep such a limit's calls on its own shard (the limit's budget
  decides the shard: correct, but that shard carries all of that limit's traffic), to split
  the budget into per-shard quotas (N slots become N/k per shard, rebalanced lazily: exact in
  total, but a call may wait while another shard has spare slots), or a two-phase
  reserve/commit across shards with leases (exact, but a second round trip and a recovery
  path per admission). Pick per limit; the rest scales with the number of primaries."""


def cpu_plot_data(results: Results) -> tuple[list[str], dict[str, list[float]]]:
    """For the stacked-bar plot: the systems with CPU figures, and per group their medians."""
    prefix = f"cpu_e2e_{cpu_size(results)}"
    systems = systems_with(results, f"{prefix}_total")
    stacks: dict[str, list[float]] = {}
    for group, label in GROUPS:
        stacks[label] = [median(results, s, f"{prefix}_{group}") or 0.0 for s in systems]
    return systems, stacks
