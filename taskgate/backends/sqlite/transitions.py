"""The steps SQLite operations are made of, run inside one open write transaction.

:class:`Transitions` is the SQL twin of the memory backend's private helpers: store a record,
take or park on a running slot, hand freed slots to parked waiters, finish, requeue first. It
never commits; the caller's ``BEGIN IMMEDIATE`` makes a whole operation atomic. Records with
budgets (tasks that use limits) take the budget steps of ``budgets.py`` at the same points.
"""

from __future__ import annotations

import functools
import sqlite3

from taskgate.backends.sqlite import budget_queries as bq
from taskgate.backends.sqlite import queries as q
from taskgate.backends.sqlite.budgets import BudgetSteps, invocation_member
from taskgate.record import Claim, InvocationRecord, encode_budgets
from taskgate.status import InvocationStatus, can_transition

_S = InvocationStatus

# Heads one claim parks (or drops) at most before it returns: a backlog of one hot key would
# otherwise be parked whole in one transaction, holding the write lock (and the finish that
# frees the key) for as long as that takes; the caller claims again at once.
PARK_MAX = 64


class Transitions:
    """Steps on one app's rows within the caller's transaction, all stamped with ``now``.

    ``result_ttl`` is how long an invocation made final by these steps is kept.
    """

    def __init__(
        self, conn: sqlite3.Connection, app_id: str, now: float, result_ttl: float
    ) -> None:
        self.conn = conn
        self.app = app_id
        self.now = now
        self.result_ttl = result_ttl
        # Set by finish_and_claim before its finish: the first waiter the finish wakes is kept
        # here for the claim that follows (which takes it, if it heads the queue) rather than
        # pushed onto the queue and popped again (a hot key's every task).
        self.hand_over = False
        self._handed: tuple[str, int, str] | None = None  # (queue, neg_priority, id)
        # Set by claim when it stopped at PARK_MAX parked or dropped heads: the queue may hold
        # more, and the caller claims again at once (in a transaction of its own).
        self.stopped_early = False

    @functools.cached_property
    def budgets(self) -> BudgetSteps:
        """The budget steps, made on first use: records without budgets never need them."""
        return BudgetSteps(self.conn, self.app, self.now)

    def insert(self, record: InvocationRecord) -> None:
        """Store a new record as REGISTERED, take its registration key, enqueue it.

        A record scheduled for later than ``now`` is stored SCHEDULED and goes on the timed
        table at its time instead of the ready queue.
        """
        plan = record.plan
        scheduled = record.scheduled_for is not None and record.scheduled_for > self.now
        status = _S.SCHEDULED if scheduled else _S.REGISTERED
        inserted = self.conn.execute(
            q.INSERT_INVOCATION,
            (
                self.app,
                record.invocation_id,
                record.task_id,
                record.arguments,
                plan.registration_key,
                plan.running_key,
                plan.running_limit,
                int(plan.drop_when_blocked),
                record.max_retries,
                status.value,
                record.created_at or self.now,
                encode_budgets(plan.budgets) if plan.budgets else None,
                record.priority,
                record.scheduled_for,
                record.queue,
                record.trace_context,  # NULL unless tracing is on: a NULL costs a header byte
                q.history_entry(status, self.now, None),
            ),
        )
        if plan.registration_key is not None:
            self.conn.execute(
                q.TAKE_REGISTRATION_KEY, (self.app, plan.registration_key, record.invocation_id)
            )
        if scheduled:
            member = invocation_member(record.invocation_id)
            self.conn.execute(bq.TIMED_ADD, (self.app, member, record.scheduled_for))
        else:  # with its task and seq: invocations_by_status_task leaves this row out
            queued = (self.app, record.queue, -record.priority, record.invocation_id)
            self.conn.execute(q.QUEUE_PUSH_BACK, (*queued, record.task_id, inserted.lastrowid))

    def claim(
        self,
        runner_id: str,
        max_count: int,
        lease_seconds: float,
        *,
        look_timed: bool = True,
        queues: frozenset[str] | None = None,
    ) -> list[Claim]:
        """Take ready invocations off the queues until ``max_count`` run (see Backend.claim).

        First, with ``look_timed``, what is due in the ``timed`` table goes to the ready queue.
        ``queues``: take only from those (None: from every queue; empty: from none).
        """
        if queues is not None and not queues:
            self._take_handed(queues, moved=False)  # back in line, if the finish kept one
            return []
        params: tuple[str, ...] = (self.app,)
        if queues is None:
            pop = q.QUEUE_POP_PLAIN_HEAD
        else:
            names = sorted(queues)
            pop, params = q.pop_head_sql(tuple(names)), (self.app, *names)
        claims: list[Claim] = []
        running_entry = q.history_entry(_S.RUNNING, self.now, runner_id)
        moved = (
            look_timed
            and max_count
            and self.conn.execute(bq.TIMED_DUE_EXISTS, (self.app, self.now)).fetchone()
        )
        if moved:
            self.budgets.move_due()
        handed = self._take_handed(queues, bool(moved))
        blocked = 0  # heads parked or dropped by this claim
        while len(claims) < max_count:
            if blocked == PARK_MAX:
                self.stopped_early = True
                break
            held = handed is not None  # the finish took its slot for it
            if handed is not None:  # first in line: its push and pop would cancel out
                head, handed = (handed[2],), None
            else:
                head = self.conn.execute(pop, params).fetchone()
            if (
                head is None
                and queues is None
                and self.conn.execute(q.OTHER_LANE_NOT_EMPTY, params).fetchone()
            ):  # lane 1 has rows: compare the two lanes' heads
                head = self.conn.execute(q.QUEUE_POP_HEAD, params).fetchone()
            if head is None:
                break
            lease = (runner_id, self.now + lease_seconds, running_entry, self.app, head[0])
            row = self._start(lease, held)
            if row is None:
                blocked += 1
                continue
            self.release_registration_key(row)
            claims.append(
                Claim(
                    row["invocation_id"],
                    row["task_id"],
                    row["arguments"],
                    row["attempt"],
                    row["num_retries"],
                    row["max_retries"],
                )
            )
        return claims

    def _take_handed(
        self, queues: frozenset[str] | None, moved: bool
    ) -> tuple[str, int, str] | None:
        """The waiter the finish before this claim woke and kept for it (see release_slot), if
        it heads the ready queue; else it goes to the queue's front like any woken waiter."""
        handed, self._handed = self._handed, None
        self.hand_over = False  # a slot released by this claim's steps is not handed over
        if handed is not None and (
            queues is not None  # the head of some queues (or none): not worth deciding here
            or moved  # due waiters went to the front, maybe before it
            or self.conn.execute(q.QUEUE_AHEAD_OF, (self.app, handed[1])).fetchone()
        ):
            self._push_front([handed])
            handed = None
        return handed

    def _start(self, lease: tuple[object, ...], held: bool) -> sqlite3.Row | None:
        """Start the popped invocation of ``lease`` (START_READY's parameters), or None when its
        limits park or drop it (or it is gone). ``held``: it holds its slot (handed over)."""
        # Most invocations have no budgets and no running key, hold their slot (woken) or find
        # one free: one UPDATE starts them (and one INSERT takes the free slot).
        row: sqlite3.Row | None = self.conn.execute(q.START_READY, lease).fetchone()
        if row is None:
            return self._start_limited(str(lease[-1]), lease)
        if row["running_key"] is not None and not held:
            slot = (self.app, row["running_key"], row["invocation_id"])
            self.conn.execute(q.TAKE_STARTED_SLOT, slot)
        return row

    def _start_limited(self, invocation_id: str, lease: tuple[object, ...]) -> sqlite3.Row | None:
        """Start a popped invocation that START_READY did not: admit it through its budgets or
        its running key first (None when they park or drop it, or it is gone). ``lease``: the
        parameters of START_READY, which START_RUNNING shares."""
        row = self.conn.execute(q.SELECT_INVOCATION, (self.app, invocation_id)).fetchone()
        if row is None:
            return None
        if not (self._take_budgets(row) if row["budgets"] else self._take_slot(row)):
            return None
        assert can_transition(_S(row["status"]), _S.RUNNING), f"{row['status']} -> running"
        started: sqlite3.Row = self.conn.execute(q.START_RUNNING, lease).fetchone()
        return started

    def finish_owned(
        self,
        invocation_id: str,
        runner_id: str,
        attempt: int,
        status: InvocationStatus,
        payload: bytes,
    ) -> sqlite3.Row | None:
        """RUNNING -> ``status`` (SUCCESS or FAILED) in one statement, if ``runner_id`` still
        runs ``attempt`` and no cancel was requested; the row's invocation_id, running_key,
        running_limit and budgets (for :meth:`release_slot`), else None and nothing changed."""
        entry = q.history_entry(status, self.now, runner_id)
        params = (*self._final_values(status, payload, entry), self.app, invocation_id)
        row: sqlite3.Row | None = self.conn.execute(
            q.FINISH_OWNED, (*params, runner_id, attempt)
        ).fetchone()
        return row

    def _final_values(
        self, status: InvocationStatus, payload: bytes, entry: str
    ) -> tuple[str, float, bytes | None, bytes | None, str]:
        """status, expires_at, result, error and history entry of a final invocation: the
        result stored for SUCCESS, the error payload (if any) otherwise."""
        result, error = (payload, None) if status is _S.SUCCESS else (None, payload or None)
        return status.value, self.now + self.result_ttl, result, error, entry

    def owned(self, invocation_id: str, runner_id: str, attempt: int) -> sqlite3.Row | None:
        """The row, if ``runner_id`` still runs ``attempt`` of it (the fencing check)."""
        row: sqlite3.Row | None = self.conn.execute(
            q.OWNED, (self.app, invocation_id, runner_id, attempt)
        ).fetchone()
        return row

    def retry(self, row: sqlite3.Row, error: bytes, runner_id: str, delay: float = 0.0) -> None:
        """RUNNING -> RETRY: count it, take the registration key back if free, requeue.

        With a ``delay``, it goes on the timed table at ``now + delay`` instead of the queue.
        """
        invocation_id = row["invocation_id"]
        self.conn.execute(q.RECORD_RETRY, (error, self.app, invocation_id))
        self._history(invocation_id, _S.RETRY, runner_id, row["status"])
        self._take_registration_key(row)
        if delay > 0:
            member = invocation_member(invocation_id)
            self.conn.execute(bq.TIMED_ADD, (self.app, member, self.now + delay))
        else:
            self.conn.execute(
                q.QUEUE_PUSH_BACK,
                (self.app, row["queue"], -row["priority"], invocation_id, None, None),
            )

    def finalize(
        self,
        row: sqlite3.Row,
        status: InvocationStatus,
        runner_id: str | None,
        payload: bytes,
    ) -> None:
        """Make the invocation final, storing the result (SUCCESS) or error payload."""
        invocation_id = row["invocation_id"]
        entry = self._entry(status, runner_id, row["status"])
        values = self._final_values(status, payload, entry)
        self.conn.execute(q.RECORD_FINAL, (*values, self.app, invocation_id))

    def requeue_first(self, row: sqlite3.Row, runner_id: str | None) -> None:
        """RUNNING -> REGISTERED, first in line for its key and in the ready queue."""
        invocation_id = row["invocation_id"]
        self.conn.execute(q.REQUEUE, (self.app, invocation_id))
        self._history(invocation_id, _S.REGISTERED, runner_id, row["status"])
        self._take_registration_key(row)
        front = (self.app, row["queue"], -row["priority"], invocation_id)
        if row["budgets"]:
            self.budgets.release(row)
            self.conn.execute(q.QUEUE_PUSH_FRONT, front)
            return
        key = row["running_key"]
        if key is None:
            self.conn.execute(q.QUEUE_PUSH_FRONT, front)
            return
        park = (self.app, key, -row["priority"], invocation_id, row["queue"])
        self.conn.execute(q.PARK_FRONT, park)
        self.release_slot(row)

    def release_slot(self, row: sqlite3.Row) -> None:
        """Free the row's slot and hand freed slots to the first parked waiters, in order."""
        if row["budgets"]:
            self.budgets.release(row)
            return
        key = row["running_key"]
        if key is None:
            return
        self.conn.execute(q.RELEASE_SLOT, (self.app, key, row["invocation_id"]))
        promoted: list[tuple[str, int, str]] = []
        limit = row["running_limit"]
        pop = (self.app, key, limit)
        # Each pop counts the holders again: it stops when the key is full or nobody waits
        # (certainly full once ``limit`` were woken: no statement to learn it).
        while len(promoted) < limit and (
            head := self.conn.execute(q.PARKED_POP_IF_FREE, pop).fetchone()
        ):
            neg_priority, invocation_id, queue = head
            self.conn.execute(q.TAKE_SLOT, (self.app, key, invocation_id))
            promoted.append((queue, neg_priority, invocation_id))
        if self.hand_over and promoted:  # the claim that follows takes it (see claim)
            self._handed, promoted = promoted[0], promoted[1:]
        self.hand_over = False
        self._push_front(promoted)

    def _push_front(self, woken: list[tuple[str, int, str]]) -> None:
        """Woken waiters to the front of the ready queue (of their priority), first woken
        first."""
        for queue, neg_priority, invocation_id in reversed(woken):
            self.conn.execute(q.QUEUE_PUSH_FRONT, (self.app, queue, neg_priority, invocation_id))

    def expire_finals(self, batch: int) -> int:
        """Delete up to ``batch`` final invocations whose result TTL has passed; how many."""
        expired = self.conn.execute(q.EXPIRED_FINALS, (self.app, self.now, batch)).fetchall()
        for (invocation_id,) in expired:
            self.conn.execute(q.DELETE_INVOCATION, (self.app, invocation_id))
        return len(expired)

    # --- private steps -------------------------------------------------------------------------

    def _take_slot(self, row: sqlite3.Row) -> bool:
        """Take (or keep a handed-over) slot; park or drop the invocation when the key is full.

        Only rows START_READY refused come here: one in a status it starts had its key full and
        held no slot (START_READY takes free and held ones), so it parks or drops at once."""
        key = row["running_key"]
        if key is None:
            return True
        invocation_id = row["invocation_id"]
        if row["status"] not in q.START_READY_STATUSES:
            take = (self.app, key, invocation_id, row["running_limit"])
            if self.conn.execute(q.TAKE_FREE_SLOT, take).rowcount:
                return True
            # Full, or held already: which one?
            if self.conn.execute(q.SLOT_HELD, (self.app, key, invocation_id)).fetchone():
                return True
        if row["drop_when_blocked"]:
            self.release_registration_key(row)
            self.finalize(row, _S.CONCURRENCY_CONTROLLED_FINAL, None, b"")
        else:
            self._set_status(row, _S.CONCURRENCY_CONTROLLED, None)
            park = (self.app, key, -row["priority"], invocation_id, row["queue"])
            self.conn.execute(q.PARK_BACK, park)
        return False

    def _take_budgets(self, row: sqlite3.Row) -> bool:
        """Admit ``row`` into every budget or none; park or drop it when one refuses."""
        refusal = self.budgets.admit(row)
        if refusal is None:
            return True
        if row["drop_when_blocked"]:
            self.release_registration_key(row)
            self.finalize(row, _S.CONCURRENCY_CONTROLLED_FINAL, None, b"")
            return False
        # A woken waiter that parks again keeps its status and adds no history entry.
        if row["status"] != _S.CONCURRENCY_CONTROLLED:
            self._set_status(row, _S.CONCURRENCY_CONTROLLED, None)
        self.budgets.park(row, refusal)
        return False

    def _take_registration_key(self, row: sqlite3.Row) -> None:
        key = row["registration_key"]
        if key is not None:
            self.conn.execute(q.TAKE_REGISTRATION_KEY, (self.app, key, row["invocation_id"]))

    def release_registration_key(self, row: sqlite3.Row) -> None:
        """Free the registration key ``row`` holds (if it holds it)."""
        key = row["registration_key"]
        if key is not None:
            self.conn.execute(q.RELEASE_REGISTRATION_KEY, (self.app, key, row["invocation_id"]))

    def _set_status(self, row: sqlite3.Row, status: InvocationStatus, runner: str | None) -> None:
        entry = self._entry(status, runner, row["status"])
        self.conn.execute(q.SET_STATUS, (status.value, entry, self.app, row["invocation_id"]))

    def _history(
        self, invocation_id: str, status: InvocationStatus, runner_id: str | None, previous: str
    ) -> None:
        """Append the transition to ``previous`` -> ``status`` to the row's history."""
        entry = self._entry(status, runner_id, previous)
        self.conn.execute(q.APPEND_HISTORY, (entry, self.app, invocation_id))

    def _entry(self, status: InvocationStatus, runner_id: str | None, previous: str) -> str:
        """The history entry of a transition from ``previous``, stamped ``now``."""
        assert can_transition(_S(previous), status), f"{previous} -> {status}"
        return q.history_entry(status, self.now, runner_id)
