"""What a runner counts about its runs, for :class:`~taskgate.record.RunnerInfo`: outcomes per
task, a run-duration histogram (:data:`~taskgate.record.DURATION_BUCKETS`), and per-minute
throughput of the last :data:`~taskgate.record.MINUTES_KEPT` minutes; and what runs right now.

The hot path takes no lock and allocates nothing in the steady state. Each thread that
executes runs (a worker thread, a stand-in, the event loop thread) writes to an
:class:`Accumulator` of its own, which it gets once (:meth:`RunMetrics.accumulator`); a snapshot
(the heartbeat, every lease/3) reads them all and merges. Every accumulator has one writer, and
the snapshot copies each dict and list with one C-level call (``dict.copy``, ``list(...)``),
which the GIL makes atomic against that writer: a snapshot may miss a run finishing right now,
never a counter's update, and never sees a half-changed container. (On a free-threaded
interpreter these copies would need the accumulator's own lock, still one per snapshot.)

A run costs: one ``time.monotonic()`` at its start and one at its end, two attribute stores for
"what runs", a dict lookup by task id, a ``bisect`` into the 14 bucket bounds, and a few integer
and float additions: under a microsecond in all (``bench/run_metrics.py``: 0.9 us on a busy
2-core host, a fifth of it the two clock reads).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from bisect import bisect_left
from typing import TYPE_CHECKING

from taskgate.record import (
    DURATION_BUCKETS,
    MINUTES_KEPT,
    MinuteCounters,
    OutcomeKind,
    RunnerInfo,
    RunningEntry,
    TaskRunCounters,
)

if TYPE_CHECKING:
    from taskgate.record import Claim

# Plain module globals: an Enum member lookup costs ~70 ns on CPython 3.11, a global ~15, and
# comparing by identity spares Enum's Python-level __hash__ a dict keyed by kind would call.
_SUCCESS = OutcomeKind.SUCCESS
_FAILED = OutcomeKind.FAILED
_RETRY = OutcomeKind.RETRY
_BOUNDS = DURATION_BUCKETS
_FIRST_BOUND = DURATION_BUCKETS[0]
_NO_BUCKETS = (0,) * (len(DURATION_BUCKETS) + 1)


class _TaskCounts:
    """One task's counters in one accumulator (mutated in place: nothing allocated per run)."""

    __slots__ = ("buckets", "cancelled", "duration_sum", "failed", "retry", "success")

    def __init__(self) -> None:
        self.success = self.failed = self.retry = self.cancelled = 0
        self.buckets = list(_NO_BUCKETS)
        self.duration_sum = 0.0

    def outcomes(self) -> dict[str, int]:
        counted = {
            "success": self.success,
            "failed": self.failed,
            "retry": self.retry,
            "cancelled": self.cancelled,
        }
        return {kind: n for kind, n in counted.items() if n}


class Accumulator:
    """The counters one thread writes (and only that thread): see the module docstring."""

    __slots__ = (
        "_minute_counts",
        "_minute_ends",
        "_wall_offset",
        "claim",
        "minutes",
        "running",
        "started",
        "tasks",
    )

    def __init__(self, wall_offset: float) -> None:
        self.tasks: dict[str, _TaskCounts] = {}
        # minute -> [finished, failed, duration_sum]; the current one also in _minute_counts.
        self.minutes: dict[int, list[float]] = {}
        self._minute_counts: list[float] = [0, 0, 0.0]
        self._minute_ends = -1.0  # monotonic time the current minute ends (none yet)
        self._wall_offset = wall_offset  # time.time() - time.monotonic(), at the start
        self.claim: Claim | None = None
        """The claim this thread runs now (a worker thread's one run at a time)."""
        self.started = 0.0
        """When (monotonic) :attr:`claim` started."""
        self.running: dict[str, tuple[Claim, float]] = {}
        """Runs in flight on an event loop thread (many at once): id -> (claim, started)."""

    def begin(self, claim: Claim) -> float:
        """Note that this thread starts running ``claim``; returns the start (monotonic)."""
        self.started = started = time.monotonic()
        self.claim = claim
        return started

    def finish(self, task_id: str, kind: OutcomeKind, started: float) -> None:
        """Count a run of ``task_id`` that started at monotonic ``started`` and ended ``kind``."""
        now = time.monotonic()
        self.claim = None
        duration = now - started
        counts = self.tasks.get(task_id)
        if counts is None:
            counts = self.tasks[task_id] = _TaskCounts()
        if kind is _SUCCESS:
            counts.success += 1
        elif kind is _FAILED:
            counts.failed += 1
        elif kind is _RETRY:
            counts.retry += 1
        else:
            counts.cancelled += 1
        # Most runs of a busy runner are short: their bucket without the bisect call.
        counts.buckets[0 if duration <= _FIRST_BOUND else bisect_left(_BOUNDS, duration)] += 1
        counts.duration_sum += duration
        if now >= self._minute_ends:  # a float comparison per run; the division once a minute
            self._new_minute(now)
        minute_counts = self._minute_counts
        minute_counts[0] += 1
        if kind is _FAILED:
            minute_counts[1] += 1
        minute_counts[2] += duration

    def _new_minute(self, now: float) -> None:
        """Start counting the minute of monotonic ``now`` (once a minute at most); drop the
        minutes no longer kept."""
        minute = int((now + self._wall_offset) // 60)
        self._minute_ends = (minute + 1) * 60 - self._wall_offset
        self._minute_counts = self.minutes[minute] = [0, 0, 0.0]
        for old in [m for m in self.minutes if m <= minute - MINUTES_KEPT]:
            del self.minutes[old]


class RunMetrics:
    """A runner's counters since it started: one :class:`Accumulator` per thread that runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # taken to add or retire an accumulator, and to read
        self._accumulators: list[Accumulator] = []
        self._retired = Accumulator(0.0)  # what accumulators of ended threads had counted
        self._wall_offset = time.time() - time.monotonic()

    def accumulator(self) -> Accumulator:
        """A new accumulator for the calling thread (call once per thread, not per run)."""
        accumulator = Accumulator(self._wall_offset)
        with self._lock:
            self._accumulators.append(accumulator)
        return accumulator

    def retire(self, accumulator: Accumulator) -> None:
        """Fold the accumulator of a thread that ended (a stand-in) into the runner's totals,
        so threads that come and go do not pile up accumulators."""
        with self._lock:
            if accumulator not in self._accumulators:
                return
            self._accumulators.remove(accumulator)
            _fold(self._retired, accumulator)

    def running(self) -> tuple[RunningEntry, ...]:
        """What runs right now, oldest first, with wall-clock start times."""
        with self._lock:
            accumulators = list(self._accumulators)
        entries = []
        for accumulator in accumulators:
            claim, started = accumulator.claim, accumulator.started
            runs = list(accumulator.running.values())
            if claim is not None:
                runs.append((claim, started))
            for run_claim, run_started in runs:
                entries.append(
                    RunningEntry(
                        run_claim.invocation_id,
                        run_claim.task_id,
                        run_claim.attempt,
                        run_started + self._wall_offset,
                    )
                )
        return tuple(sorted(entries, key=lambda entry: entry.started_at))

    def counters(self) -> tuple[dict[str, TaskRunCounters], tuple[MinuteCounters, ...]]:
        """The counters of every task and the kept minutes (oldest first), merged."""
        merged = Accumulator(0.0)
        with self._lock:
            _fold(merged, self._retired)
            for accumulator in self._accumulators:
                _fold(merged, accumulator)
        tasks = {
            task: TaskRunCounters(c.outcomes(), tuple(c.buckets), c.duration_sum)
            for task, c in sorted(merged.tasks.items())
        }
        now_minute = int(time.time() // 60)
        minutes = tuple(
            MinuteCounters(minute, int(n[0]), int(n[1]), n[2])
            for minute, n in sorted(merged.minutes.items())
            if minute > now_minute - MINUTES_KEPT and n[0]
        )
        return tasks, minutes

    def describe(
        self,
        runner_id: str,
        kind: str,
        threads: int,
        queues: frozenset[str] | None,
        started_at: float,
    ) -> RunnerInfo:
        """The runner's description as of now (what its heartbeat announces)."""
        tasks, minutes = self.counters()
        return RunnerInfo(
            runner_id=runner_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            kind=kind,
            threads=threads,
            queues=None if queues is None else tuple(sorted(queues)),
            started_at=started_at,
            heartbeat_at=time.time(),
            running=self.running(),
            tasks=tasks,
            minutes=minutes,
        )


def _fold(into: Accumulator, source: Accumulator) -> None:
    """Add ``source``'s counters to ``into`` (copies first: ``source`` may be written to)."""
    for task, counts in source.tasks.copy().items():
        target = into.tasks.get(task)
        if target is None:
            target = into.tasks[task] = _TaskCounts()
        target.success += counts.success
        target.failed += counts.failed
        target.retry += counts.retry
        target.cancelled += counts.cancelled
        for i, n in enumerate(list(counts.buckets)):
            target.buckets[i] += n
        target.duration_sum += counts.duration_sum
    for minute, minute_counts in source.minutes.copy().items():
        finished, failed, duration = list(minute_counts)
        kept = into.minutes.setdefault(minute, [0, 0, 0.0])
        kept[0] += finished
        kept[1] += failed
        kept[2] += duration
