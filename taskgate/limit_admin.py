"""Live limit overrides and the figures of ``app.limits()`` (API.md section 8).

Overrides live in the backend, so every runner of the app obeys them from its next admission;
the declared values stay in code. What ``app.limits()`` reports is read from the store in one
consistent read per kind (overrides, then budget usage).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskgate.errors import InvalidTaskOptionsError
from taskgate.limits import Limit, check_concurrency, check_name, parse_rate
from taskgate.record import BudgetUsage, LimitOverride, Rate

if TYPE_CHECKING:
    from taskgate.backends.base import Backend

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimitInfo:
    """One limit as ``app.limits()`` sees it: effective values and what its budgets hold.

    Attributes:
        name: The limit's name.
        key: The argument names it is keyed by (() when it is one shared budget, or when the
            limit is not declared in this process).
        concurrency: The effective slot limit (the override's, else the declared one), or None.
        rate: The effective rate (the override's, else the declared one), or None.
        overridden: Whether an override is stored for it (``app.set_limit``).
        declared: Whether this process declared it (``app.limit``); False for a limit known
            only from the store (an override, or budgets in use by runners elsewhere).
        slots_held: Slots held now, summed over its key values.
        waiting: Invocations waiting for it, summed over its key values.
        window_starts: Starts within the current rate window, summed over its key values.
        budgets: Detail per key value: holders (ids, runners, leases), waiters, oldest wait.
        oldest_wait: Epoch seconds since when its longest waiter (of any key value) waits, or
            None when nothing waits.
    """

    name: str
    key: tuple[str, ...]
    concurrency: int | None
    rate: Rate | None
    overridden: bool
    declared: bool
    slots_held: int
    waiting: int
    window_starts: int
    budgets: list[BudgetUsage] = field(default_factory=list)

    @property
    def oldest_wait(self) -> float | None:
        """Since when its longest waiter waits (see the attributes)."""
        return oldest_wait(self.budgets)


def oldest_wait(budgets: list[BudgetUsage]) -> float | None:
    """Since when the longest waiter of any of ``budgets`` waits (epoch seconds), or None."""
    return min((b.oldest_wait for b in budgets if b.oldest_wait is not None), default=None)


def set_limit(
    backend: Backend,
    declared: Mapping[str, Limit],
    name: Any,
    *,
    concurrency: Any = None,
    rate: Any = None,
) -> LimitOverride:
    """Validate and store an override of limit ``name``; returns what was stored.

    Raises:
        InvalidTaskOptionsError: an invalid name or value, or neither value given.
    """
    name = check_name(name)
    if concurrency is None and rate is None:
        raise InvalidTaskOptionsError(
            f"set_limit({name!r}) changes nothing: pass concurrency=N, rate='M/P' or both "
            "(to go back to the declared values, use reset_limit)"
        )
    override = LimitOverride(
        concurrency=None if concurrency is None else check_concurrency(name, concurrency),
        rate=None if rate is None else parse_rate(rate),
    )
    if name not in declared:
        # Allowed: the runners that use it may declare it in modules this process never
        # imported. Said once here, since a typo would otherwise override nothing silently.
        logger.info(
            "stored an override of limit %s, which this process does not declare; it applies "
            "to the runners that declare it",
            name,
        )
    backend.set_limit_override(name, override)
    return override


def reset_limit(backend: Backend, name: Any) -> None:
    """Delete the override of limit ``name`` (nothing if none).

    Raises:
        InvalidTaskOptionsError: an invalid name.
    """
    backend.reset_limit_override(check_name(name))


def describe_limits(backend: Backend, declared: Mapping[str, Limit]) -> list[LimitInfo]:
    """One :class:`LimitInfo` per limit declared here, overridden or in use in the store."""
    overrides = backend.limit_overrides()
    usage: dict[str, list[BudgetUsage]] = defaultdict(list)
    for budget in backend.budget_usage():
        usage[budget.limit].append(budget)
    infos = []
    for name in sorted({*declared, *overrides, *usage}):
        limit = declared.get(name)
        override = overrides.get(name)
        concurrency = limit.concurrency if limit else None
        rate = limit.rate if limit else None
        if override is not None:
            concurrency, rate = override.applied_to(concurrency, rate)
        budgets = usage.get(name, [])
        infos.append(
            LimitInfo(
                name=name,
                key=limit.key if limit else (),
                concurrency=concurrency,
                rate=rate,
                overridden=override is not None,
                declared=limit is not None,
                slots_held=sum(len(b.holders) for b in budgets),
                waiting=sum(b.waiting for b in budgets),
                window_starts=sum(b.window_starts for b in budgets),
                budgets=budgets,
            )
        )
    return infos
