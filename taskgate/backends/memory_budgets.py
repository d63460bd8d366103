"""The budget path of the memory backend (limits; the "Budgets" section of backends/base.py).

:class:`MemoryBudgets` holds the state of every budget of one app: slot holders, rate starts,
waiters, overrides and the timed structure. It never takes a lock: the memory backend calls it
under its own lock, so each method is one atomic step of the contract. Methods that free
capacity return the ids of the waiters they woke, longest waiting first; the backend moves those
to the front of its ready queue (they take nothing until a claim admits them).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass

from taskgate.record import (
    BlockedBy,
    Budget,
    BudgetHolder,
    BudgetUsage,
    InvocationRecord,
    LimitOverride,
    Rate,
)

_Order = tuple[int, int]  # (-priority, registration sequence): smaller waits less
# A member of the timed structure: ("b", budget key), a rate-blocked budget's wake-up, or
# ("i", invocation id), a delayed call or a retry waiting for its time (backends/base.py).
_Member = tuple[str, str]


class _WaitQueue:
    """The waiters of one budget: an ordered heap per fairness value, and a round-robin ring
    of the values that have waiters (None, the only value without ``fair_by``, is one value)."""

    __slots__ = ("_heaps", "_ring", "size")

    def __init__(self) -> None:
        self._heaps: dict[str | None, list[tuple[int, int, str]]] = {}
        self._ring: deque[str | None] = deque()
        self.size = 0

    def push(self, order: _Order, fair: str | None, invocation_id: str) -> None:
        heap = self._heaps.get(fair)
        if heap is None:
            heap = self._heaps[fair] = []
            self._ring.append(fair)
        heapq.heappush(heap, (order[0], order[1], invocation_id))
        self.size += 1

    def pop(self) -> str:
        fair = self._ring.popleft()
        heap = self._heaps[fair]
        invocation_id = heapq.heappop(heap)[2]
        if heap:
            self._ring.append(fair)
        else:
            del self._heaps[fair]
        self.size -= 1
        return invocation_id

    def remove(self, fair: str | None, invocation_id: str) -> None:
        """Take a waiter out of its value's heap (a cancel)."""
        heap = self._heaps[fair]
        heap[:] = [entry for entry in heap if entry[2] != invocation_id]
        heapq.heapify(heap)
        if not heap:
            del self._heaps[fair]
            self._ring.remove(fair)
        self.size -= 1


@dataclass(slots=True)
class _Parked:
    key: str
    by_rate: bool
    fair: str | None = None


class MemoryBudgets:
    """Every budget's holders, rate starts, waiters and timed wake-ups; see the module doc."""

    def __init__(self) -> None:
        self._sequence = itertools.count()
        self.clear()

    def clear(self) -> None:
        """Forget everything (purge)."""
        self._order: dict[str, _Order] = {}
        self._budgets: dict[str, Budget] = {}  # the latest descriptor seen for each key
        self._holders: dict[str, set[str]] = {}
        self._starts: dict[str, deque[float]] = {}
        self._queues: dict[str, _WaitQueue] = {}
        self._parked: dict[str, _Parked] = {}
        self._waiting_since: dict[str, float] = {}
        # A woken waiter is on the ready queue, unclaimed: it counts against the capacity of
        # the budget that woke it, so that two wake-ups never hand one free slot to two waiters.
        self._woken: dict[str, str] = {}
        self._woken_count: Counter[str] = Counter()
        self._timed: list[tuple[float, _Member]] = []
        self._due: dict[_Member, float] = {}
        self.overrides: dict[str, LimitOverride] = {}

    # --- lifecycle -----------------------------------------------------------------------------

    def register(self, record: InvocationRecord) -> None:
        """Give a new record its place in every waiting line: priority, then call order."""
        self._order[record.invocation_id] = (-record.priority, next(self._sequence))

    def forget(self, invocation_id: str) -> None:
        """Drop what is kept about a deleted (expired) invocation."""
        self._order.pop(invocation_id, None)

    def admit(self, record: InvocationRecord, now: float) -> tuple[Budget | None, bool]:
        """Take every slot and rate token of ``record`` if all its budgets admit it.

        Returns ``(None, False)`` when admitted; else ``(refusing budget, refused by its rate)``
        with nothing taken: the first budget (in key order) that refused.
        """
        woken_from = self._woken.pop(record.invocation_id, None)
        if woken_from is not None:
            self._woken_count[woken_from] -= 1
        budgets = record.plan.budgets
        for budget in budgets:
            self._budgets[budget.key] = budget
        for budget in budgets:
            concurrency, rate = self._effective(budget)
            if concurrency is not None and len(self._holders.get(budget.key, ())) >= concurrency:
                return budget, False
            if rate is not None and self._window(budget.key, rate, now) >= rate.count:
                return budget, True
        for budget in budgets:
            concurrency, rate = self._effective(budget)
            if concurrency is not None:
                self._holders.setdefault(budget.key, set()).add(record.invocation_id)
            if rate is not None:
                starts = self._starts.setdefault(budget.key, deque())
                starts.append(now)
                if len(starts) >= rate.count and budget.key in self._queues:
                    # This start fills the window while others wait: they are due when the
                    # oldest start leaves it (a timed wake-up fired already woke this one).
                    self._arm(("b", budget.key), starts[0] + rate.period)
        self._waiting_since.pop(record.invocation_id, None)
        self._parked.pop(record.invocation_id, None)
        return None, False

    def park(
        self, record: InvocationRecord, budget: Budget, by_rate: bool, now: float
    ) -> list[str]:
        """Make ``record`` wait on ``budget`` (which refused it), in its place.

        A rate refusal puts the budget on the timed structure at the instant its window next
        admits a start. Returns the waiters woken because other budgets of ``record`` have room
        (``record`` may have been woken by one of them, which must not lose that capacity).
        """
        invocation_id = record.invocation_id
        order = self._order.get(invocation_id)
        if order is None:  # registered before a restart of this state (purge): order it now
            order = self._order[invocation_id] = (-record.priority, next(self._sequence))
        self._queues.setdefault(budget.key, _WaitQueue()).push(order, budget.fair, invocation_id)
        self._parked[invocation_id] = _Parked(budget.key, by_rate, budget.fair)
        self._waiting_since.setdefault(invocation_id, now)
        if by_rate:
            self._arm(("b", budget.key), self._rate_ready_at(budget, now))
        woken: list[str] = []
        for other in record.plan.budgets:
            if other.key != budget.key:
                woken += self._wake(other.key, now)
        return woken

    def release(self, record: InvocationRecord, now: float) -> list[str]:
        """Free ``record``'s slots in all its budgets; wake waiters up to the free capacity."""
        invocation_id = record.invocation_id
        for budget in record.plan.budgets:
            holders = self._holders.get(budget.key)
            if holders is not None:
                holders.discard(invocation_id)
                if not holders:
                    del self._holders[budget.key]
        woken: list[str] = []
        for budget in record.plan.budgets:
            woken += self._wake(budget.key, now)
        return woken

    def cancel(self, invocation_id: str, now: float) -> list[str]:
        """Take a cancelled waiting invocation out of its budget's wait queue, or give back
        the capacity it was woken with, and drop its timed entry; returns the waiters woken
        with that capacity (as a release would pass it on)."""
        self._due.pop(("i", invocation_id), None)  # the heap entry is skipped from now on
        self._waiting_since.pop(invocation_id, None)
        parked = self._parked.pop(invocation_id, None)
        if parked is not None:
            queue = self._queues[parked.key]
            queue.remove(parked.fair, invocation_id)
            if not queue.size:
                del self._queues[parked.key]
        woken_from = self._woken.pop(invocation_id, None)
        if woken_from is None:
            return []
        self._woken_count[woken_from] -= 1
        return self._wake(woken_from, now)

    # --- timed wake-ups and overrides ------------------------------------------------------------

    def has_timed(self) -> bool:
        """Whether a rate-blocked budget or a timed invocation waits for its time."""
        return bool(self._due)

    def next_due(self) -> float | None:
        """The earliest instant (epoch seconds) something on the timed structure is due."""
        timed = self._timed
        while timed and self._due.get(timed[0][1]) != timed[0][0]:
            heapq.heappop(timed)  # superseded by an earlier time, or taken off
        return timed[0][0] if timed else None

    def schedule(self, invocation_id: str, due: float) -> bool:
        """Put a delayed or retry-delayed invocation on the timed structure until ``due``.

        Returns whether it is now the earliest entry (a blocked claimer must wait less).
        """
        member = ("i", invocation_id)
        self._due[member] = due
        heapq.heappush(self._timed, (due, member))
        return self._timed[0] == (due, member)

    def process_due(self, now: float) -> tuple[list[str], list[str]]:
        """Handle every entry whose time has come: (woken budget waiters, due invocations).

        A budget wakes ``max(1, free rate capacity)`` of its waiters (they go first in line);
        due invocations, in due order, go to the tail of the ready queue.
        """
        woken: list[str] = []
        due_invocations: list[str] = []
        while (due := self.next_due()) is not None and due <= now:
            member = heapq.heappop(self._timed)[1]
            del self._due[member]
            kind, name = member
            if kind == "i":
                due_invocations.append(name)
            else:
                woken += self._wake(name, now, at_least_one=True)
        return woken, due_invocations

    def set_override(self, name: str, override: LimitOverride | None, now: float) -> list[str]:
        """Store (or, with None, delete) the override of limit ``name``; wake what now fits."""
        if override is None:
            self.overrides.pop(name, None)
        else:
            self.overrides[name] = override
        woken: list[str] = []
        for key in [k for k, q in self._queues.items() if q.size]:
            if self._budgets[key].limit == name:
                woken += self._wake(key, now)
        return woken

    # --- reads ---------------------------------------------------------------------------------

    def blocked_by(self, invocation_id: str, now: float) -> BlockedBy | None:
        """The budget ``invocation_id`` waits on, its holders, and when its rate admits it."""
        parked = self._parked.get(invocation_id)
        if parked is None:
            woken_from = self._woken.get(invocation_id)
            if woken_from is None:
                return None
            # Woken, not claimed yet: it still waits for the budget that woke it.
            parked = _Parked(woken_from, by_rate=False)
        budget = self._budgets[parked.key]
        if parked.by_rate:
            return BlockedBy(parked.key, (), self._rate_ready_at(budget, now))
        holders = tuple(sorted(self._holders.get(parked.key, ())))
        return BlockedBy(parked.key, holders)

    def parked_counts(self) -> dict[str, int]:
        """How many invocations wait on each budget key."""
        return {key: queue.size for key, queue in self._queues.items() if queue.size}

    def usage(
        self, limit: str | None, records: Mapping[str, InvocationRecord], now: float
    ) -> list[BudgetUsage]:
        """Each budget of ``limit`` (every limit when None) in use, sorted by key."""
        oldest: dict[str, float] = {}
        for invocation_id, parked in self._parked.items():
            since = self._waiting_since.get(invocation_id, now)
            oldest[parked.key] = min(since, oldest.get(parked.key, since))
        usages = []
        for key in sorted({*self._holders, *self._queues, *self._starts}):
            budget = self._budgets[key]
            if budget.limit is None or (limit is not None and budget.limit != limit):
                continue
            rate = self._effective(budget)[1]
            starts = self._window(key, rate, now) if rate is not None else 0
            queue = self._queues.get(key)
            holders = tuple(
                BudgetHolder(i, records[i].runner_id, records[i].lease_expires_at)
                for i in sorted(self._holders.get(key, ()))
                if i in records
            )
            waiting = queue.size if queue is not None else 0
            if not (holders or waiting or starts):
                continue
            usages.append(BudgetUsage(key, budget.limit, holders, waiting, oldest.get(key), starts))
        return usages

    # --- steps ---------------------------------------------------------------------------------

    def _effective(self, budget: Budget) -> tuple[int | None, Rate | None]:
        override = self.overrides.get(budget.limit) if budget.limit is not None else None
        if override is None:
            return budget.concurrency, budget.rate
        return override.applied_to(budget.concurrency, budget.rate)

    def _window(self, key: str, rate: Rate, now: float) -> int:
        """Starts of budget ``key`` within ``(now - period, now]``, older ones dropped."""
        starts = self._starts.get(key)
        if starts is None:
            return 0
        horizon = now - rate.period
        while starts and starts[0] <= horizon:
            starts.popleft()
        if not starts:
            del self._starts[key]
            return 0
        return len(starts)

    def _rate_ready_at(self, budget: Budget, now: float) -> float:
        rate = self._effective(budget)[1]
        if rate is None or self._window(budget.key, rate, now) < rate.count:
            return now
        return self._starts[budget.key][0] + rate.period

    def _arm(self, member: _Member, due: float) -> None:
        current = self._due.get(member)
        if current is None or due < current:
            self._due[member] = due
            heapq.heappush(self._timed, (due, member))

    def _capacity(self, key: str, now: float) -> int | None:
        """Free capacity of budget ``key`` minus the waiters already woken for it (None: any)."""
        concurrency, rate = self._effective(self._budgets[key])
        capacity: int | None = None
        if concurrency is not None:
            capacity = concurrency - len(self._holders.get(key, ()))
        if rate is not None:
            free = rate.count - self._window(key, rate, now)
            capacity = free if capacity is None else min(capacity, free)
        return None if capacity is None else capacity - self._woken_count[key]

    def _wake(self, key: str, now: float, *, at_least_one: bool = False) -> list[str]:
        queue = self._queues.get(key)
        if queue is None or not queue.size:
            return []
        capacity = self._capacity(key, now)
        count = queue.size if capacity is None else max(capacity, 1 if at_least_one else 0)
        woken = []
        for _ in range(min(count, queue.size)):
            invocation_id = queue.pop()
            del self._parked[invocation_id]
            self._woken[invocation_id] = key
            self._woken_count[key] += 1
            woken.append(invocation_id)
        if not queue.size:
            del self._queues[key]
        else:
            rate = self._effective(self._budgets[key])[1]
            if rate is not None:  # waiters left: the rate must wake them (no release will)
                starts = self._starts.get(key)
                self._arm(("b", key), (starts[0] if starts else now) + rate.period)
        return woken
