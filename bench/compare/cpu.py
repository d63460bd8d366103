"""CPU time of process groups from ``/proc`` (Linux), for the CPU-per-task figures.

Runs in every system's venv (imported by ``agent.py``), so it needs the standard library only.

Three groups are sampled before and after a workload, and the difference is the CPU the workload
cost each of them:

- **caller**: the agent process itself (``utime + stime``; not its children's, since the
  workers are its children and are counted on their own).
- **workers**: every process whose process group is one of the workers' (each worker command
  starts a session of its own, so its pool children share its group), ``utime + stime`` plus
  ``cutime + cstime`` (children that exited and were reaped by a process of the group, such as
  a pool replacing a child). A live child is never in its parent's ``cutime``, so nothing is
  counted twice.
- **redis**: the redis-server process (all its threads: ``/proc/<pid>/stat`` sums them).

Resolution is one clock tick (``SC_CLK_TCK``, 10 ms on Linux): over thousands of tasks that is
well under a microsecond per task.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
GROUPS = ("caller", "workers", "redis")


@dataclass(frozen=True)
class Stat:
    """The fields of one ``/proc/<pid>/stat`` line that the figures use (times in ticks)."""

    pid: int
    pgrp: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def own(self) -> int:
        """Ticks this process ran (all its threads)."""
        return self.utime + self.stime

    @property
    def with_reaped(self) -> int:
        """Ticks of this process plus those of its children that exited and were reaped."""
        return self.own + self.cutime + self.cstime


def parse_stat(line: str) -> Stat:
    """Parse one ``/proc/<pid>/stat`` line.

    The second field (the command name) is in parentheses and may itself contain spaces or
    parentheses, so the fields are counted from the LAST ``)``. Raises ``ValueError`` on a line
    that is not a stat line.
    """
    open_at = line.find("(")
    close_at = line.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise ValueError(f"not a /proc stat line: {line[:80]!r}")
    pid = int(line[:open_at].strip())
    # After the name: state(3) ppid(4) pgrp(5) ... utime(14) stime(15) cutime(16) cstime(17).
    rest = line[close_at + 1 :].split()
    field = {number: rest[number - 3] for number in (5, 14, 15, 16, 17)}
    return Stat(
        pid=pid,
        pgrp=int(field[5]),
        utime=int(field[14]),
        stime=int(field[15]),
        cutime=int(field[16]),
        cstime=int(field[17]),
    )


def read_stat(pid: int) -> Stat | None:
    """The stat of ``pid``, or None if it has exited (or ``/proc`` is not there)."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError):
        return None


def all_stats() -> list[Stat]:
    """The stat of every process still there (processes may exit while this reads)."""
    stats = []
    for entry in PROC.iterdir() if PROC.exists() else ():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            stats.append(stat)
    return stats


def group_ticks(stats: Iterable[Stat], pgids: Iterable[int]) -> int:
    """CPU ticks of every process in the process groups ``pgids``, reaped children included."""
    wanted = set(pgids)
    return sum(stat.with_reaped for stat in stats if stat.pgrp in wanted)


def sample(worker_pgids: Iterable[int], redis_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the caller (this process), the workers' groups and redis-server."""
    stats = all_stats()
    me = read_stat(os.getpid())
    redis = read_stat(redis_pid) if redis_pid else None
    ticks = {
        "caller": me.own if me else 0,
        "workers": group_ticks(stats, worker_pgids),
        "redis": redis.own if redis else 0,
    }
    return {group: value / TICKS_PER_SECOND for group, value in ticks.items()}


def per_task_us(
    before: dict[str, float], after: dict[str, float], tasks: int, prefix: str
) -> dict[str, float]:
    """``{prefix}_caller`` ... ``{prefix}_total``: microseconds of CPU per task, by group."""
    figures = {
        f"{prefix}_{group}": (after[group] - before[group]) * 1e6 / tasks for group in GROUPS
    }
    figures[f"{prefix}_total"] = sum(figures.values())
    return figures
