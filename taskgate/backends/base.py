"""The backend contract: a handful of domain operations, each ONE atomic step on its store.

Policy (which keys, which limit, wait or drop, retry or fail) is decided by the core and arrives
as data on the :class:`~taskgate.record.InvocationRecord` and the
:class:`~taskgate.record.Outcome`. A backend only executes that data: under one lock (memory),
in one ``BEGIN IMMEDIATE`` transaction (SQLite) or in one Lua script (Redis). No operation reads
a value, returns to Python to decide, and writes it back in a second step.

Slots are explicit: a running key owns a set of holder ids, never a count inferred by scanning
statuses. A parked invocation is moved back to the ready queue exactly once, by the ``finish``,
``release`` or ``recover`` that frees the slot it waits for; at that moment the slot is handed to
it, so the order within a key is first come, first served.

Budgets (limits, API.md section 8). A record whose ``plan.budgets`` is not empty (a task that
uses limits) takes the budget path instead of the single running key; every other record keeps
the path above, unchanged and at its cost. On the budget path:

- **Admission is one atomic step, at claim.** Taking the invocation off the ready queue, the
  claim checks every budget in ``plan.budgets`` order (sorted by key), with the limit's stored
  override (if any) replacing the declared ``concurrency``/``rate``: slots admit while the
  budget has fewer holders than its concurrency; a rate admits while fewer than ``count``
  starts lie within ``(now - period, now]`` (the store's clock: Redis server time). If all
  admit, the invocation is added to the holders of every slot budget and a start at ``now`` is
  recorded in every rate budget, and it becomes RUNNING, all in that step. Otherwise it takes
  nothing: with ``drop_when_blocked`` it becomes ``CONCURRENCY_CONTROLLED_FINAL``; else it
  waits on the FIRST budget that refused it (status ``CONCURRENCY_CONTROLLED``; a woken
  waiter that parks again keeps its status and adds no history entry). Holding nothing while
  waiting, no invocation can block another's release: no deadlock, whatever order tasks list
  their limits in, and no over-admission.
- **Waiting order.** A budget's waiters are ordered by ``(-priority, registration sequence)``:
  higher priority first, then call order (the sequence is the store's own, assigned once at
  registration, so an invocation woken and parked again keeps its place). With ``fair``
  values, each value has its own ordered sub-queue and a round-robin ring of the values with
  waiters: a wake-up takes the head of the next value in the ring.
- **Wake-ups.** Releasing an invocation (finish, retry, hand-back, recovery) removes it from the
  holders of all its budgets in one step; for each slot budget with free slots
  (``concurrency - holders - woken``, override applied, where ``woken`` counts the waiters it
  woke that no claim has taken yet: a free slot goes to one waiter, never two) that many
  waiters are moved to the FRONT of the ready queue (longest waiting first), without taking
  anything: the claim that takes them off the queue admits them (or parks them again in their
  place). A woken waiter that another budget refuses passes the capacity of the budget that
  woke it on to that budget's next waiter. A waiter refused by a rate is parked on that
  budget, and the budget goes on the app's timed structure (Redis: zset ``timed`` member
  ``b:<budget key>``, score = ready time in microseconds; SQLite: table ``timed``; memory: a
  heap) at the instant its window next admits a start (the oldest start in the window plus
  ``period``), keeping the earlier time if it is there already; a wake-up that leaves waiters
  of a rate budget behind arms it again the same way. Invariant: a rate budget with waiters has
  a timed entry or a woken waiter no claim has taken yet. Every claim first moves what is due
  from the timed structure (waking ``max(1, count - starts in window)`` waiters of each due
  budget), and a claim that blocks waits no longer than until the earliest due time: rate
  waiters become claimable at their instant without anyone polling. Delays and retry delays
  (a later issue) use the same structure with invocation members.
- **Overrides.** :meth:`set_limit_override` / :meth:`reset_limit_override` store or delete a
  limit's override and, in the same step, wake the waiters that fit the new values in every
  budget of that limit (raising a limit admits waiters at once; lowering one never touches
  running work).

Timed invocations (API.md section 9; the same timed structure as rate wake-ups, with members
``i:<invocation id>``; on Redis ``d:<invocation id>`` for one of queue ``default`` at priority
0, moved to the queue without reading its record). A record with ``scheduled_for`` later than
the store's clock is stored ``SCHEDULED`` (a waiting status: its registration key is taken, R1
folds identical calls into it) and put on the timed structure instead of the ready queue; it is
never handed over to an idle runner. A ``RETRY`` outcome with ``retry_delay > 0`` stores the
invocation ``RETRY`` (its slots released, its registration key taken back if free) and puts it
on the timed structure at ``now + retry_delay`` instead of requeueing it. Every claim first
moves what is due to the TAIL of the ready queue (status unchanged: the claim that takes it
makes it RUNNING, or parks or drops it as for any registered invocation), and a blocked claim
waits no longer than the earliest due time, so timed invocations become claimable at their
instant without polling; a registration or retry that adds an entry earlier than every other
wakes one blocked claimer so it waits for the new earliest time.

Queues and priorities (API.md section 9). Each record names its ``queue`` (default
``"default"``) and its ``priority`` (default 0). The ready invocations of one queue are taken
highest priority first; within one priority, in the order they became ready, except that
invocations put first in line (woken waiters, handed-back and recovered work) go before the
others of their priority. A claim (and ``finish_and_claim``) given ``queues`` takes only from
those queues (None: from every queue; across several queues, the highest priority at their
heads first); a hand-over to an idle runner (Redis) goes only to one serving the record's
queue, and a wake-up meant for one queue must never be lost in a runner that does not serve
it. The waiters parked on one running key are woken highest priority first, then in the order
they parked (the budget path orders its waiters the same way, see above). Records with
priority 0 in the default queue must cost what they cost before queues existed.

Cancellation (API.md sections 5 and 9): :meth:`cancel`. A cancelled waiting invocation leaves
nothing behind: not its registration key, not a place in a ready queue, a parked list, a budget
wait queue or the timed structure, and not a slot or a woken count handed to it while it
waited (that capacity goes on to the next waiter, as a release would pass it). A running one
gets ``cancel_requested``; :meth:`wait_cancel_requests` tells its runner, which interrupts the
body and reports ``OutcomeKind.CANCELLED``. Once ``cancel_requested`` is set, every way out of
``RUNNING`` ends ``CANCELLED``: ``finish`` whatever the outcome (no retry), ``release`` (a
graceful stop) and recovery (a dead runner) alike; the slots are released as always, so never
while the body still runs on a live runner.

Periodic ticks (API.md section 9): :meth:`register_tick` registers a periodic task's tick at
most once, whichever runners on whichever hosts reach it; ``stats().periodic_ticks`` reads the
last tick registered per task.

Every operation may raise :class:`~taskgate.errors.BackendUnavailableError` when the store cannot
be reached (runners retry those) and :class:`~taskgate.errors.BackendError` for failures that
retrying cannot fix (:class:`~taskgate.errors.BackendAuthenticationError` for refused
credentials; runners stop on those); none raises raw driver errors.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from taskgate.backends.tool_reads import ToolReads
from taskgate.logfields import log_fields
from taskgate.record import (
    BudgetUsage,
    CancelResult,
    Claim,
    FinalOutcome,
    InvocationRecord,
    LimitOverride,
    Outcome,
    RegisterResult,
)

logger = logging.getLogger(__name__)

# Index entries :meth:`Backend.page_invocations` examines at most per page when it filters
# without an index: a monitor page stays fast on a store of any size.
PAGE_SCAN_MAX = 2000

# Final invocations deleted per expiry step: each holds the store for about a millisecond.
EXPIRY_BATCH = 500


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """App-level data a backend needs to apply on its own (in ``recover`` and expiry).

    Attributes:
        app_id: Namespace of every key and row; two apps never see each other's data.
        result_ttl_seconds: How long a final invocation is kept.
        max_recoveries: How often an invocation whose runner died is requeued before it fails.
        lost_error: The serialized error stored on an invocation failed by ``recover`` because
            its recoveries are exhausted.
    """

    app_id: str
    result_ttl_seconds: float
    max_recoveries: int
    lost_error: bytes


class Backend(ToolReads):
    """The store of one app: invocations, queue, registration keys, running slots, parked lists."""

    supports_processes: bool = True
    """Whether runner processes other than the caller's can share this backend."""

    reads_cost_round_trips: bool = True
    """Whether each read is a trip to another process (callers then batch result reads)."""

    def __init__(self, options: BackendOptions) -> None:
        self.options = options

    # --- the atomic contract -------------------------------------------------------------------

    @abstractmethod
    def register(self, record: InvocationRecord) -> RegisterResult:
        """Store and enqueue ``record``, unless its registration key is taken.

        Atomically: if ``record.plan.registration_key`` is held by an invocation that has not
        started running, return that invocation's id (``created=False``, with its serialized
        arguments) and change nothing. Otherwise store the record as ``REGISTERED``, take the
        registration key (if any) and append the invocation to the ready queue.
        """

    def register_many(self, records: Sequence[InvocationRecord]) -> list[RegisterResult]:
        """:meth:`register` for each record, in order, each registration atomic as there.

        A later record may fold into an earlier one of the same batch. Backends where a call
        costs a round trip register a batch in one; this default registers one at a time.
        """
        return [self.register(record) for record in records]

    @abstractmethod
    def claim(
        self,
        runner_id: str,
        max_count: int,
        lease_seconds: float,
        timeout: float,
        *,
        wait_first: bool = False,
        queues: frozenset[str] | None = None,
    ) -> list[Claim]:
        """Hand up to ``max_count`` ready invocations to ``runner_id``; block up to ``timeout``.

        ``wait_first`` says the caller just saw the queue empty (``finish_and_claim`` claimed
        nothing): a backend where a look costs a round trip may wait for a wake-up first.
        ``queues``: take only invocations of these queues (None: of every queue); highest
        priority first (see "Queues and priorities" above).

        Atomically for each invocation taken off the ready queue: if its running key already has
        ``running_limit`` holders, park it at the tail of that key's wait list
        (``CONCURRENCY_CONTROLLED``) or, when it drops on block, finish it as
        ``CONCURRENCY_CONTROLLED_FINAL`` and release its registration key. Otherwise take a slot
        (or keep the one handed to it), release its registration key, increment its attempt and
        mark it ``RUNNING`` owned by ``runner_id`` with a lease of ``lease_seconds``.

        Returns an empty list when the timeout passes or :meth:`wake_claimers` is called.
        """

    @abstractmethod
    def finish(self, invocation_id: str, runner_id: str, attempt: int, outcome: Outcome) -> bool:
        """Record the outcome of a run, if ``runner_id`` still owns ``attempt`` (fencing).

        Atomically: store the payload; ``SUCCESS``/``FAILED`` become final and wake result
        waiters; ``RETRY`` counts a retry, takes the registration key back if it is free and
        requeues; ``CANCELLED`` (and any outcome of an invocation with ``cancel_requested``)
        becomes final ``CANCELLED``. In every case release the running slot and hand it to the
        first parked waiter of the key. Returns False, changing nothing, when the claim is stale.
        """

    def finish_and_claim(
        self,
        invocation_id: str,
        runner_id: str,
        attempt: int,
        outcome: Outcome,
        *,
        max_count: int,
        lease_seconds: float,
        queues: frozenset[str] | None = None,
    ) -> tuple[bool, list[Claim]]:
        """:meth:`finish`, then :meth:`claim` up to ``max_count`` (of ``queues``) without
        blocking.

        What a busy runner does between two tasks. Backends where a call costs a round trip
        do both in one atomic step; this default runs the two operations in turn.
        """
        finished = self.finish(invocation_id, runner_id, attempt, outcome)
        return finished, self.claim(runner_id, max_count, lease_seconds, 0, queues=queues)

    @abstractmethod
    def release(self, invocation_id: str, runner_id: str, attempt: int) -> bool:
        """Hand a running invocation back without counting a retry (graceful shutdown).

        Atomically, if ``runner_id`` still owns ``attempt``: release the slot, put the invocation
        first in line for its key (and first in the ready queue) as ``REGISTERED``. The next claim
        raises the attempt, so a late ``finish`` of the old run is rejected. Returns False for a
        stale claim.
        """

    @abstractmethod
    def cancel(self, invocation_id: str) -> CancelResult:
        """Cancel an invocation (API.md sections 5 and 9); one atomic step.

        A waiting one (``SCHEDULED``, ``REGISTERED``, ``CONCURRENCY_CONTROLLED``, ``RETRY``)
        becomes final ``CANCELLED`` at once: its registration key is released, it leaves its
        ready queue, parked list, budget wait queue and timed entry, and a slot or woken count
        handed to it goes on to the next waiter; result waiters wake (``CANCELLED``). A running
        one (including one handed over to a runner that has not read it yet) gets
        ``cancel_requested`` and its runner is told (:meth:`wait_cancel_requests`)
        (``REQUESTED``); it becomes ``CANCELLED`` when it leaves ``RUNNING``. A final one, or
        one whose cancel was requested already, is left as it is (``FINAL``); an unknown id
        gives ``MISSING``. Racing with ``finish``, exactly one of the two comes first: the
        invocation ends in exactly one final status.
        """

    @abstractmethod
    def wait_cancel_requests(self, runner_id: str, timeout: float) -> list[str]:
        """Block up to ``timeout`` until cancels are requested for invocations ``runner_id``
        runs; return their ids (each request is returned once; empty when the time passed).

        What a runner's cancel watcher loops on (with a short timeout, so it stops promptly);
        a runner that dies with requests unread loses nothing: recovery cancels those
        invocations.
        """

    @abstractmethod
    def register_tick(self, record: InvocationRecord, tick: float) -> RegisterResult | None:
        """Register the tick ``tick`` (epoch seconds) of a periodic task, at most once.

        Atomically: when the last tick registered for ``record.task_id`` is at or after
        ``tick``, change nothing and return None (another runner took it, or a later one). Else
        store ``tick`` as that task's last tick and :meth:`register` ``record`` (its
        ``scheduled_for`` is ``tick``; registration control applies as for any call), in the
        same step.
        """

    @abstractmethod
    def renew(
        self, runner_id: str, claims: Sequence[tuple[str, int]], lease_seconds: float
    ) -> list[str]:
        """Extend the leases of ``(invocation_id, attempt)`` pairs ``runner_id`` still owns.

        Also records the runner as alive for ``lease_seconds``. Returns the ids whose claims are
        stale (recovered or fenced); the runner must stop renewing those.

        Runners call it every third of a lease, so it is where a backend checks, cheaply, that
        its store is still the one it opened: it raises
        :class:`~taskgate.errors.BackendStoreReplacedError` when it is not (an SQLite file
        deleted or replaced under a running process).
        """

    @abstractmethod
    def recover_leases(self, now: float | None = None) -> list[str]:
        """Take back the work of runners whose leases expired before ``now``.

        Atomically for every ``RUNNING`` invocation whose lease expired: release its slot and
        requeue it first in line (``REGISTERED``), or, when it was recovered ``max_recoveries``
        times already, fail it with ``options.lost_error``. Returns the ids recovered or failed.
        """

    def recover(self, now: float | None = None) -> list[str]:
        """:meth:`recover_leases`, then :meth:`expire` every expired result; returns the ids
        recovered or failed. (A runner's heartbeat does the two apart, expiring in bounded
        chunks so that renewals are never held up: see :meth:`expire_for`.)"""
        recovered = self.recover_leases(now)
        self.expire(now)
        return recovered

    @abstractmethod
    def expire_finals(self, batch: int, now: float | None = None) -> int:
        """Delete up to ``batch`` final invocations whose result TTL passed by ``now``.

        One atomic step: each record goes with its history and every index entry naming it.
        Returns how many were deleted; fewer than ``batch`` means none expired is left.
        """

    def expire(self, now: float | None = None) -> int:
        """Delete every final invocation whose result TTL passed by ``now``; returns how many.

        Runs :meth:`expire_finals` until a batch comes back short: each batch is its own short
        atomic step, so the store is never held for long, however many results expired.
        """
        deleted = 0
        while True:
            count = self.expire_finals(EXPIRY_BATCH, now)
            deleted += count
            if count < EXPIRY_BATCH:
                return deleted

    def expire_for(self, seconds: float) -> bool:
        """Delete expired results in batches for about ``seconds`` at most (at least one batch).

        Returns True when none expired is left, False when time ran out first (call again).
        What a heartbeat runs between two renewals: a backlog of any size is worked off at full
        speed, one bounded chunk at a time, and no renewal waits for more than one chunk.
        """
        deadline = time.monotonic() + seconds
        while self.expire_finals(EXPIRY_BATCH) == EXPIRY_BATCH:
            if time.monotonic() >= deadline:
                return False
        return True

    @abstractmethod
    def recover_runner(self, runner_id: str) -> list[str]:
        """Take back at once the work of a runner known to be dead: its process has exited.

        Atomically, what :meth:`recover` does for an expired lease, for every ``RUNNING``
        invocation ``runner_id`` holds, whatever its lease; the runner also stops counting as
        live (and, where runners wait in line for work, leaves the line). Only for a death that
        is certain, such as a supervisor seeing the process exit: a live runner's later reports
        would be fenced off. Returns the ids recovered or failed.
        """

    # --- reads and admin -----------------------------------------------------------------------

    @abstractmethod
    def get(self, invocation_id: str) -> InvocationRecord | None:
        """A snapshot of one invocation, or None when it does not exist."""

    def get_many(self, invocation_ids: Sequence[str]) -> list[InvocationRecord | None]:
        """Snapshots of many invocations, in order (None for missing ones), history left out.

        What a caller reading a group's results needs; backends read them in one go, this
        default one by one.
        """
        return [self.get(invocation_id) for invocation_id in invocation_ids]

    def final_outcomes(self, invocation_ids: Sequence[str]) -> dict[str, FinalOutcome]:
        """The outcomes of those of ``invocation_ids`` that are final, by id: their status and
        result or error, what answers their results (not whole records: a caller reading many
        results reads nothing else of them).

        One read (what a caller reading ahead needs: results of calls made earlier); ids that
        are missing or not final yet are left out. This default filters :meth:`get_many`.
        """
        return {
            record.invocation_id: FinalOutcome(record.status, record.result, record.error)
            for record in self.get_many(invocation_ids)
            if record is not None and record.status.is_final
        }

    @abstractmethod
    def wait_final(self, invocation_id: str, timeout: float | None) -> InvocationRecord | None:
        """Block until the invocation is final or ``timeout`` passes, without busy polling.

        Returns the latest snapshot (final or not), or None when the invocation does not exist.
        The snapshot's ``history`` may be left empty (it is what result readers need, in as few
        reads as possible); :meth:`get` returns the full record.
        """

    # --- limits --------------------------------------------------------------------------------

    @abstractmethod
    def set_limit_override(self, name: str, override: LimitOverride) -> None:
        """Store ``override`` for limit ``name`` (replacing any) and wake what now fits.

        Atomically: every runner's next admission uses it; in every budget of that limit,
        waiters are woken up to the free slots under the new concurrency (and, for a raised
        rate, what the window now admits). Running work is never touched.
        """

    @abstractmethod
    def reset_limit_override(self, name: str) -> None:
        """Delete the override of limit ``name`` (nothing if none) and wake what now fits, as
        :meth:`set_limit_override` does; the declared values apply again."""

    @abstractmethod
    def limit_overrides(self) -> dict[str, LimitOverride]:
        """Every stored override, by limit name."""

    @abstractmethod
    def budget_usage(self, limit: str | None = None) -> list[BudgetUsage]:
        """Every budget of limit ``limit`` (of every limit when None) that has holders,
        waiters or starts in its current rate window, sorted by key; one consistent read."""

    @abstractmethod
    def purge(self) -> None:
        """Delete every invocation, result, queue entry, key, slot, cancel request and periodic
        tick of this app."""

    def forget_runner(self, runner_id: str) -> None:
        """Drop a stopped runner from the live runners (its renewals announced it) and its
        description (:meth:`announce_runner`)."""
        self.renew(runner_id, (), 0.0)

    def wake_claimers(self) -> None:
        """Make every blocked :meth:`claim` of this process return at once (used on stop)."""

    def close(self) -> None:
        """Release connections and files held by this backend object."""


def log_stale_report(invocation_id: str, runner_id: str, attempt: int) -> None:
    """Log a rejected ``finish``/``release`` from a runner that no longer owns the claim."""
    logger.warning(
        "rejected report on invocation %s from runner %s (attempt %s): the claim is stale, the "
        "invocation was recovered, handed back or purged",
        invocation_id,
        runner_id,
        attempt,
        extra=log_fields(invocation_id, None, attempt, runner_id),
    )
