"""bench/compare/costs.py: the report's CPU, memory, backlog, taskgate-row, embedded, check and
capacity sections, rendered from a made-up results.json."""

from __future__ import annotations

from typing import Any

import costs
import pytest
import workloads

Figures = dict[str, float]


def results(runs: dict[str, list[Figures]], *, backlog: int = 0, **settings: Any) -> dict[str, Any]:
    """A results.json with ``runs[system]`` as the figures of each repetition."""
    return {
        "settings": {
            "systems": list(runs),
            "e2e": [2000, 20000],
            "repetitions": max(len(v) for v in runs.values()),
            "memory_calls": 1000,
            "feature_calls": 10000,
            "hot_calls": 10000,
            "backlog": backlog,
            "backlog_budget": 150.0,
            "backlog_repetitions": 1,
            **settings,
        },
        "systems": {name: {"variant_of": None} for name in runs},
        "runs": [
            {"system": name, "repetition": rep + 1, "figures": figures, "errors": {}}
            for name, reps in runs.items()
            for rep, figures in enumerate(reps)
        ],
    }


def cpu(caller: float, workers: float, redis: float) -> Figures:
    prefix = "cpu_e2e_20000"
    return {
        f"{prefix}_caller": caller,
        f"{prefix}_workers": workers,
        f"{prefix}_redis": redis,
        f"{prefix}_total": caller + workers + redis,
    }


def row_of(text: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row that starts with ``first_cell``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def test_cpu_section_shows_medians_by_group_and_total() -> None:
    data = results(
        {
            "taskgate": [cpu(100, 200, 300), cpu(180, 180, 280), cpu(170, 190, 290)],
            "huey": [cpu(500, 900, 300), cpu(600, 950, 270), cpu(570, 930, 280)],
        }
    )
    text = costs.cpu_section(data, "cpu_per_task.png")
    # Each column is its own median: taskgate's totals are 600, 640 and 650.
    assert row_of(text, "taskgate") == ["taskgate", "170", "190", "290", "**640**", "1.00x"]
    assert row_of(text, "huey") == ["huey", "570", "930", "280", "**1,780**", "2.78x"]
    assert "![CPU per task by process group](cpu_per_task.png)" in text


def test_sections_are_empty_when_the_run_has_no_such_figures() -> None:
    data = results({"taskgate": [{"e2e_20000": 5000.0}]})
    assert costs.cpu_section(data, "x.png") == ""
    assert costs.memory_section(data) == ""
    assert costs.backlog_section(data) == ""
    assert costs.taskgate_rows_section(data) == ""
    assert costs.embedded_section(data) == ""
    assert costs.capacity_section(data) == ""
    assert costs.cpu_plot_data(data) == ([], {"caller": [], "workers": [], "redis-server": []})


def test_memory_section_with_the_backlog_column() -> None:
    data = results(
        {
            "taskgate": [{"mem_queued_b": 670.4, "mem_finished_b": 1712.0}],
            "huey": [{"mem_queued_b": 136.0, "mem_finished_b": 400.0, "backlog_mem_queued_b": 140}],
        },
        backlog=100000,
    )
    text = costs.memory_section(data)
    assert row_of(text, "taskgate") == ["taskgate", "670", "1,712", "n/a"]
    assert row_of(text, "huey") == ["huey", "136", "400", "140"]
    assert "B per queued (100,000, backlog (e))" in text


def test_backlog_section_says_which_systems_skipped_and_why() -> None:
    data = results(
        {
            "taskgate": [
                {"backlog_rate": 6000.0, "backlog_enqueue_rate": 5000.0, "cpu_backlog_redis": 90}
            ],
            "rq": [{"backlog_skipped_est_s": 1620.0}],
            "pynenc": [{"e2e_2000": 100.0}],
        },
        backlog=100000,
    )
    text = costs.backlog_section(data)
    assert row_of(text, "taskgate")[:4] == ["taskgate", "**6,000**", "5,000", "90"]
    assert row_of(text, "rq")[1] == "skipped: about 27 min at its rates"
    assert row_of(text, "pynenc")[1] == "not run (an earlier workload failed)"
    assert "above 150 s skips it" in text


def test_taskgate_rows_take_the_median_of_per_run_ratios_against_targets() -> None:
    runs = [
        {"hot_hot_key": 2000.0, "hot_uncontrolled": 5000.0, "feat_plain": 4000.0,
         "feat_limits2": 3000.0, "feat_delayed": 3900.0, "feat_priority": 3000.0},
        {"hot_hot_key": 4500.0, "hot_uncontrolled": 5000.0, "feat_plain": 2000.0,
         "feat_limits2": 1500.0, "feat_delayed": 1900.0, "feat_priority": 1900.0},
        {"hot_hot_key": 4200.0, "hot_uncontrolled": 5000.0, "feat_plain": 3000.0,
         "feat_limits2": 2000.0, "feat_delayed": 2900.0, "feat_priority": 2900.0},
    ]  # fmt: skip
    text = costs.taskgate_rows_section(results({"taskgate": runs}))
    hot = row_of(text, "hot key: KEYS task, ONE key, 10,000 drained")
    assert hot[3:6] == ["0.84x", ">= 0.80x", "yes"]  # ratios 0.4, 0.9, 0.84
    limits = row_of(text, "two limits (one keyed, 100 keys), 10,000 end to end")
    assert limits[3:6] == ["0.75x", ">= 0.70x", "yes"]  # 0.75, 0.75, 0.67
    priority = row_of(text, "priorities 0-9, 10,000 end to end")
    assert priority[3:6] == ["0.95x", ">= 0.91x", "yes"]  # 0.75, 0.95, 0.967
    delayed = row_of(text, "delayed calls (`delay=0.001`), 10,000 end to end")
    assert delayed[5] == "yes"


def test_a_missed_target_is_marked() -> None:
    runs = [{"hot_hot_key": 2100.0, "hot_uncontrolled": 5000.0}]
    text = costs.taskgate_rows_section(results({"taskgate": runs}))
    assert row_of(text, "hot key: KEYS task, ONE key, 10,000 drained")[3:7] == [
        "0.42x",
        ">= 0.80x",
        "**no**",
        "n/a",
    ]


def test_taskgate_rows_show_the_cpu_ratio_and_cost() -> None:
    runs = [
        {"feat_plain": 4000.0, "feat_limits2": 2000.0, "cpu_feat_plain_total": 300.0,
         "cpu_feat_limits2_total": 400.0, "cpu_feat_limits2_redis": 150.0},
    ]  # fmt: skip
    text = costs.taskgate_rows_section(results({"taskgate": runs}))
    row = row_of(text, "two limits (one keyed, 100 keys), 10,000 end to end")
    assert row[3:] == ["0.50x", ">= 0.70x", "**no**", "0.75x", "150", "400"]


def test_embedded_section_pivots_rows_by_workload_and_configuration() -> None:
    data = results({"taskgate": [{}]})
    data["embedded"] = {
        "method": "Two processes, one SQLite file.",
        "rows": [
            {"system": "taskgate", "config": "sqlite", "workload": "end to end",
             "unit": "tasks/s", "value": 2500.4},
            {"system": "huey", "config": "sqlite-matched", "workload": "end to end",
             "unit": "tasks/s", "value": 1800},
            {"system": "taskgate", "config": "sqlite", "workload": "WAL pages per task",
             "unit": "pages", "value": 9.437},
            {"system": "huey", "config": "memory", "workload": "CPU per task",
             "unit": "µs", "value": 20.0},
        ],
    }  # fmt: skip
    text = costs.embedded_section(data)
    assert "Two processes, one SQLite file." in text
    assert "| workload | unit | taskgate sqlite | huey sqlite-matched | huey memory |" in text
    assert row_of(text, "end to end") == ["end to end", "tasks/s", "2,500", "1,800", ""]
    assert row_of(text, "WAL pages per task") == ["WAL pages per task", "pages", "9.44", "", ""]
    assert row_of(text, "CPU per task") == ["CPU per task", "µs", "", "", "20.0"]


def test_embedded_section_reports_a_failed_script() -> None:
    data = results({"taskgate": [{}]})
    data["embedded_error"] = "CalledProcessError: exit 1"
    assert "failed in this run: CalledProcessError: exit 1" in costs.embedded_section(data)


def test_issue_checks_compare_with_the_best_peer_and_every_p50() -> None:
    data = results(
        {
            "taskgate": [{"e2e_2000": 6000.0, "e2e_20000": 5000.0, "rt_p50": 0.5}],
            "huey": [{"e2e_2000": 1500.0, "e2e_20000": 2000.0, "rt_p50": 2.0}],
            "celery": [{"e2e_2000": 300.0, "e2e_20000": 300.0, "rt_p50": 0.4}],
        }
    )
    lines = costs.issue_checks(data)
    assert "taskgate / best peer (huey) = **4.00x** (target >= 3x: met)" in lines[0]
    assert "taskgate / best peer (huey) = **2.50x** (target >= 3x: **not met**)" in lines[1]
    assert "lowest peer celery 0.40 ms" in lines[2]
    assert "**not below every peer's**" in lines[2]


def test_capacity_is_a_million_over_the_server_micros_per_task() -> None:
    data = results({"taskgate": [cpu(150, 150, 80)], "huey": [cpu(500, 900, 250)]})
    text = costs.capacity_section(data)
    assert "one Redis core sustains about 12,500 tasks/s" in text
    assert row_of(text, "huey") == ["huey", "250", "4,000"]
    assert "{app_id}" in text and "limit shared across shards" in text


def test_backlog_estimate_from_the_runs_own_rates() -> None:
    figures = {"enqueue_rate": 5000.0, "e2e_2000": 2500.0, "e2e_20000": 2000.0}
    assert workloads.backlog_estimate(figures, 100000, [2000, 20000]) == pytest.approx(70.0)
    assert workloads.backlog_estimate({"enqueue_rate": 5000.0}, 100000, [2000]) is None
