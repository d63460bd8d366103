"""A hot key's backlog on SQLite: a claim parks at most PARK_MAX heads per transaction (the
write lock is never held for the whole backlog), claims again at once, and every waiter still
runs in call order, one at a time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite import transitions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.record import ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind

OPTIONS = BackendOptions("app", 60.0, 3, b"lost")
BACKLOG = 2 * transitions.PARK_MAX + 5
HOT = ConcurrencyPlan(running_key="hot", running_limit=1)


def _statuses(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT status, COUNT(*) FROM invocations GROUP BY status")
        return dict(rows.fetchall())
    finally:
        conn.close()


def _holders(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT invocation_id FROM slots")]
    finally:
        conn.close()


def test_a_claim_parks_at_most_park_max_heads(tmp_path: Path) -> None:
    path = tmp_path / "hot.db"
    backend = SqliteBackend(path, OPTIONS)
    try:
        ids = [f"hot-{n:04d}" for n in range(BACKLOG)]
        backend.register_many([InvocationRecord(i, "tests.t", b"", HOT) for i in ids])
        first = backend.claim("r1", 1, 60.0, 0.0)
        assert [c.invocation_id for c in first] == [ids[0]]
        # START_READY started it on the key's free slot, which the claim then took.
        assert _holders(path) == [ids[0]]
        # One transaction parks PARK_MAX heads and stops early, leaving the rest queued.
        conn = sqlite3.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN IMMEDIATE")
        steps = backend._steps(conn, 0.0)
        assert steps.claim("r2", 1, 60.0) == []
        assert steps.stopped_early
        conn.execute("COMMIT")
        conn.close()
        assert _statuses(path)["concurrency_controlled"] == transitions.PARK_MAX
        # The backend's claim goes on at once until the queue is empty: nothing to claim.
        assert backend.claim("r2", 1, 60.0, 0.0) == []
        assert _statuses(path) == {"running": 1, "concurrency_controlled": BACKLOG - 1}
        # Each finish hands the key to the next waiter, in call order.
        done, running = Outcome(OutcomeKind.SUCCESS, b""), first[0]
        for expected in ids[1:]:
            _, claims = backend.finish_and_claim(
                running.invocation_id, "r1", running.attempt, done, max_count=1, lease_seconds=60
            )
            assert [c.invocation_id for c in claims] == [expected]
            assert _holders(path) == [expected]
            running = claims[0]
    finally:
        backend.close()
