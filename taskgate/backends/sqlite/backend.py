"""The SQLite backend: the contract of :class:`Backend` on one file shared by many processes.

Each contract operation is one ``BEGIN IMMEDIATE`` transaction (see ``connection.py``). Waits
block on an in-process notification first, so a register, finish or wake in this process is seen
at once; work from other processes is noticed by a cheap indexed read that backs off from 1 ms
to ``MAX_IDLE_WAIT`` while nothing happens, and never sleeps past the next due entry of the
``timed`` table (the instant a rate limit admits a waiter, or a delayed call or retry is due).
Tasks that use limits take the budget steps of ``budgets.py`` inside the same transactions;
cancels, cancel requests and periodic ticks are in ``cancels.py``.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from taskgate.backends.base import Backend, BackendOptions, log_stale_report
from taskgate.backends.sqlite import budget_queries as bq
from taskgate.backends.sqlite import cancels, descriptions
from taskgate.backends.sqlite import queries as q
from taskgate.backends.sqlite.connection import SqliteConnector
from taskgate.backends.sqlite.reporting import SqliteReads
from taskgate.backends.sqlite.transitions import Transitions
from taskgate.backoff import Backoff
from taskgate.logfields import log_fields
from taskgate.record import (
    CancelResult,
    Claim,
    InvocationRecord,
    LimitOverride,
    Outcome,
    OutcomeKind,
    RegisterResult,
    RunnerInfo,
)
from taskgate.status import InvocationStatus

logger = logging.getLogger(__name__)

_S = InvocationStatus

# The longest an idle claim or result wait sleeps between checks for another process's commit.
MAX_IDLE_WAIT = 0.02
# A runner's cancel watcher looks for requests of other processes at most this far apart.
CANCEL_LOOK_MAX_WAIT = 0.25
# How often a busy process's claims look at the timed table (rate waiters, delayed calls and
# retries due): often enough that they are claimable within milliseconds of their instant,
# rarely enough that other tasks do not pay a statement per claim. Idle claims look whenever
# one is due.
TIMED_LOOK_INTERVAL = 0.005


class SqliteBackend(SqliteReads, Backend):
    """Invocations, queue, keys, slots and parked lists as tables of one SQLite file."""

    def __init__(self, path: Path, options: BackendOptions) -> None:
        super().__init__(options)
        self.path = path
        self._db = SqliteConnector(path)
        self._app = options.app_id
        self._work = threading.Condition()
        self._wake_generation = 0
        self._next_timed_look = 0.0
        self._final_events: dict[str, threading.Event] = {}
        self._events_lock = threading.Lock()
        self._cancel_requests = cancels.CancelRequests(self._db, self._app, CANCEL_LOOK_MAX_WAIT)

    # --- the atomic contract -------------------------------------------------------------------

    def register(self, record: InvocationRecord) -> RegisterResult:
        return self.register_many([record])[0]

    def register_many(self, records: Sequence[InvocationRecord]) -> list[RegisterResult]:
        def operation(conn: sqlite3.Connection) -> list[RegisterResult]:
            steps = self._steps(conn, time.time())
            return [self._register_in(conn, steps, record) for record in records]

        results = self._db.write(operation)
        if any(result.created for result in results):
            self._notify_claimers()
        return results

    def _register_in(
        self, conn: sqlite3.Connection, steps: Transitions, record: InvocationRecord
    ) -> RegisterResult:
        key = record.plan.registration_key
        if key is not None:
            holder = conn.execute(q.REGISTRATION_HOLDER, (self._app, key)).fetchone()
            if holder is not None:
                return RegisterResult(holder[0], False, holder[1])
        steps.insert(record)
        return RegisterResult(record.invocation_id, True)

    def claim(
        self,
        runner_id: str,
        max_count: int,
        lease_seconds: float,
        timeout: float,
        *,
        wait_first: bool = False,  # looking is cheap here: always look first
        queues: frozenset[str] | None = None,
    ) -> list[Claim]:
        deadline = time.monotonic() + timeout
        look, look_params = _idle_look(self._app, queues)
        backoff = Backoff(0.001, MAX_IDLE_WAIT)
        with self._work:
            generation = self._wake_generation
        while True:
            with self._work:
                if generation != self._wake_generation:
                    return []
            ready, due = self._db.read(lambda conn: conn.execute(look, look_params).fetchone())
            if ready or (due is not None and due <= time.time()):
                # No timed entry at all (due is None): nothing there to look for.
                claims, stopped_early = self._db.write(
                    functools.partial(
                        self._claim_in, runner_id, max_count, lease_seconds, due is not None, queues
                    )
                )
                if claims:
                    return claims
                if stopped_early:  # it parked PARK_MAX heads and left the rest: go on at once
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            delay = min(backoff.next(), remaining)
            if due is not None:  # something becomes claimable then: do not sleep past it
                delay = max(0.0, min(delay, due - time.time()))
            with self._work:
                if generation == self._wake_generation:
                    self._work.wait(delay)

    def _claim_in(
        self,
        runner_id: str,
        max_count: int,
        lease_seconds: float,
        look_timed: bool,
        queues: frozenset[str] | None,
        conn: sqlite3.Connection,
    ) -> tuple[list[Claim], bool]:
        """The claims, and whether the claim stopped early (Transitions.stopped_early)."""
        steps = self._steps(conn, time.time())
        claims = steps.claim(
            runner_id, max_count, lease_seconds, look_timed=look_timed, queues=queues
        )
        return claims, steps.stopped_early

    def finish(self, invocation_id: str, runner_id: str, attempt: int, outcome: Outcome) -> bool:
        done, _ = self.finish_and_claim(
            invocation_id, runner_id, attempt, outcome, max_count=0, lease_seconds=0.0
        )
        return done

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
        def operation(conn: sqlite3.Connection) -> tuple[bool, list[Claim]]:
            steps = self._steps(conn, time.time())
            steps.hand_over = max_count > 0  # the claim below takes what the finish wakes
            done = self._finish_in(steps, invocation_id, runner_id, attempt, outcome)
            if not max_count:
                return done, []
            look_timed = self._timed_look_due(steps.now)
            return done, steps.claim(
                runner_id, max_count, lease_seconds, look_timed=look_timed, queues=queues
            )

        done, claims = self._db.write(operation)
        if done:
            self._notify_claimers()
            self._notify_final(invocation_id)
        else:
            log_stale_report(invocation_id, runner_id, attempt)
        return done, claims

    @staticmethod
    def _finish_in(
        steps: Transitions, invocation_id: str, runner_id: str, attempt: int, outcome: Outcome
    ) -> bool:
        if outcome.kind is OutcomeKind.SUCCESS or outcome.kind is OutcomeKind.FAILED:
            final = _S.SUCCESS if outcome.kind is OutcomeKind.SUCCESS else _S.FAILED
            done = steps.finish_owned(invocation_id, runner_id, attempt, final, outcome.payload)
            if done is not None:
                steps.release_slot(done)
                return True
            # Not owned (a stale report), or a cancel was requested: decided below.
        row = steps.owned(invocation_id, runner_id, attempt)
        if row is None:
            return False
        if row["cancel_requested"] or outcome.kind is OutcomeKind.CANCELLED:
            payload = outcome.payload if outcome.kind is OutcomeKind.CANCELLED else b""
            cancels.end_cancelled(steps, row, runner_id, payload)
            return True
        if outcome.kind is OutcomeKind.RETRY:
            steps.retry(row, outcome.payload, runner_id, outcome.retry_delay)
        else:
            final = _S.SUCCESS if outcome.kind is OutcomeKind.SUCCESS else _S.FAILED
            steps.finalize(row, final, runner_id, outcome.payload)
        steps.release_slot(row)
        return True

    def release(self, invocation_id: str, runner_id: str, attempt: int) -> bool:
        def operation(conn: sqlite3.Connection) -> bool:
            steps = self._steps(conn, time.time())
            row = steps.owned(invocation_id, runner_id, attempt)
            if row is None:
                return False
            if row["cancel_requested"]:  # a cancel-requested run ends CANCELLED, however
                cancels.end_cancelled(steps, row, runner_id)
            else:
                steps.requeue_first(row, runner_id)
            return True

        done = self._db.write(operation)
        if done:
            self._notify_claimers()
            self._notify_final(invocation_id)
        else:
            log_stale_report(invocation_id, runner_id, attempt)
        return done

    def cancel(self, invocation_id: str) -> CancelResult:
        result = self._db.write(
            lambda conn: cancels.cancel(self._steps(conn, time.time()), invocation_id)
        )
        logger.info(
            "cancel of invocation %s: %s",
            invocation_id,
            result.value,
            extra=log_fields(invocation_id),
        )
        if result is CancelResult.CANCELLED:
            self._notify_claimers()  # a slot or a woken count it held may have gone on
            self._notify_final(invocation_id)
        elif result is CancelResult.REQUESTED:
            self._cancel_requests.notify()
        return result

    def wait_cancel_requests(self, runner_id: str, timeout: float) -> list[str]:
        return self._cancel_requests.wait(runner_id, timeout)

    def register_tick(self, record: InvocationRecord, tick: float) -> RegisterResult | None:
        def operation(conn: sqlite3.Connection) -> RegisterResult | None:
            if not cancels.take_tick(conn, self._app, record.task_id, tick):
                return None
            return self._register_in(conn, self._steps(conn, time.time()), record)

        result = self._db.write(operation)
        if result is not None and result.created:
            self._notify_claimers()
        return result

    def renew(
        self, runner_id: str, claims: Sequence[tuple[str, int]], lease_seconds: float
    ) -> list[str]:
        self._db.check_store()  # a runner's heartbeat: a cheap place to notice a replaced file

        def operation(conn: sqlite3.Connection) -> list[str]:
            expires_at = time.time() + lease_seconds
            conn.execute(q.UPSERT_RUNNER, (self._app, runner_id, expires_at))
            lost = []
            for invocation_id, attempt in claims:
                params = (expires_at, self._app, invocation_id, runner_id, attempt)
                if conn.execute(q.RENEW_LEASE, params).rowcount == 0:
                    lost.append(invocation_id)
            return lost

        return self._db.write(operation)

    def recover_leases(self, now: float | None = None) -> list[str]:
        at = time.time() if now is None else now

        def operation(conn: sqlite3.Connection) -> list[str]:
            steps = self._steps(conn, at)
            recovered = self._recover_rows(
                conn, steps, conn.execute(q.EXPIRED_LEASES, (self._app, at)).fetchall()
            )
            conn.execute(q.DELETE_DEAD_RUNNERS, (self._app, at))
            # Starts of budgets that admitted nothing since their window passed (by the clock:
            # ``now`` may be a later instant given to expire leases).
            conn.execute(bq.TRIM_PAST_STARTS, (self._app, min(at, time.time())))
            return recovered

        return self._recovered(self._db.write(operation))

    def expire_finals(self, batch: int, now: float | None = None) -> int:
        at = time.time() if now is None else now
        # A read first: most calls find nothing, and then take no write lock.
        if not self._db.read(
            lambda conn: conn.execute(q.EXPIRED_FINALS, (self._app, at, 1)).fetchone()
        ):
            return 0
        return self._db.write(lambda conn: self._steps(conn, at).expire_finals(batch))

    def recover_runner(self, runner_id: str) -> list[str]:
        def operation(conn: sqlite3.Connection) -> list[str]:
            steps = self._steps(conn, time.time())
            rows = conn.execute(q.RUNNING_OF_RUNNER, (self._app, runner_id)).fetchall()
            recovered = self._recover_rows(conn, steps, rows)
            conn.execute(q.DELETE_RUNNER, (self._app, runner_id))
            conn.execute(q.DELETE_RUNNER_INFO, (self._app, runner_id))  # dead: not described
            return recovered

        return self._recovered(self._db.write(operation))

    def _recover_rows(
        self, conn: sqlite3.Connection, steps: Transitions, rows: list[sqlite3.Row]
    ) -> list[str]:
        """Requeue each running row first in line, or fail it past ``max_recoveries``."""
        for row in rows:
            if row["cancel_requested"]:  # its runner is gone: the cancel is done
                cancels.end_cancelled(steps, row, None)
            elif row["num_recoveries"] >= self.options.max_recoveries:
                steps.finalize(row, _S.FAILED, None, self.options.lost_error)
                steps.release_slot(row)
            else:
                conn.execute(q.COUNT_RECOVERY, (self._app, row["invocation_id"]))
                steps.requeue_first(row, None)
        return [row["invocation_id"] for row in rows]

    def _recovered(self, recovered: list[str]) -> list[str]:
        """Wake this process's claimers and result waiters after a recovery; returns the ids."""
        if recovered:
            self._notify_claimers()
            for invocation_id in recovered:
                self._notify_final(invocation_id)
        return recovered

    # --- reads and admin -----------------------------------------------------------------------

    def wait_final(self, invocation_id: str, timeout: float | None) -> InvocationRecord | None:
        select = (q.SELECT_INVOCATION, (self._app, invocation_id))
        # Most waits find the result there already: one statement, no wake-up event.
        row = self._db.read_one(*select)
        if row is None or _S(row["status"]).is_final or (timeout is not None and timeout <= 0):
            return None if row is None else q.row_to_record(row, [])
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = Backoff(0.001, MAX_IDLE_WAIT)
        with self._events_lock:
            event = self._final_events.setdefault(invocation_id, threading.Event())
        try:
            while True:
                row = self._db.read_one(*select)  # again: a finish may have come before the event
                if row is None:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if _S(row["status"]).is_final or (remaining is not None and remaining <= 0):
                    return q.row_to_record(row, [])
                delay = backoff.next()
                if event.wait(delay if remaining is None else min(delay, remaining)):
                    # Woken (a finish, maybe a retry): read again, and from now on wait again
                    # rather than find the event set and poll without pause.
                    event.clear()
        finally:
            with self._events_lock:
                if self._final_events.get(invocation_id) is event:
                    del self._final_events[invocation_id]

    def announce_runner(self, info: RunnerInfo, ttl_seconds: float) -> None:
        # A runner announces right after renewing its leases, and renews again a third of a
        # lease (its ttl) later: waiting for the lock at most a sixth, the announcement is
        # skipped (BackendUnavailableError, which the heartbeat logs) rather than delay that.
        self._db.write(
            lambda conn: descriptions.announce(conn, self._app, info, time.time(), ttl_seconds),
            lock_timeout=min(self._db.lock_timeout, ttl_seconds / 6),
        )

    def forget_runner(self, runner_id: str) -> None:
        self._db.write(lambda conn: descriptions.forget(conn, self._app, runner_id))

    # --- limits --------------------------------------------------------------------------------

    def set_limit_override(self, name: str, override: LimitOverride) -> None:
        rate = override.rate
        params = (
            self._app,
            name,
            override.concurrency,
            None if rate is None else rate.count,
            None if rate is None else float(rate.period),
        )
        self._change_override(name, bq.SET_OVERRIDE, params)

    def reset_limit_override(self, name: str) -> None:
        self._change_override(name, bq.DELETE_OVERRIDE, (self._app, name))

    def _change_override(self, name: str, sql: str, params: tuple[object, ...]) -> None:
        def operation(conn: sqlite3.Connection) -> None:
            conn.execute(sql, params)
            self._steps(conn, time.time()).budgets.wake_limit(name)

        self._db.write(operation)
        self._notify_claimers()

    def purge(self) -> None:
        def operation(conn: sqlite3.Connection) -> None:
            for table in q.APP_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE app_id = ?", (self._app,))

        self._db.write(operation)
        with self._events_lock:
            events = list(self._final_events.values())
        for event in events:
            event.set()

    def wake_claimers(self) -> None:
        with self._work:
            self._wake_generation += 1
            self._work.notify_all()
        self._cancel_requests.stop()

    def close(self) -> None:
        self._db.close()

    def _timed_look_due(self, now: float) -> bool:
        """Whether this claim looks at the timed table: at most every TIMED_LOOK_INTERVAL.

        Threads racing here may both look: harmless, the look is a read in their transaction.
        """
        if now < self._next_timed_look:
            return False
        self._next_timed_look = now + TIMED_LOOK_INTERVAL
        return True

    def _steps(self, conn: sqlite3.Connection, now: float) -> Transitions:
        return Transitions(conn, self._app, now, self.options.result_ttl_seconds)

    # --- in-process notifications --------------------------------------------------------------

    def _notify_claimers(self) -> None:
        with self._work:
            self._work.notify_all()

    def _notify_final(self, invocation_id: str) -> None:
        with self._events_lock:
            event = self._final_events.get(invocation_id)
        if event is not None:
            event.set()


def _idle_look(app: str, queues: frozenset[str] | None) -> tuple[str, tuple[object, ...]]:
    """What an idle claim of ``queues`` reads: is there work there, and the next timed entry."""
    if queues is None:
        return bq.IDLE_LOOK, (app,)
    names = sorted(queues)
    return bq.idle_look_sql(len(names)), (app, *names)
