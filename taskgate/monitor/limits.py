"""What the limits page and ``/api/limits`` show: every limit and every running key, who holds
each slot (invocation, runner, host, lease expiry), who waits and since when, rate window use.

Limits come from ``app.limits()`` (declared, overridden or in use; one read of the overrides
and one of ``budget_usage()``). A task's own running scope (``running_concurrency``) has no
budget record to read, so its holders are the RUNNING invocations grouped by their running key
(one bounded page of them, and those the runners announce running) and its waiters
come from ``parked_counts()``. Hosts come from the runners' descriptions.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from taskgate.app import App
from taskgate.cli.json_output import iso_time
from taskgate.cli.render import LIMIT_PREFIX, split_scope_key
from taskgate.limit_admin import LimitInfo
from taskgate.monitor.format import rate_json, seconds_since, seconds_until
from taskgate.record import BudgetHolder, BudgetUsage, InvocationRecord, RunnerInfo
from taskgate.status import InvocationStatus

JsonObject = dict[str, Any]

# Budgets (key values) listed per limit, busiest first; the rest are summed.
BUDGETS_SHOWN = 50
# Running keys of tasks listed, busiest first; the rest are summed.
RUNNING_KEYS_SHOWN = 100
# RUNNING invocations read (one page) to find the holders of tasks' running keys.
RUNNING_PAGE = 500


def limits_data(app: App, at: float) -> JsonObject:
    """Every limit and running key (what ``/api/limits`` returns).

    Keys: generated_at, limits [{name, key, declared, overridden, concurrency, rate {count,
    period_seconds, text}, slots_held, waiting, oldest_wait_since, oldest_wait_seconds,
    window_starts, budgets [budget...], more_budgets {count, slots_held, waiting} or null}],
    running_keys [{key, task, key_values, concurrency, slots_held, holders [holder...],
    waiting}], more_running_keys {count, slots_held, waiting} or null, running_scanned_all.
    A budget: {key, key_values, slots_held, concurrency, holders [holder...], waiting,
    oldest_wait_since, oldest_wait_seconds, window_starts, rate_count}. A holder:
    {invocation_id, runner_id, host, lease_expires_at, lease_seconds_left}.
    """
    backend = app.backend
    infos = app.limits()
    runners = backend.runner_infos()
    hosts = {info.runner_id: info.host for info in runners}
    running, scanned_all = _running_records(app, runners)
    # Only the waiting counts: on SQLite, stats()' counts by task and status are a scan.
    keys = running_keys(running, backend.parked_counts(), hosts, at)
    return {
        "generated_at": iso_time(at),
        "limits": [_limit(info, hosts, at) for info in infos],
        "running_keys": keys[:RUNNING_KEYS_SHOWN],
        "more_running_keys": _rest(keys[RUNNING_KEYS_SHOWN:]),
        "running_scanned_all": scanned_all,
    }


def holder_json(holder: BudgetHolder, hosts: dict[str, str], at: float) -> JsonObject:
    """One slot holder: its invocation, runner, the runner's host, its lease expiry."""
    return {
        "invocation_id": holder.invocation_id,
        "runner_id": holder.runner_id,
        "host": hosts.get(holder.runner_id) if holder.runner_id else None,
        "lease_expires_at": iso_time(holder.lease_expires_at),
        "lease_seconds_left": seconds_until(holder.lease_expires_at, at),
    }


def _limit(info: LimitInfo, hosts: dict[str, str], at: float) -> JsonObject:
    budgets = sorted(info.budgets, key=lambda b: (-b.waiting, -len(b.holders), b.key))
    shown = [_budget(b, info, hosts, at) for b in budgets[:BUDGETS_SHOWN]]
    return {
        "name": info.name,
        "key": list(info.key),
        "declared": info.declared,
        "overridden": info.overridden,
        "concurrency": info.concurrency,
        "rate": rate_json(info.rate),
        "slots_held": info.slots_held,
        "waiting": info.waiting,
        "oldest_wait_since": iso_time(info.oldest_wait),
        "oldest_wait_seconds": seconds_since(info.oldest_wait, at),
        "window_starts": info.window_starts,
        "budgets": shown,
        "more_budgets": _rest(
            [{"slots_held": len(b.holders), "waiting": b.waiting} for b in budgets[BUDGETS_SHOWN:]]
        ),
    }


def _budget(budget: BudgetUsage, info: LimitInfo, hosts: dict[str, str], at: float) -> JsonObject:
    holders = sorted(budget.holders, key=lambda h: h.invocation_id)
    return {
        "key": budget.key,
        "key_values": split_scope_key(budget.key).values,
        "slots_held": len(budget.holders),
        "concurrency": info.concurrency,
        "holders": [holder_json(h, hosts, at) for h in holders],
        "waiting": budget.waiting,
        "oldest_wait_since": iso_time(budget.oldest_wait),
        "oldest_wait_seconds": seconds_since(budget.oldest_wait, at),
        "window_starts": budget.window_starts,
        "rate_count": info.rate.count if info.rate is not None else None,
    }


def _rest(rows: list[JsonObject]) -> JsonObject | None:
    """The rows not listed, summed: how many, slots held, waiting; None when there are none."""
    if not rows:
        return None
    return {
        "count": len(rows),
        "slots_held": sum(r["slots_held"] for r in rows),
        "waiting": sum(r["waiting"] for r in rows),
    }


def _running_records(app: App, infos: list[RunnerInfo]) -> tuple[list[InvocationRecord], bool]:
    """The RUNNING invocations, from two bounded sources; and whether none can be missing.

    One page of ``page_invocations(status=RUNNING)`` is fresh, but on a store without a status
    index (Redis) it examines at most ``PAGE_SCAN_MAX`` entries, newest first, so on a large
    store it can stop before older running work. The runners' descriptions name everything
    they run (as of their last heartbeat); those ids are read in one ``get_many``. Both are
    bounded by the work running, never by the size of the store.
    """
    page = app.backend.page_invocations(status=InvocationStatus.RUNNING, limit=RUNNING_PAGE)
    found = {record.invocation_id: record for record in page.records}
    announced = [e.invocation_id for info in infos for e in info.running]
    missing = [i for i in dict.fromkeys(announced) if i not in found]
    for record in app.backend.get_many(missing) if missing else []:
        if record is not None and record.status is InvocationStatus.RUNNING:
            found[record.invocation_id] = record
    return list(found.values()), page.next_cursor is None


def running_keys(
    running: list[InvocationRecord],
    parked_by_key: dict[str, int],
    hosts: dict[str, str],
    at: float,
) -> list[JsonObject]:
    """Tasks' own running scopes: holders (RUNNING invocations by running key) and waiters
    (parked on that key), busiest first. Keys of limits (``limit ...``) are left out."""
    holders: dict[str, list[InvocationRecord]] = defaultdict(list)
    capacity: dict[str, int | None] = {}
    for record in running:
        plan = record.plan
        if plan.running_key is not None:
            holders[plan.running_key].append(record)
            capacity[plan.running_key] = plan.running_limit
        for budget in plan.budgets:
            if budget.limit is None:  # the task's own scope, on the budget path
                holders[budget.key].append(record)
                capacity[budget.key] = budget.concurrency
    waiting = {
        key: count
        for key, count in parked_by_key.items()
        if count and not key.startswith(LIMIT_PREFIX)
    }
    rows: list[JsonObject] = []
    for key in {*holders, *waiting}:
        parts = split_scope_key(key)
        held = sorted(holders.get(key, []), key=lambda r: r.invocation_id)
        rows.append(
            {
                "key": key,
                "task": parts.task,
                "key_values": parts.values,
                "concurrency": capacity.get(key),
                "slots_held": len(held),
                "holders": [
                    holder_json(
                        BudgetHolder(r.invocation_id, r.runner_id, r.lease_expires_at), hosts, at
                    )
                    for r in held
                ],
                "waiting": waiting.get(key, 0),
            }
        )
    rows.sort(key=lambda row: (-row["waiting"], -row["slots_held"], row["key"]))
    return rows
