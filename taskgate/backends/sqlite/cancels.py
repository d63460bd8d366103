"""Cancellation and periodic ticks of the SQLite backend (contract: ``base.py``, "Cancellation"
and "Periodic ticks").

The steps run inside the caller's ``BEGIN IMMEDIATE`` transaction (see ``transitions.py``):
cancelling a waiting invocation takes it out of every place it can wait in and frees what it
was handed, in the same step that makes it final. A running one gets ``cancel_requested`` and
a row in ``cancel_requests`` that its runner takes with :meth:`CancelRequests.wait`; whatever
way the run then ends, :func:`end_cancelled` makes it ``CANCELLED``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from taskgate.backends.sqlite import budget_queries as bq
from taskgate.backends.sqlite import queries as q
from taskgate.backends.sqlite.budgets import invocation_member
from taskgate.backends.sqlite.connection import SqliteConnector
from taskgate.backends.sqlite.transitions import Transitions
from taskgate.backoff import Backoff
from taskgate.logfields import log_fields
from taskgate.record import CancelResult
from taskgate.status import InvocationStatus

logger = logging.getLogger(__name__)

_S = InvocationStatus

MARK_CANCEL_REQUESTED = (
    "UPDATE invocations SET cancel_requested = 1 WHERE app_id = ? AND invocation_id = ?"
)
ADD_REQUEST = (
    "INSERT OR IGNORE INTO cancel_requests (app_id, runner_id, invocation_id) VALUES (?, ?, ?)"
)
HAS_REQUESTS = "SELECT 1 FROM cancel_requests WHERE app_id = ? AND runner_id = ? LIMIT 1"
TAKE_REQUESTS = """
DELETE FROM cancel_requests WHERE app_id = ? AND runner_id = ? RETURNING invocation_id
"""
DROP_REQUEST = (
    "DELETE FROM cancel_requests WHERE app_id = ? AND runner_id = ? AND invocation_id = ?"
)
# The queue row of a waiting invocation: a scan of its priority's range of its lane in the
# primary key (cancels are rare; an index by id would cost every push and pop).
QUEUE_REMOVE = """
DELETE FROM queue WHERE app_id = ?1 AND lane = (?2 <> 'default') AND neg_priority = ?3
    AND invocation_id = ?4
"""
LAST_TICK = "SELECT last_tick FROM periodic_ticks WHERE app_id = ? AND task_id = ?"
SET_TICK = """
INSERT INTO periodic_ticks (app_id, task_id, last_tick) VALUES (?, ?, ?)
ON CONFLICT (app_id, task_id) DO UPDATE SET last_tick = excluded.last_tick
"""
ALL_TICKS = "SELECT task_id, last_tick FROM periodic_ticks WHERE app_id = ?"


def cancel(steps: Transitions, invocation_id: str) -> CancelResult:
    """Cancel ``invocation_id`` within the caller's transaction (see ``Backend.cancel``)."""
    conn, app = steps.conn, steps.app
    row = conn.execute(q.SELECT_INVOCATION, (app, invocation_id)).fetchone()
    if row is None:
        return CancelResult.MISSING
    status = _S(row["status"])
    if status.is_final or row["cancel_requested"]:
        return CancelResult.FINAL
    if status is _S.RUNNING:
        conn.execute(MARK_CANCEL_REQUESTED, (app, invocation_id))
        conn.execute(ADD_REQUEST, (app, row["runner_id"], invocation_id))
        return CancelResult.REQUESTED
    # Waiting: at most one of a timed entry, a parked place or a ready-queue row (a due timed
    # invocation and a woken waiter sit in the ready queue).
    placed = conn.execute(bq.TIMED_REMOVE, (app, invocation_member(invocation_id))).rowcount > 0
    if not placed and row["budgets"]:
        placed = steps.budgets.withdraw(row)
    elif not placed and row["running_key"] is not None:
        place = (app, row["running_key"], -row["priority"], invocation_id)
        placed = conn.execute(q.UNPARK_ID, place).rowcount > 0
    if not placed:
        conn.execute(QUEUE_REMOVE, (app, row["queue"], -row["priority"], invocation_id))
    steps.release_registration_key(row)
    steps.finalize(row, _S.CANCELLED, None, b"")
    # A slot handed to it (a woken or handed-back invocation of a running key) goes on to the
    # next parked waiter; on the budget path it holds nothing, and this wakes what fits.
    steps.release_slot(row)
    return CancelResult.CANCELLED


def end_cancelled(
    steps: Transitions, row: sqlite3.Row, runner_id: str | None, payload: bytes = b""
) -> None:
    """RUNNING -> CANCELLED (a cancelled run, or any way out of a cancel-requested one): its
    unread request goes, its slots are released."""
    if row["cancel_requested"]:
        steps.conn.execute(DROP_REQUEST, (steps.app, row["runner_id"], row["invocation_id"]))
    steps.finalize(row, _S.CANCELLED, runner_id, payload)
    steps.release_slot(row)
    logger.info(
        "invocation %s of %s cancelled",
        row["invocation_id"],
        row["task_id"],
        extra=log_fields(row["invocation_id"], row["task_id"], row["attempt"], runner_id),
    )


def take_tick(conn: sqlite3.Connection, app: str, task_id: str, tick: float) -> bool:
    """Store ``tick`` as ``task_id``'s last tick unless one at or after it is stored already;
    True when stored (the caller registers the tick's invocation in the same transaction)."""
    last = conn.execute(LAST_TICK, (app, task_id)).fetchone()
    if last is not None and last[0] >= tick:
        return False
    conn.execute(SET_TICK, (app, task_id, tick))
    return True


def ticks(conn: sqlite3.Connection, app: str) -> dict[str, float]:
    """The last tick registered per periodic task."""
    return dict(conn.execute(ALL_TICKS, (app,)).fetchall())


class CancelRequests:
    """Delivers cancel requests to runners: at once within this process (a condition that
    :meth:`notify` signals), by a cheap indexed read that backs off from ``max_wait / 5`` to
    ``max_wait`` for requests made by other processes (a cancel is not latency-critical: a
    watcher that waits all day costs a handful of reads a second, not one per claim look)."""

    def __init__(self, db: SqliteConnector, app_id: str, max_wait: float) -> None:
        self._db = db
        self._app = app_id
        self._max_wait = max_wait
        self._changed = threading.Condition()
        self._requests = 0  # counts notify(): a waiter reads the table when it moved
        self._stops = 0  # counts stop(): waiters return at once

    def notify(self) -> None:
        """A cancel was requested in this process: waiting runners look now."""
        with self._changed:
            self._requests += 1
            self._changed.notify_all()

    def stop(self) -> None:
        """Make every :meth:`wait` of this process return (empty) at once."""
        with self._changed:
            self._stops += 1
            self._changed.notify_all()

    def wait(self, runner_id: str, timeout: float) -> list[str]:
        """Take the requests for ``runner_id``, blocking up to ``timeout`` for the first one;
        each request is returned once (its row is deleted as it is taken)."""
        deadline = time.monotonic() + timeout
        backoff = Backoff(self._max_wait / 5, self._max_wait)
        with self._changed:
            stops = self._stops
        while True:
            with self._changed:
                requests = self._requests
            if self._db.read(
                lambda conn: conn.execute(HAS_REQUESTS, (self._app, runner_id)).fetchone()
            ):
                taken = self._db.write(
                    lambda conn: [
                        row[0] for row in conn.execute(TAKE_REQUESTS, (self._app, runner_id))
                    ]
                )
                if taken:
                    return taken
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with self._changed:
                if stops != self._stops:
                    return []
                if requests == self._requests:
                    self._changed.wait(min(backoff.next(), remaining))
