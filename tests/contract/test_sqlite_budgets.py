"""Budget behaviour particular to the SQLite backend (beyond the contract in
test_budget_*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.record import Budget, Rate
from taskgate.status import InvocationStatus as S
from tests.contract.budget_support import A, B, claim_ids, finish, record, register, status


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "budgets.db", BackendOptions("app", 60.0, 3, b"lost"))
    yield backend
    backend.close()


def test_capacity_a_woken_waiter_cannot_use_passes_to_the_next_waiter(
    sqlite_backend: SqliteBackend,
) -> None:
    backend = sqlite_backend
    a_holder, b_holder, needs_both, needs_a = register(
        backend, record(A), record(B), record(A, B), record(A)
    )
    assert claim_ids(backend) == [a_holder, b_holder]
    finish(backend, a_holder)  # wakes needs_both, first in A's line
    # needs_both is admitted by A but refused by B: A's free slot goes on to needs_a at once,
    # instead of idling until needs_both runs and releases A.
    assert claim_ids(backend) == [needs_a]
    assert status(backend, needs_both) is S.CONCURRENCY_CONTROLLED
    assert backend.blocked_by(needs_both) == ("limit b", (b_holder,), None)


def test_an_idle_claim_reads_the_next_due_time_and_wakes_for_it(
    sqlite_backend: SqliteBackend,
) -> None:
    backend = sqlite_backend
    rated = Budget("limit r", "r", rate=Rate(1, 0.2))
    first, second = register(backend, record(rated), record(rated))
    assert claim_ids(backend) == [first]
    assert claim_ids(backend) == []  # parks second and puts the budget on the timed table
    assert (
        backend._db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM timed").fetchone()[0]) == 1
    )
    assert claim_ids(backend, 1, timeout=15.0) == [second]
    assert (
        backend._db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM timed").fetchone()[0]) == 0
    )
