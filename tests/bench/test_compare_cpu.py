"""bench/compare/cpu.py: /proc stat parsing and CPU per task by process group."""

from __future__ import annotations

import os

import cpu
import pytest


def stat_line(pid: int, name: str, pgrp: int, times: tuple[int, int, int, int]) -> str:
    """A /proc/<pid>/stat line: fields 3..52, with utime..cstime at 14..17 and pgrp at 5."""
    fields = ["S", "1", str(pgrp), "0", "0", "0", "0", "0", "0", "0", "0"]  # 3..13
    fields += [str(t) for t in times]  # 14..17
    fields += ["20", "0", "1", "0", "100"] + ["0"] * 30  # 18..52
    return f"{pid} ({name}) " + " ".join(fields) + "\n"


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    # A command name may hold spaces and parentheses: only the last ')' ends it.
    line = stat_line(4321, "python (worker) x", 4000, (120, 30, 7, 3))
    stat = cpu.parse_stat(line)
    assert (stat.pid, stat.pgrp) == (4321, 4000)
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime) == (120, 30, 7, 3)
    assert stat.own == 150
    assert stat.with_reaped == 160


def test_parse_stat_rejects_other_text() -> None:
    with pytest.raises(ValueError):
        cpu.parse_stat("not a stat line")


def test_parse_stat_reads_this_process() -> None:
    stat = cpu.read_stat(os.getpid())
    assert stat is not None
    assert stat.pid == os.getpid()
    assert stat.pgrp == os.getpgrp()


def test_read_stat_of_a_missing_process_is_none() -> None:
    assert cpu.read_stat(2**22 + 12345) is None  # above Linux's largest pid


def test_group_ticks_sums_the_groups_with_reaped_children() -> None:
    stats = [
        cpu.parse_stat(stat_line(10, "main", 10, (5, 5, 100, 0))),  # reaped a child: 100
        cpu.parse_stat(stat_line(11, "child", 10, (20, 0, 0, 0))),
        cpu.parse_stat(stat_line(20, "other main", 20, (1, 1, 0, 0))),
        cpu.parse_stat(stat_line(30, "not a worker", 30, (999, 0, 0, 0))),
    ]
    assert cpu.group_ticks(stats, [10, 20]) == 110 + 20 + 2
    assert cpu.group_ticks(stats, []) == 0


def test_per_task_us_by_group_and_total() -> None:
    before = {"caller": 1.0, "workers": 2.0, "redis": 0.5}
    after = {"caller": 1.5, "workers": 3.0, "redis": 0.75}
    figures = cpu.per_task_us(before, after, 1000, "cpu_e2e_1000")
    assert figures == pytest.approx(
        {
            "cpu_e2e_1000_caller": 500.0,
            "cpu_e2e_1000_workers": 1000.0,
            "cpu_e2e_1000_redis": 250.0,
            "cpu_e2e_1000_total": 1750.0,
        }
    )


def test_sample_reads_this_process_as_the_caller() -> None:
    sample = cpu.sample([], None)
    assert set(sample) == {"caller", "workers", "redis"}
    assert sample["workers"] == 0 and sample["redis"] == 0
    assert sample["caller"] >= 0
