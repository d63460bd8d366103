"""Shared builders and helpers for the budget tests of the backend contract (the "Budgets"
section of taskgate/backends/base.py): records are built by hand with ``plan.budgets``, as the
core would compute them, and driven directly through a backend. The public API on top of them
is tested in test_limits.py.
"""

from __future__ import annotations

import itertools

from taskgate.backends.base import Backend
from taskgate.record import Budget, ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S

RUNNER = "runner-a"
LEASE = 30.0
WAIT = 15.0
SUCCESS = Outcome(OutcomeKind.SUCCESS, b"result")
RETRY = Outcome(OutcomeKind.RETRY, b"error")

# Budgets of one slot each, in key order A < B < C.
A = Budget("limit a", "a", concurrency=1)
B = Budget("limit b", "b", concurrency=1)
C = Budget("limit c", "c", concurrency=1)

_ids = itertools.count()


def record(
    *budgets: Budget, priority: int = 0, drop: bool = False, reg: str | None = None
) -> InvocationRecord:
    """A record needing ``budgets`` (sorted by key, as the core computes them)."""
    plan = ConcurrencyPlan(
        registration_key=reg,
        drop_when_blocked=drop,
        budgets=tuple(sorted(budgets, key=lambda budget: budget.key)),
    )
    return InvocationRecord(
        invocation_id=f"bud-{next(_ids)}",
        task_id="tests.task",
        arguments=b"args",
        plan=plan,
        max_retries=5,
        priority=priority,
    )


def register(backend: Backend, *records: InvocationRecord) -> list[str]:
    """Register ``records`` (each must be created); their ids, in order."""
    for one in records:
        assert backend.register(one).created
    return [one.invocation_id for one in records]


def claim_ids(
    backend: Backend, max_count: int = 10, timeout: float = 0, runner: str = RUNNER
) -> list[str]:
    """The ids one claim returns, in claim order."""
    return [c.invocation_id for c in backend.claim(runner, max_count, LEASE, timeout)]


def stored(backend: Backend, invocation_id: str) -> InvocationRecord:
    found = backend.get(invocation_id)
    assert found is not None
    return found


def status(backend: Backend, invocation_id: str) -> S:
    return stored(backend, invocation_id).status


def history(backend: Backend, invocation_id: str) -> list[S]:
    """The statuses an invocation went through, in order."""
    return [t.status for t in stored(backend, invocation_id).history]


def finish(backend: Backend, invocation_id: str, outcome: Outcome = SUCCESS) -> None:
    """Finish the current attempt of a RUNNING invocation claimed by RUNNER."""
    assert backend.finish(invocation_id, RUNNER, stored(backend, invocation_id).attempt, outcome)


def usage(backend: Backend, key: str) -> tuple[list[str], int]:
    """The sorted holders and the waiting count of one budget, from budget_usage()."""
    for budget in backend.budget_usage():
        if budget.key == key:
            return sorted(h.invocation_id for h in budget.holders), budget.waiting
    return [], 0


def holders(backend: Backend, key: str) -> list[str]:
    """The sorted holders of one budget."""
    return usage(backend, key)[0]


def run_in_turn(backend: Backend, running: str, count: int) -> list[str]:
    """``count`` times: finish the one running invocation, claim the next; the order started."""
    order = []
    for _ in range(count):
        finish(backend, running)
        [running] = claim_ids(backend)
        order.append(running)
    return order
