"""Two of the report's sections on the timed workloads: where the end-to-end time goes, and the
per-key serialisation (d)."""

from __future__ import annotations

from tables import Results, concurrency, median, runs_of, table


def e2e_phases(results: Results) -> str:
    """For each batch size: how the end-to-end time splits into enqueueing and waiting."""
    systems = results["settings"]["systems"]
    rows = []
    for size in results["settings"]["e2e"]:
        for name in systems:
            enqueue = median(results, name, f"e2e_{size}_enqueue_s")
            wait = median(results, name, f"e2e_{size}_wait_s")
            if enqueue is None or wait is None:
                continue
            rows.append(
                [
                    f"{size:,}",
                    name,
                    f"{enqueue:.2f}",
                    f"{size / enqueue:,.0f}",
                    f"{wait:.2f}",
                    f"{enqueue / (enqueue + wait):.0%}",
                ]
            )
    if not rows:
        return ""
    header = [
        "tasks",
        "system",
        "enqueue phase s",
        "enqueue calls/s (workers running)",
        "then waiting s",
        "share enqueueing",
    ]
    return (
        "### Where the end-to-end time goes\n\n"
        "Medians of the two phases of (a): the caller enqueueing every task (while the workers "
        "already consume), then the caller waiting for the results still missing. A large "
        "enqueue share means the caller's side bounds the rate; a long wait means the workers "
        "do.\n\n" + table(header, rows, "llrrrr")
    )


def keyed_table(results: Results) -> str:
    systems = results["settings"]["systems"]
    calls = results["settings"]["keyed_calls"]
    rows = []
    for name in systems:
        info = results["systems"].get(name, {})
        mechanism = info.get("keyed_mechanism", "?")
        if mechanism == "none":
            mechanism = "**no mechanism**"
        wall = median(results, name, "keyed_wall")
        overlaps = runs_of(results, name, "keyed_overlaps")
        attempts = median(results, name, "keyed_attempts")
        completed = runs_of(results, name, "keyed_completed")
        dropped = runs_of(results, name, "keyed_dropped")
        keys = results["settings"]["keyed_keys"]
        ideal = 0.01 * max(calls / concurrency(results, name), calls / max(1, keys))
        rows.append(
            [
                name,
                mechanism,
                f"{ideal:.2f}",
                "n/a" if wall is None else f"{wall:.2f}",
                " / ".join(str(int(v)) for v in overlaps) or "n/a",
                "n/a" if attempts is None else f"{attempts:,.0f}",
                " / ".join(f"{int(v)}" for v in completed) or "n/a",
                " / ".join(f"{int(v)}" for v in dropped) or "n/a",
            ]
        )
    header = [
        "system",
        "mechanism",
        "ideal s",
        "wall s (median)",
        "overlapping same-key pairs (each run)",
        f"task starts for {calls} calls (median)",
        "calls completed (each run)",
        "dropped (each run)",
    ]
    text = table(header, rows, "llrrrrrr")
    reasons = [
        f"- {run['system']}, repetition {run['repetition']}: {reason}"
        for run in sorted(results["runs"], key=lambda run: run["repetition"])
        for reason in run.get("drop_reasons", [])
    ]
    if reasons:
        text += "\n\nWhy the caller saw calls as dropped (first few per run):\n\n" + "\n".join(
            reasons
        )
    ideal = calls * 0.01 / 2
    return (
        "## Per-key serialisation (d)\n\n"
        f"{calls} calls of 10 ms over {results['settings']['keyed_keys']} keys; ideal wall time "
        f"{ideal:.1f} s with 2 tasks at a time (the ideal column allows for the variants). An "
        "overlapping pair is two calls of the same key whose "
        '[start, end] intervals intersect, as recorded inside the task. "Task starts" counts '
        "each time the task body (or its lock attempt) began: above the number of calls, the "
        "mechanism rejected calls and they were retried.\n\n" + text
    )
