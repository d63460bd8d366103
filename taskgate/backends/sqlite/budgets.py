"""The budget path (limits) of the SQLite backend: admission, parking and wake-ups in SQL.

The steps run inside the caller's ``BEGIN IMMEDIATE`` transaction, like ``transitions.py``, so
an admission checks every budget of an invocation and takes every slot and rate start in one
atomic step, or takes nothing (the contract: ``taskgate/backends/base.py``, "Budgets").
Records without budgets never come here.
"""

from __future__ import annotations

import functools
import math
import sqlite3
from typing import NamedTuple

from taskgate.backends.sqlite import budget_queries as bq
from taskgate.backends.sqlite import queries as q
from taskgate.record import Budget, LimitOverride, Rate, decode_budgets

# Due timed entries moved per claim: each is a handful of indexed statements.
TIMED_BATCH = 32

_decode = functools.lru_cache(maxsize=1024)(decode_budgets)


class Refusal(NamedTuple):
    """The first budget that refused an admission, and when its rate admits (a rate refusal)."""

    budget: Budget
    ready_at: float | None


def timed_member(budget_key: str) -> str:
    """The timed entry of a budget whose rate refused a waiter."""
    return f"b:{budget_key}"


def invocation_member(invocation_id: str) -> str:
    """The timed entry of a delayed invocation (SCHEDULED, or RETRY with a retry delay)."""
    return f"i:{invocation_id}"


class BudgetSteps:
    """Budget steps on one app's rows within the caller's transaction, stamped with ``now``."""

    def __init__(self, conn: sqlite3.Connection, app_id: str, now: float) -> None:
        self.conn = conn
        self.app = app_id
        self.now = now
        self._overrides: dict[str, LimitOverride] | None = None

    # --- admission -----------------------------------------------------------------------------

    def admit(self, row: sqlite3.Row) -> Refusal | None:
        """Take every budget of ``row`` (all or none); None when admitted, else the refusal.

        A refusal takes nothing, but each budget that did admit and has waiters wakes one:
        the capacity this invocation could not use is passed on rather than left idle.
        """
        invocation_id = row["invocation_id"]
        if row["parked_on"] is not None:
            # Woken by the budget it waited on: no longer on its way there, admitted or not.
            self.conn.execute(bq.TAKE_WOKEN, (self.app, row["parked_on"]))
            self.conn.execute(bq.DROP_SPENT_WOKEN, (self.app, row["parked_on"]))
        budgets = _decode(row["budgets"])
        limits = [self.effective(budget) for budget in budgets]
        for index, (budget, (concurrency, rate)) in enumerate(zip(budgets, limits, strict=True)):
            refusal = self._check(budget, concurrency, rate)
            if refusal is not None:
                passed_on = [
                    waiter
                    for earlier, (held, _) in zip(budgets[:index], limits[:index], strict=True)
                    if held is None or self._free_slots(earlier.key, held) > 0
                    for waiter in self.wake(earlier, 1)
                ]
                woken_from = row["parked_on"]
                if woken_from is not None and woken_from != budget.key:
                    later = next((b for b in budgets if b.key == woken_from), None)
                    if later is not None:
                        passed_on += self._wake_fitting(later, at_least=0)
                self.push_front(passed_on)
                return refusal
        for budget, (concurrency, rate) in zip(budgets, limits, strict=True):
            if concurrency is not None:
                self.conn.execute(bq.TAKE_HOLD, (self.app, budget.key, invocation_id, budget.limit))
            if rate is not None:
                self.conn.execute(
                    bq.RECORD_START,
                    (self.app, budget.key, self.now, invocation_id, rate.period, budget.limit),
                )
        if row["parked_on"] is not None:
            self.conn.execute(bq.CLEAR_PARKED, (self.app, invocation_id))
        return None

    def park(self, row: sqlite3.Row, refusal: Refusal) -> None:
        """Make ``row`` wait for the budget that refused it, in its place in the order."""
        budget = refusal.budget
        invocation_id = row["invocation_id"]
        since, seq = self.conn.execute(
            bq.MARK_PARKED, (budget.key, self.now, refusal.ready_at, self.app, invocation_id)
        ).fetchone()
        self.conn.execute(
            bq.PARK,
            (
                self.app,
                budget.key,
                budget.fair or "",
                -row["priority"],
                seq,
                invocation_id,
                since,
                budget.limit,
            ),
        )
        if refusal.ready_at is not None:
            self.conn.execute(bq.TIMED_ADD, (self.app, timed_member(budget.key), refusal.ready_at))

    # --- release and wake-ups ------------------------------------------------------------------

    def release(self, row: sqlite3.Row) -> None:
        """Free every slot ``row`` holds and wake the waiters that fit in the freed slots."""
        invocation_id = row["invocation_id"]
        woken: list[str] = []
        for budget in _decode(row["budgets"]):
            # Whatever the values now: an override may have added or removed slots since the
            # admission took them.
            self.conn.execute(bq.RELEASE_HOLD, (self.app, budget.key, invocation_id))
            concurrency, _ = self.effective(budget)
            if concurrency is not None:
                free = self._free_slots(budget.key, concurrency)
                if free > 0:
                    woken += self.wake(budget, free)
        self.push_front(woken)

    def move_due(self) -> None:
        """Move what is due on the timed structure to the ready queue.

        Budgets whose rate admits again (``b:``) wake their waiters to the front; delayed
        invocations (``i:``) go to the tail, earliest due first, their status unchanged.
        """
        woken: list[str] = []
        due = self.conn.execute(bq.TIMED_TAKE_DUE, (self.app, self.now, TIMED_BATCH)).fetchall()
        # RETURNING follows no ORDER BY: sort, so invocations due earlier queue first.
        for member, _ in sorted(due, key=lambda entry: entry[1]):
            if member.startswith("i:"):
                self.conn.execute(q.QUEUE_PUSH_BACK_WAITING, (self.app, member[2:]))
                continue
            budget = self._waited_budget(member.removeprefix("b:"))
            if budget is not None:
                woken += self._wake_fitting(budget, at_least=1)
        self.push_front(woken)

    def wake_limit(self, name: str) -> None:
        """Wake, in every budget of limit ``name``, the waiters its values now admit."""
        woken: list[str] = []
        for (key,) in self.conn.execute(bq.BUDGETS_WAITING_OF_LIMIT, (self.app, name)).fetchall():
            budget = self._waited_budget(key)
            if budget is not None:
                woken += self._wake_fitting(budget, at_least=0)
        self.push_front(woken)

    def wake(self, budget: Budget, count: int) -> list[str]:
        """Take up to ``count`` waiters of ``budget`` off its waiters, in waking order.

        Within a fairness value that is ``(-priority, seq)`` order; across values, round robin:
        the head of the next value after the last one served.
        """
        woken: list[str] = []
        for _ in range(count):
            head = self.conn.execute(bq.WAKE_NEXT, (self.app, budget.key)).fetchone()
            if head is None:
                break
            fair, invocation_id = head
            if fair:
                self.conn.execute(bq.SET_CURSOR, (self.app, budget.key, fair))
            woken.append(invocation_id)
        if woken:
            self.conn.execute(bq.ADD_WOKEN, (self.app, budget.key, len(woken)))
        return woken

    def withdraw(self, row: sqlite3.Row) -> bool:
        """Take a cancelled waiter out of the budget it waits for; True if it was parked there.

        A waiter woken already (on its way through the ready queue: False) was promised a slot
        or a start: that promise goes on to the budget's next waiters, as much as fits.
        """
        key = row["parked_on"]
        if key is None:
            return False
        budget = next((b for b in _decode(row["budgets"]) if b.key == key), None)
        fair = (budget.fair if budget is not None else None) or ""
        place = (self.app, key, fair, -row["priority"], row["seq"])
        if self.conn.execute(bq.UNPARK_WAITER, place).rowcount:
            if not self._has_waiters(key):  # its round-robin cursor goes with the last waiter
                self.conn.execute(bq.DROP_CURSOR, (self.app, key))
            return True
        self.conn.execute(bq.TAKE_WOKEN, (self.app, key))
        self.conn.execute(bq.DROP_SPENT_WOKEN, (self.app, key))
        if budget is not None:
            self.push_front(self._wake_fitting(budget, at_least=0))
        return False

    def push_front(self, woken: list[str]) -> None:
        """Put woken waiters at the front of the ready queue, the first woken first."""
        for invocation_id in reversed(woken):
            self.conn.execute(q.QUEUE_PUSH_FRONT_ID, (self.app, invocation_id))

    # --- values --------------------------------------------------------------------------------

    def effective(self, budget: Budget) -> tuple[int | None, Rate | None]:
        """The budget's concurrency and rate, the limit's stored override applied."""
        if budget.limit is None:
            return budget.concurrency, budget.rate
        if self._overrides is None:
            self._overrides = bq.load_overrides(self.conn, self.app)
        override = self._overrides.get(budget.limit)
        if override is None:
            return budget.concurrency, budget.rate
        return override.applied_to(budget.concurrency, budget.rate)

    # --- private steps -------------------------------------------------------------------------

    def _check(self, budget: Budget, concurrency: int | None, rate: Rate | None) -> Refusal | None:
        if concurrency is not None and self._holders(budget.key) >= concurrency:
            return Refusal(budget, None)
        if rate is not None:
            starts, oldest = self._window(budget.key, rate)
            if starts >= rate.count:
                return Refusal(budget, (self.now if oldest is None else oldest) + rate.period)
        return None

    def _wake_fitting(self, budget: Budget, *, at_least: int) -> list[str]:
        """Wake as many waiters as ``budget`` admits now (``at_least`` anyway).

        With a rate, the waiters left behind need a wake-up of their own, since no release
        frees a rate: the budget goes on the timed structure at the next instant its window
        can admit (the oldest start's expiry; ``period`` from now for an empty window, whose
        starts are about to be the ones just woken). Waking there too early only costs one
        waiter parking again, at the exact instant.
        """
        concurrency, rate = self.effective(budget)
        promised = self._woken(budget.key)
        free = (
            math.inf if concurrency is None else concurrency - self._holders(budget.key) - promised
        )
        next_at = None
        if rate is not None:
            starts, oldest = self._window(budget.key, rate)
            free = min(free, rate.count - starts - promised)
            next_at = (self.now if oldest is None else oldest) + rate.period
        count = max(at_least, int(min(free, 1 << 30)))
        woken = self.wake(budget, count)
        if next_at is not None and len(woken) == count and self._has_waiters(budget.key):
            self.conn.execute(bq.TIMED_ADD, (self.app, timed_member(budget.key), next_at))
        return woken

    def _free_slots(self, key: str, concurrency: int) -> int:
        """Slots of ``key`` neither held nor promised to a waiter it woke already."""
        return concurrency - self._holders(key) - self._woken(key)

    def _woken(self, key: str) -> int:
        found = self.conn.execute(bq.WOKEN_COUNT, (self.app, key)).fetchone()
        return int(found[0]) if found is not None else 0

    def _has_waiters(self, key: str) -> bool:
        return self.conn.execute(bq.HAS_WAITERS, (self.app, key)).fetchone() is not None

    def _holders(self, key: str) -> int:
        count: int = self.conn.execute(bq.HOLDER_COUNT, (self.app, key)).fetchone()[0]
        return count

    def _window(self, key: str, rate: Rate) -> tuple[int, float | None]:
        """Starts of ``key`` within ``(now - period, now]`` and the oldest of them; trims the
        older ones."""
        floor = self.now - rate.period
        self.conn.execute(bq.TRIM_STARTS, (self.app, key, floor))
        starts, oldest = self.conn.execute(bq.WINDOW_STARTS, (self.app, key, floor)).fetchone()
        return starts, oldest

    def _waited_budget(self, key: str) -> Budget | None:
        """The declared budget ``key`` as its head waiter's record holds it (None: no waiter)."""
        row = self.conn.execute(bq.HEAD_WAITER_BUDGETS, (self.app, key)).fetchone()
        if row is None:
            return None
        return next((b for b in _decode(row[0]) if b.key == key), None)
