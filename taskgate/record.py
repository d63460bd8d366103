"""Plain data exchanged between the core and the backends.

The core decides policy once, at call time, and writes it onto the :class:`InvocationRecord`
(registration key, running key, limit, what to do when blocked). Backends only execute that data
atomically; they never look at task options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from taskgate.status import InvocationStatus


class Transition(NamedTuple):
    """One entry of an invocation's history."""

    status: InvocationStatus
    timestamp: float
    runner_id: str | None


class FinalOutcome(NamedTuple):
    """What answers a final invocation's result (``Backend.final_outcomes``): its final status
    and, for SUCCESS or FAILED, the serialized value or exception."""

    status: InvocationStatus
    result: bytes | None = None
    error: bytes | None = None


class Rate(NamedTuple):
    """At most ``count`` starts within any window of ``period`` seconds."""

    # The field shadows tuple.count (a method): the name is the public one (API.md section 8)
    # and a NamedTuple cannot rename it, so mypy's complaint is silenced here only.
    count: int  # type: ignore[assignment]
    period: float

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget an invocation must hold to run: slots, rate tokens or both (API.md section 8).

    The core computes an invocation's budgets once, at call time; backends admit it only when
    every budget admits it, and take every slot and rate token in that same atomic step.

    Attributes:
        key: The budget's id, readable and canonical: ``limit llm-api``, ``limit
            tenant#tenant_id='42'`` (one budget per key value), or the task's own running
            scope key (``tasks.sync#customer=42``). Equal keys are one budget, whichever task
            uses it.
        limit: The limit's name, which live overrides are stored under; None for a task's own
            running scope (no override applies).
        concurrency: Slots: at most this many holders ``RUNNING`` at once (None: no slot limit).
        rate: At most ``rate.count`` starts within any window of ``rate.period`` seconds
            (None: no rate limit).
        fair: With ``fair_by``: the text of this invocation's fairness value within the budget
            (``tenant_id='a'``); waiters of one budget are admitted round robin across these
            values. None: first come, first served.
    """

    key: str
    limit: str | None = None
    concurrency: int | None = None
    rate: Rate | None = None
    fair: str | None = None


# Budgets as one text field of a stored record: fields joined by \x1f, budgets by \x1e; ''
# stands for None. Keys, names and fairness texts never hold these separators (they are
# ASCII-escaped literals and declared names).
_FIELD_SEP, _BUDGET_SEP = "\x1f", "\x1e"


def encode_budgets(budgets: tuple[Budget, ...]) -> str:
    """The stored text of ``budgets`` (what SQLite and Redis keep; Lua parses it too)."""
    return _BUDGET_SEP.join(
        _FIELD_SEP.join(
            (
                b.key,
                b.limit or "",
                "" if b.concurrency is None else str(b.concurrency),
                "" if b.rate is None else str(b.rate.count),
                "" if b.rate is None else repr(float(b.rate.period)),
                b.fair or "",
            )
        )
        for b in budgets
    )


def decode_budgets(text: str | None) -> tuple[Budget, ...]:
    """The budgets stored as ``text`` by :func:`encode_budgets`."""
    if not text:
        return ()
    budgets = []
    for part in text.split(_BUDGET_SEP):
        key, limit, concurrency, count, period, fair = part.split(_FIELD_SEP)
        budgets.append(
            Budget(
                key=key,
                limit=limit or None,
                concurrency=int(concurrency) if concurrency else None,
                rate=Rate(int(count), float(period)) if count else None,
                fair=fair or None,
            )
        )
    return tuple(budgets)


@dataclass(frozen=True, slots=True)
class ConcurrencyPlan:
    """What concurrency control needs to know about one invocation, computed by the core.

    Attributes:
        registration_key: While the invocation has not started running, another call with this
            key is folded into it. ``None`` disables registration control.
        running_key: At most ``running_limit`` invocations with this key run at once. ``None``
            disables running control.
        running_limit: Size of the running key's semaphore (>= 1).
        drop_when_blocked: When the running key is full (or a budget refuses), drop the
            invocation (``CONCURRENCY_CONTROLLED_FINAL``) instead of parking it until it frees.
        budgets: For a task that uses limits: every budget the invocation must hold to run,
            sorted by key, the task's own running scope among them (``running_key`` is then
            None). Empty for every other task, which keeps the single-key path.
    """

    registration_key: str | None = None
    running_key: str | None = None
    running_limit: int = 1
    drop_when_blocked: bool = False
    budgets: tuple[Budget, ...] = ()


@dataclass(slots=True)
class InvocationRecord:
    """An invocation as stored by a backend.

    ``attempt`` is the fencing token: it grows every time the invocation is claimed, and a
    ``finish`` or ``renew`` that names an older attempt changes nothing.
    """

    invocation_id: str
    task_id: str
    arguments: bytes
    plan: ConcurrencyPlan
    max_retries: int = 0
    priority: int = 0
    """Higher first, equal priorities in call order: among the ready invocations of its queue,
    among the waiters of its running key and among the waiters of a budget."""
    queue: str = "default"
    """The queue it is claimed from: a claim naming ``queues`` takes only from those."""
    scheduled_for: float | None = None
    """Epoch seconds before which the invocation may not start (a delayed call): the backend
    stores it ``SCHEDULED`` on its timed structure until then (compared with the store's clock);
    None (or a time already passed) registers it ready at once."""
    status: InvocationStatus = InvocationStatus.REGISTERED
    attempt: int = 0
    num_retries: int = 0
    num_recoveries: int = 0
    runner_id: str | None = None
    lease_expires_at: float | None = None
    created_at: float = 0.0
    result: bytes | None = None
    error: bytes | None = None
    history: list[Transition] = field(default_factory=list)
    cancel_requested: bool = False
    """``cancel()`` was called while it ran: its runner interrupts the body, and whatever
    outcome the run then reports, it ends ``CANCELLED``."""
    trace_context: str | None = None
    """The caller's trace context (a W3C ``traceparent`` value, optionally followed by
    ``;`` and a ``tracestate`` value), set only when tracing is on (``taskgate[otel]``): the
    runner makes the run a child span of the call. Backends store it as given and return it
    from :meth:`~taskgate.backends.base.Backend.get`; None costs nothing."""


class OutcomeKind(StrEnum):
    """How one run of an invocation ended, as decided by the runner."""

    SUCCESS = "success"
    FAILED = "failed"
    RETRY = "retry"
    CANCELLED = "cancelled"
    """The body was interrupted because the invocation was cancelled (a cancel request)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one run, handed to ``Backend.finish``.

    ``payload`` is the serialized return value for SUCCESS, the serialized exception for FAILED
    and RETRY. ``retry_delay``: for RETRY, the seconds the invocation waits (status ``RETRY``,
    holding no slot) before it is claimable again, decided by the core (``retry_delay``,
    ``retry_backoff``); 0 requeues it at once.
    """

    kind: OutcomeKind
    payload: bytes
    retry_delay: float = 0.0


class CancelResult(StrEnum):
    """What ``Backend.cancel`` did."""

    CANCELLED = "cancelled"
    """It was waiting: it is ``CANCELLED`` now, and everything it held or waited in is freed."""
    REQUESTED = "requested"
    """It is running: its runner was asked to interrupt the body; it ends ``CANCELLED``."""
    FINAL = "final"
    """It was final already (or a cancel was requested before): nothing changed."""
    MISSING = "missing"
    """No such invocation (never registered, purged or expired)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """An invocation handed to a runner by ``Backend.claim``; the runner now owns it."""

    invocation_id: str
    task_id: str
    arguments: bytes
    attempt: int
    num_retries: int
    max_retries: int


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """What ``Backend.register`` did.

    Attributes:
        invocation_id: The new invocation's id, or the id of the waiting one it was folded into.
        created: False when the call was folded into a waiting invocation.
        existing_arguments: For a folded call, the serialized arguments of the waiting
            invocation (so the core can compare them); ``None`` when created.
    """

    invocation_id: str
    created: bool
    existing_arguments: bytes | None = None


class BlockedBy(NamedTuple):
    """Why a ``CONCURRENCY_CONTROLLED`` invocation waits (``invocation.blocked_by()``).

    Attributes:
        scope_key: The running scope key or budget key it waits for (``tasks.sync#customer=42``,
            ``limit llm-api``).
        holders: Ids of the invocations holding that key's slots (empty when a rate blocks it).
        ready_at: Epoch seconds when a rate limit next admits it, else None.
    """

    scope_key: str
    holders: tuple[str, ...]
    ready_at: float | None = None


class LimitOverride(NamedTuple):
    """A live override of a limit, stored in the backend (``app.set_limit``); None keeps the
    declared value of that field."""

    concurrency: int | None
    rate: Rate | None

    def applied_to(
        self, concurrency: int | None, rate: Rate | None
    ) -> tuple[int | None, Rate | None]:
        """The effective ``(concurrency, rate)`` of declared values under this override."""
        return (
            concurrency if self.concurrency is None else self.concurrency,
            rate if self.rate is None else self.rate,
        )


class BudgetHolder(NamedTuple):
    """An invocation holding a slot of a budget, and where it runs."""

    invocation_id: str
    runner_id: str | None
    lease_expires_at: float | None


class BudgetUsage(NamedTuple):
    """What one budget of a limit holds and who waits for it, at one instant.

    Attributes:
        key: The budget key (``limit tenant#tenant_id='42'``).
        limit: The limit's name.
        holders: The invocations holding its slots.
        waiting: How many invocations wait for it (parked on it).
        oldest_wait: Epoch seconds since when the longest waiter waits, or None.
        window_starts: Starts within the current rate window (0 without a rate).
    """

    key: str
    limit: str
    holders: tuple[BudgetHolder, ...]
    waiting: int
    oldest_wait: float | None
    window_starts: int


@dataclass(frozen=True, slots=True)
class BackendStats:
    """Counts for ``taskgate status``: invocations by task and status, parked ones per key."""

    by_task_and_status: dict[tuple[str, InvocationStatus], int]
    parked_by_key: dict[str, int]
    runners: dict[str, float]
    queue_depth: dict[str, int] = field(default_factory=dict)
    """Ready invocations (waiting for a runner, not for a slot or a time) per queue; queues
    with none may be left out."""
    periodic_ticks: dict[str, float] = field(default_factory=dict)
    """Per periodic task id: the last tick registered (epoch seconds)."""


DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
"""Upper bounds (seconds) of the run-duration histogram buckets runners keep (Prometheus style);
a last, unbounded bucket follows them."""

MINUTES_KEPT = 15
"""How many one-minute throughput buckets a runner keeps and announces (the monitor's charts)."""


@dataclass(frozen=True, slots=True)
class TaskRunCounters:
    """What one runner counted for one task since it started (for metrics and the monitor).

    Attributes:
        outcomes: Runs that ended, by :class:`OutcomeKind` value (``"success"``...).
        duration_counts: Runs per bucket of :data:`DURATION_BUCKETS` (not cumulative), with one
            more entry for runs longer than the last bound: ``len(DURATION_BUCKETS) + 1``.
        duration_sum: Total seconds of those runs.
    """

    outcomes: dict[str, int]
    duration_counts: tuple[int, ...]
    duration_sum: float


@dataclass(frozen=True, slots=True)
class MinuteCounters:
    """What one runner finished within one wall-clock minute (epoch seconds ``// 60``)."""

    minute: int
    finished: int
    failed: int
    duration_sum: float


@dataclass(frozen=True, slots=True)
class RunningEntry:
    """An invocation a runner is executing, as the runner announces it."""

    invocation_id: str
    task_id: str
    attempt: int
    started_at: float


@dataclass(frozen=True, slots=True)
class RunnerInfo:
    """A live runner as it describes itself (``Backend.announce_runner``): who and where it
    is, what it serves, what it runs right now and what it has counted since it started.

    ``heartbeat_at`` is when this description was written; the backend keeps it until
    ``heartbeat_at + ttl`` and forgets it after (or on ``forget_runner``).
    """

    runner_id: str
    host: str
    pid: int
    kind: str
    """``"thread"`` (a ThreadRunner) or ``"process-worker"`` (a worker process of a
    ProcessRunner): what executes the bodies; async tasks run in either."""
    threads: int
    """How many invocations it runs at once (threads, or in-flight async bodies)."""
    queues: tuple[str, ...] | None
    """The queues it claims from; None: every queue."""
    started_at: float
    heartbeat_at: float
    running: tuple[RunningEntry, ...] = ()
    tasks: dict[str, TaskRunCounters] = field(default_factory=dict)
    """Per task id: its counters since the runner started."""
    minutes: tuple[MinuteCounters, ...] = ()
    """The last :data:`MINUTES_KEPT` minutes with at least one finished run, oldest first."""

    def to_json(self) -> str:
        """This description as compact JSON (what backends store)."""
        import json

        return json.dumps(
            {
                "runner_id": self.runner_id,
                "host": self.host,
                "pid": self.pid,
                "kind": self.kind,
                "threads": self.threads,
                "queues": list(self.queues) if self.queues is not None else None,
                "started_at": self.started_at,
                "heartbeat_at": self.heartbeat_at,
                "running": [list(entry_fields(e)) for e in self.running],
                "tasks": {
                    task: [c.outcomes, list(c.duration_counts), c.duration_sum]
                    for task, c in self.tasks.items()
                },
                "minutes": [[m.minute, m.finished, m.failed, m.duration_sum] for m in self.minutes],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RunnerInfo:
        """The description :meth:`to_json` wrote."""
        import json

        data = json.loads(text)
        queues = data["queues"]
        return cls(
            runner_id=data["runner_id"],
            host=data["host"],
            pid=int(data["pid"]),
            kind=data["kind"],
            threads=int(data["threads"]),
            queues=tuple(queues) if queues is not None else None,
            started_at=float(data["started_at"]),
            heartbeat_at=float(data["heartbeat_at"]),
            running=tuple(
                RunningEntry(str(i), str(t), int(a), float(s)) for i, t, a, s in data["running"]
            ),
            tasks={
                task: TaskRunCounters(dict(o), tuple(int(n) for n in d), float(total))
                for task, (o, d, total) in data["tasks"].items()
            },
            minutes=tuple(
                MinuteCounters(int(m), int(f), int(x), float(d)) for m, f, x, d in data["minutes"]
            ),
        )


def entry_fields(entry: RunningEntry) -> tuple[str, str, int, float]:
    """A running entry as a plain tuple (its JSON form)."""
    return (entry.invocation_id, entry.task_id, entry.attempt, entry.started_at)


@dataclass(frozen=True, slots=True)
class InvocationPage:
    """One page of :meth:`~taskgate.backends.base.Backend.page_invocations`.

    Attributes:
        records: The invocations of this page, newest first (without history).
        next_cursor: Pass it back for the next page; None when there is none.
        scanned_all: False when the backend stopped scanning at its bound before filling the
            page (a rare status on a store without a status index): ``next_cursor`` goes on.
    """

    records: list[InvocationRecord]
    next_cursor: str | None
    scanned_all: bool = True
