"""Cancellation, queues and ticks particular to the SQLite backend: after a cancel, no row of any
table names the invocation any more (beyond the shared contract tests), and a cancel requested
by another process reaches the runner's wait_cancel_requests."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.backends.sqlite.transitions import Transitions
from taskgate.record import (
    Budget,
    CancelResult,
    ConcurrencyPlan,
    InvocationRecord,
    Outcome,
    OutcomeKind,
)
from taskgate.status import InvocationStatus as S

RUNNER = "runner-a"
SUCCESS = Outcome(OutcomeKind.SUCCESS, b"ok")
_ids = itertools.count()

# Every table that names an invocation while it waits or runs, and the column naming it.
PLACES = {
    "queue": "invocation_id",
    "parked": "invocation_id",
    "registration_keys": "invocation_id",
    "slots": "invocation_id",
    "budget_waiters": "invocation_id",
    "budget_holders": "invocation_id",
    "cancel_requests": "invocation_id",
}


def rec(
    *,
    key: str | None = None,
    running_key: str | None = None,
    budgets: tuple[Budget, ...] = (),
    priority: int = 0,
    queue: str = "default",
    scheduled_for: float | None = None,
) -> InvocationRecord:
    plan = ConcurrencyPlan(
        registration_key=key, running_key=running_key, running_limit=1, budgets=budgets
    )
    return InvocationRecord(
        f"sc-{next(_ids)}",
        "tests.cancel",
        b"args",
        plan,
        priority=priority,
        queue=queue,
        scheduled_for=scheduled_for,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cancel.db"


@pytest.fixture
def backend(path: Path) -> Iterator[SqliteBackend]:
    backend = SqliteBackend(path, BackendOptions("app", 60.0, 3, b"lost"))
    yield backend
    backend.close()


def register(backend: SqliteBackend, *records: InvocationRecord) -> list[str]:
    for record in records:
        assert backend.register(record).created
    return [record.invocation_id for record in records]


def claim_ids(backend: SqliteBackend, queues: frozenset[str] | None = None) -> list[str]:
    return [c.invocation_id for c in backend.claim(RUNNER, 10, 30.0, 0, queues=queues)]


def finish(backend: SqliteBackend, invocation_id: str, outcome: Outcome = SUCCESS) -> bool:
    record = backend.get(invocation_id)
    assert record is not None
    return backend.finish(invocation_id, RUNNER, record.attempt, outcome)


def status(backend: SqliteBackend, invocation_id: str) -> S:
    record = backend.get(invocation_id)
    assert record is not None
    return record.status


def places(path: Path, invocation_id: str) -> dict[str, int]:
    """Rows naming ``invocation_id`` per table (tables without any left out)."""
    conn = sqlite3.connect(path)
    try:
        found = {
            table: conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (invocation_id,)
            ).fetchone()[0]
            for table, column in PLACES.items()
        }
        found["timed"] = conn.execute(
            "SELECT COUNT(*) FROM timed WHERE member = ?", (f"i:{invocation_id}",)
        ).fetchone()[0]
        return {table: count for table, count in found.items() if count}
    finally:
        conn.close()


def woken(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT budget, count FROM budget_woken").fetchall())
    finally:
        conn.close()


def assert_cancelled_cleanly(backend: SqliteBackend, path: Path, invocation_id: str) -> None:
    assert status(backend, invocation_id) is S.CANCELLED
    assert places(path, invocation_id) == {}


# --- waiting cancels, row by row -------------------------------------------------------------


def test_a_scheduled_call_leaves_its_timed_row_and_key(backend: SqliteBackend, path: Path) -> None:
    [waiting] = register(backend, rec(key="k1", scheduled_for=time.time() + 3600))
    assert places(path, waiting) == {"registration_keys": 1, "timed": 1}
    assert backend.cancel(waiting) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, waiting)
    assert backend.register(rec(key="k1")).created  # the key is free


def test_a_due_scheduled_call_in_the_ready_queue_leaves_it(
    backend: SqliteBackend, path: Path
) -> None:
    [later] = register(backend, rec(scheduled_for=time.time() + 3600))
    # What a claim does once it is due (its status stays SCHEDULED until a claim takes it).
    backend._db.write(
        lambda conn: Transitions(conn, "app", time.time() + 7200, 60.0).budgets.move_due()
    )
    assert places(path, later) == {"queue": 1}
    assert status(backend, later) is S.SCHEDULED
    assert backend.cancel(later) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, later)
    assert backend.stats().queue_depth == {}


def test_a_registered_call_leaves_the_ready_queue(backend: SqliteBackend, path: Path) -> None:
    first, second = register(backend, rec(key="k2", queue="mail"), rec(queue="mail"))
    assert backend.stats().queue_depth == {"mail": 2}
    assert backend.cancel(first) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, first)
    assert backend.stats().queue_depth == {"mail": 1}
    assert claim_ids(backend) == [second]


def test_a_delayed_retry_leaves_its_timed_row(backend: SqliteBackend, path: Path) -> None:
    [retrying] = register(backend, rec(key="k3"))
    assert claim_ids(backend) == [retrying]
    assert finish(backend, retrying, Outcome(OutcomeKind.RETRY, b"err", retry_delay=3600))
    assert places(path, retrying) == {"registration_keys": 1, "timed": 1}
    assert backend.cancel(retrying) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, retrying)


def test_a_waiter_parked_on_a_running_key_leaves_the_parked_list(
    backend: SqliteBackend, path: Path
) -> None:
    holder, parked, last = register(backend, *(rec(running_key="rk") for _ in range(3)))
    assert claim_ids(backend) == [holder]
    assert places(path, parked) == {"parked": 1}
    assert backend.cancel(parked) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, parked)
    assert finish(backend, holder)
    assert claim_ids(backend) == [last]


def test_a_woken_waiter_of_a_running_key_passes_its_slot_on(
    backend: SqliteBackend, path: Path
) -> None:
    holder, woken_one, next_one = register(backend, *(rec(running_key="rk") for _ in range(3)))
    assert claim_ids(backend) == [holder]
    assert finish(backend, holder)  # hands the slot to woken_one, which goes to the queue
    assert places(path, woken_one) == {"queue": 1, "slots": 1}
    assert backend.cancel(woken_one) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, woken_one)
    assert places(path, next_one) == {"queue": 1, "slots": 1}
    assert claim_ids(backend) == [next_one]


def test_a_handed_back_invocation_holding_its_slot_passes_it_on(
    backend: SqliteBackend, path: Path
) -> None:
    holder, waiter = register(backend, *(rec(running_key="rk") for _ in range(2)))
    assert claim_ids(backend) == [holder]
    assert backend.release(holder, RUNNER, 1)  # first in line again: it keeps the slot
    assert places(path, holder) == {"queue": 1, "slots": 1}
    assert backend.cancel(holder) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, holder)
    assert claim_ids(backend) == [waiter]


def test_a_budget_waiter_leaves_its_wait_queue_and_cursor(
    backend: SqliteBackend, path: Path
) -> None:
    fair = Budget("limit f", "f", concurrency=1, fair="tenant='a'")
    holder, waiter = register(backend, rec(budgets=(fair,)), rec(budgets=(fair,)))
    assert claim_ids(backend) == [holder]
    assert places(path, waiter) == {"budget_waiters": 1}
    assert backend.cancel(waiter) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, waiter)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM budget_cursors").fetchone()[0] == 0
    conn.close()
    assert backend.stats().parked_by_key == {}


def test_a_woken_budget_waiter_passes_its_woken_count_on(
    backend: SqliteBackend, path: Path
) -> None:
    budget = Budget("limit b", "b", concurrency=1)
    holder, first, second = register(backend, *(rec(budgets=(budget,)) for _ in range(3)))
    assert claim_ids(backend) == [holder]
    assert finish(backend, holder)  # wakes first: the budget promises it the free slot
    assert woken(path) == {"limit b": 1}
    assert places(path, first) == {"queue": 1}
    assert backend.cancel(first) is CancelResult.CANCELLED
    assert_cancelled_cleanly(backend, path, first)
    assert woken(path) == {"limit b": 1}  # now promised to second, which is in the queue
    assert places(path, second) == {"queue": 1}
    assert claim_ids(backend) == [second]
    assert woken(path) == {}


# --- running cancels ---------------------------------------------------------------------------


def test_a_running_cancel_is_requested_once_and_ends_cancelled(
    backend: SqliteBackend, path: Path
) -> None:
    [running] = register(backend, rec(running_key="rk"))
    assert claim_ids(backend) == [running]
    assert backend.cancel(running) is CancelResult.REQUESTED
    assert backend.cancel(running) is CancelResult.FINAL  # requested already
    record = backend.get(running)
    assert record is not None and record.cancel_requested and record.status is S.RUNNING
    assert backend.wait_cancel_requests(RUNNER, 1.0) == [running]
    assert backend.wait_cancel_requests(RUNNER, 0.01) == []
    assert finish(backend, running)  # a success reported after the request: CANCELLED anyway
    assert_cancelled_cleanly(backend, path, running)


@pytest.mark.parametrize("way_out", ["release", "recover_runner", "recover_leases"])
def test_every_way_out_of_a_cancel_requested_run_ends_cancelled(
    backend: SqliteBackend, path: Path, way_out: str
) -> None:
    [holder] = register(backend, rec(running_key="rk", key="rk"))
    assert claim_ids(backend) == [holder]
    [waiter] = register(backend, rec(running_key="rk", key="rk"))
    assert claim_ids(backend) == []  # parked behind holder
    assert backend.cancel(holder) is CancelResult.REQUESTED  # its request stays unread
    if way_out == "release":
        assert backend.release(holder, RUNNER, 1)
    elif way_out == "recover_runner":
        assert backend.recover_runner(RUNNER) == [holder]
    else:
        assert backend.recover_leases(time.time() + 3600) == [holder]
    assert_cancelled_cleanly(backend, path, holder)
    assert claim_ids(backend) == [waiter]  # the slot went on


# --- queues, priorities, ticks -----------------------------------------------------------------


def test_claims_take_their_queues_highest_priority_first(backend: SqliteBackend) -> None:
    low, mail_high, report, high = register(
        backend,
        rec(queue="mail"),
        rec(queue="mail", priority=5),
        rec(queue="reports", priority=9),
        rec(queue="mail", priority=5),
    )
    assert backend.stats().queue_depth == {"mail": 3, "reports": 1}
    assert claim_ids(backend, frozenset({"mail"})) == [mail_high, high, low]
    assert claim_ids(backend, frozenset({"mail"})) == []
    assert claim_ids(backend, frozenset()) == []
    assert claim_ids(backend, frozenset({"mail", "reports"})) == [report]


def test_a_woken_waiter_goes_first_of_its_priority(backend: SqliteBackend) -> None:
    holder, waiter = register(backend, rec(running_key="rk"), rec(running_key="rk"))
    assert claim_ids(backend) == [holder]
    [queued] = register(backend, rec())
    [urgent] = register(backend, rec(priority=1))
    assert finish(backend, holder)
    assert claim_ids(backend) == [urgent, waiter, queued]


def test_parked_waiters_of_a_running_key_wake_by_priority(backend: SqliteBackend) -> None:
    holder, first, urgent = register(
        backend, rec(running_key="rk"), rec(running_key="rk"), rec(running_key="rk", priority=3)
    )
    assert claim_ids(backend) == [urgent]  # the ready queue is priority-ordered too
    assert claim_ids(backend) == []
    assert finish(backend, urgent)
    assert claim_ids(backend) == [holder]
    assert finish(backend, holder)
    assert claim_ids(backend) == [first]


def test_a_tick_registers_once(backend: SqliteBackend) -> None:
    tick = time.time()
    assert backend.register_tick(rec(scheduled_for=tick), tick) is not None
    assert backend.register_tick(rec(scheduled_for=tick), tick) is None
    assert backend.register_tick(rec(scheduled_for=tick - 60), tick - 60) is None
    assert backend.stats().periodic_ticks == {"tests.cancel": tick}
    backend.purge()
    assert backend.stats().periodic_ticks == {}


# --- another process ---------------------------------------------------------------------------

_CANCEL_FROM_ANOTHER_PROCESS = """
import sys
from pathlib import Path
from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
backend = SqliteBackend(Path(sys.argv[1]), BackendOptions("app", 60.0, 3, b"lost"))
print(backend.cancel(sys.argv[2]).value)
backend.close()
"""


def test_a_cancel_requested_by_another_process_reaches_the_runner(
    backend: SqliteBackend, path: Path
) -> None:
    [running] = register(backend, rec())
    assert claim_ids(backend) == [running]
    assert backend.wait_cancel_requests(RUNNER, 0.01) == []
    done = subprocess.run(
        [sys.executable, "-c", _CANCEL_FROM_ANOTHER_PROCESS, str(path), running],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "requested"
    # No in-process notification: the back-off read finds it (within MAX_IDLE_WAIT).
    assert backend.wait_cancel_requests(RUNNER, 5.0) == [running]
    assert backend.wait_cancel_requests("another-runner", 0.01) == []
    assert finish(backend, running, Outcome(OutcomeKind.CANCELLED, b""))
    assert_cancelled_cleanly(backend, path, running)


def test_waiting_for_cancel_requests_wakes_at_once_in_process_and_on_stop(
    backend: SqliteBackend,
) -> None:
    [running] = register(backend, rec())
    assert claim_ids(backend) == [running]
    got: list[list[str]] = []
    waiter = threading.Thread(target=lambda: got.append(backend.wait_cancel_requests(RUNNER, 60)))
    waiter.start()
    assert backend.cancel(running) is CancelResult.REQUESTED
    waiter.join(10)
    assert got == [[running]]
    stopped = threading.Thread(target=lambda: got.append(backend.wait_cancel_requests(RUNNER, 60)))
    stopped.start()
    deadline = time.monotonic() + 10
    while stopped.is_alive() and time.monotonic() < deadline:
        backend.wake_claimers()  # what a stopping runner calls: waits return empty at once
        stopped.join(0.05)
    assert not stopped.is_alive() and got[1] == []
