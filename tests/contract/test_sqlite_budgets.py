"""Budget behaviour particular to the SQLite backend (beyond the contract in
test_budget_contract.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.record import (
    Budget,
    ConcurrencyPlan,
    InvocationRecord,
    Outcome,
    OutcomeKind,
    Rate,
)
from taskgate.status import InvocationStatus as S

A = Budget("limit a", "a", concurrency=1)
B = Budget("limit b", "b", concurrency=1)
_ids = itertools.count()


def rec(*budgets: Budget) -> InvocationRecord:
    plan = ConcurrencyPlan(budgets=tuple(sorted(budgets, key=lambda b: b.key)))
    return InvocationRecord(f"sq-{next(_ids)}", "tests.limited", b"", plan)


def register(backend: SqliteBackend, *records: InvocationRecord) -> list[str]:
    for record in records:
        backend.register(record)
    return [record.invocation_id for record in records]


def claim_ids(backend: SqliteBackend) -> list[str]:
    return [c.invocation_id for c in backend.claim("runner-a", 10, 30.0, 0)]


def finish(backend: SqliteBackend, invocation_id: str) -> None:
    assert backend.finish(invocation_id, "runner-a", 1, Outcome(OutcomeKind.SUCCESS, b""))


def status(backend: SqliteBackend, invocation_id: str) -> S:
    record = backend.get(invocation_id)
    assert record is not None
    return record.status


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "budgets.db", BackendOptions("app", 60.0, 3, b"lost"))
    yield backend
    backend.close()


def test_capacity_a_woken_waiter_cannot_use_passes_to_the_next_waiter(
    sqlite_backend: SqliteBackend,
) -> None:
    backend = sqlite_backend
    a_holder, b_holder, needs_both, needs_a = register(backend, rec(A), rec(B), rec(A, B), rec(A))
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
    first, second = register(backend, rec(rated), rec(rated))
    assert claim_ids(backend) == [first]
    assert claim_ids(backend) == []  # parks second and puts the budget on the timed table
    assert (
        backend._db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM timed").fetchone()[0]) == 1
    )
    [claim] = backend.claim("runner-a", 1, 30.0, 15.0)
    assert claim.invocation_id == second
    assert (
        backend._db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM timed").fetchone()[0]) == 0
    )
