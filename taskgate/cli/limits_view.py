"""What ``taskgate limits list`` shows: a rich table and the ``--json`` document.

Both are built from ``app.limits()`` (one read of the overrides, one of the budgets in use). The
table stays readable with thousands of keys and waiters: counts, the busiest key values of a
keyed limit (the rest summed in one row), and holders only when a budget has a few.
"""

from __future__ import annotations

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from taskgate.app import App
from taskgate.cli.json_output import JsonObject, header, iso_time
from taskgate.cli.render import KEY_ROWS, format_age, split_scope_key
from taskgate.limit_admin import LimitInfo, oldest_wait
from taskgate.record import BudgetHolder, Rate

# A budget with at most this many holders lists them (id prefix and runner); else a count.
HOLDERS_LISTED = 3
ID_PREFIX = 8
COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("Limit", "left"),
    ("Key", "left"),
    ("Concurrency", "right"),
    ("Rate", "right"),
    ("Overridden", "left"),
    ("Slots held", "right"),
    ("Waiting", "right"),
    ("Oldest wait", "right"),
    ("Starts in window", "right"),
    ("Held by", "left"),
)


def rate_json(rate: Rate | None) -> JsonObject | None:
    """A rate as ``{count, period_seconds}``, or None."""
    return None if rate is None else {"count": rate.count, "period_seconds": rate.period}


def by_id(holders: tuple[BudgetHolder, ...]) -> list[BudgetHolder]:
    """Holders sorted by invocation id: the same order on every backend."""
    return sorted(holders, key=lambda holder: holder.invocation_id)


def holder_json(holder: BudgetHolder) -> JsonObject:
    """One slot holder: its invocation, runner and lease expiry."""
    return {
        "invocation_id": holder.invocation_id,
        "runner_id": holder.runner_id,
        "lease_expires_at": iso_time(holder.lease_expires_at),
    }


def limits_json(app: App, infos: list[LimitInfo]) -> JsonObject:
    """``limits list --json``: every limit with its effective values and budgets in use."""
    return {
        **header(app),
        "limits": [
            {
                "name": info.name,
                "key": list(info.key),
                "declared": info.declared,
                "overridden": info.overridden,
                "concurrency": info.concurrency,
                "rate": rate_json(info.rate),
                "slots_held": info.slots_held,
                "waiting": info.waiting,
                "oldest_wait_since": iso_time(oldest_wait(info.budgets)),
                "window_starts": info.window_starts,
                "budgets": [
                    {
                        "key": budget.key,
                        "key_values": split_scope_key(budget.key).values,
                        "slots_held": len(budget.holders),
                        "holders": [holder_json(h) for h in by_id(budget.holders)],
                        "waiting": budget.waiting,
                        "oldest_wait_since": iso_time(budget.oldest_wait),
                        "window_starts": budget.window_starts,
                    }
                    for budget in info.budgets
                ],
            }
            for info in infos
        ],
    }


def print_limits(console: Console, infos: list[LimitInfo], now: float) -> None:
    """The limits table: one row per limit, then per key value of a keyed limit in use."""
    if not infos:
        console.print("no limits: none declared by the app, overridden or in use")
        return
    table = Table(title="Limits (effective values; per key for keyed limits)")
    for column, justify in COLUMNS:
        table.add_column(column, justify=justify, overflow="fold")
    for info in infos:
        _add_limit(table, info, now)
    console.print(table)


def _add_limit(table: Table, info: LimitInfo, now: float) -> None:
    keyed = bool(info.key) or any(split_scope_key(b.key).values for b in info.budgets)
    per_key = " per key" if keyed else ""
    overridden = Text("yes", style="bold yellow") if info.overridden else Text("no")
    if not info.declared:
        overridden.append(" (not declared by this app)", style="italic")
    single = None if keyed or not info.budgets else info.budgets[0]
    table.add_row(
        Text(info.name, style="bold"),
        Text(f"by {', '.join(info.key)}" if info.key else ("?" if keyed else "-")),
        "-" if info.concurrency is None else f"{info.concurrency}{per_key}",
        "-" if info.rate is None else f"{rate_text(info.rate)}{per_key}",
        overridden,
        _used(info.slots_held, None if keyed else info.concurrency),
        str(info.waiting),
        format_age(oldest_wait(info.budgets), now),
        _starts(info.window_starts, info.rate, per_budget=not keyed),
        Text(_holders_text(single.holders) if single else ""),
        end_section=not keyed,
    )
    if not keyed:
        return
    # The busiest key values first: most waiting, then most held.
    budgets = sorted(info.budgets, key=lambda b: (-b.waiting, -len(b.holders), b.key))
    for budget in budgets[:KEY_ROWS]:
        table.add_row(
            "",
            Text(f"  {split_scope_key(budget.key).values}"),
            "",
            "",
            "",
            _used(len(budget.holders), info.concurrency),
            str(budget.waiting),
            format_age(budget.oldest_wait, now),
            _starts(budget.window_starts, info.rate, per_budget=True),
            Text(_holders_text(budget.holders)),
        )
    rest = budgets[KEY_ROWS:]
    if rest:
        table.add_row(
            "",
            Text(f"  ... {len(rest)} more key values", style="italic"),
            "",
            "",
            "",
            str(sum(len(b.holders) for b in rest)),
            str(sum(b.waiting for b in rest)),
            format_age(oldest_wait(rest), now),
            _starts(sum(b.window_starts for b in rest), info.rate, per_budget=False),
            "",
        )
    table.add_section()


def rate_text(rate: Rate) -> str:
    """``120/m`` for whole units, else ``5/2.5s``."""
    for unit, seconds in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if rate.period == seconds:
            return f"{rate.count}/{unit}"
    return str(rate)


def _used(count: int, limit: int | None) -> str:
    """``count/limit`` of one budget, or a plain count (a sum over keys, or no slot limit)."""
    return str(count) if limit is None else f"{count}/{limit}"


def _starts(count: int, rate: Rate | None, *, per_budget: bool) -> str:
    """Starts in the current window: ``count/M`` for one budget, a sum, or ``-`` without rate."""
    if rate is None:
        return "-"
    return f"{count}/{rate.count}" if per_budget else str(count)


def _holders_text(holders: tuple[BudgetHolder, ...]) -> str:
    """A few holders as ``id-prefix on runner``, one a line; more are only counted."""
    if len(holders) > HOLDERS_LISTED:
        return f"{len(holders)} invocations"
    return "\n".join(
        f"{h.invocation_id[:ID_PREFIX]} on {h.runner_id or '-'}" for h in by_id(holders)
    )
