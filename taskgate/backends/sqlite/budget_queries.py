"""Named SQL of the budget path (limits), and the reads that report on budgets.

Tables and their order are described in ``schema.sql``; the steps that use these statements
are in ``budgets.py``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import defaultdict

from taskgate.record import BudgetHolder, BudgetUsage, LimitOverride, Rate

# Slots.
HOLDER_COUNT = "SELECT COUNT(*) FROM budget_holders WHERE app_id = ? AND budget = ?"
HOLDERS = "SELECT invocation_id FROM budget_holders WHERE app_id = ? AND budget = ?"
TAKE_HOLD = """
INSERT OR IGNORE INTO budget_holders (app_id, budget, invocation_id, limit_name)
VALUES (?, ?, ?, ?)
"""
RELEASE_HOLD = "DELETE FROM budget_holders WHERE app_id = ? AND budget = ? AND invocation_id = ?"

# Rate windows: (now - period, now].
TRIM_STARTS = "DELETE FROM rate_starts WHERE app_id = ? AND budget = ? AND started_at <= ?"
WINDOW_STARTS = """
SELECT COUNT(*), MIN(started_at) FROM rate_starts
WHERE app_id = ? AND budget = ? AND started_at > ?
"""
RECORD_START = """
INSERT OR IGNORE INTO rate_starts (app_id, budget, started_at, invocation_id, period, limit_name)
VALUES (?, ?, ?, ?, ?, ?)
"""
# Starts of budgets no admission has trimmed since their window passed (maintenance).
TRIM_PAST_STARTS = "DELETE FROM rate_starts WHERE app_id = ? AND started_at + period <= ?"

# Waiters.
MARK_PARKED = """
UPDATE invocations SET parked_on = ?, parked_since = COALESCE(parked_since, ?), ready_at = ?
WHERE app_id = ? AND invocation_id = ?
RETURNING parked_since, seq
"""
CLEAR_PARKED = """
UPDATE invocations SET parked_on = NULL, parked_since = NULL, ready_at = NULL
WHERE app_id = ? AND invocation_id = ?
"""
PARK = """
INSERT OR REPLACE INTO budget_waiters
    (app_id, budget, fair, neg_priority, seq, invocation_id, since, limit_name)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
# The next waiter, taken off the waiters in one statement: the head of the first fairness value
# after the last one served (the budget's cursor), else, wrapping round, of the first value.
# Without fairness values every waiter has fair = '' and no cursor: the head in (-priority, seq)
# order. Each arm is one step down the primary key.
WAKE_NEXT = """
DELETE FROM budget_waiters WHERE app_id = ?1 AND budget = ?2
    AND (fair, neg_priority, seq) = (
        SELECT fair, neg_priority, seq FROM (
            SELECT * FROM (
                SELECT 0 AS arm, fair, neg_priority, seq FROM budget_waiters
                WHERE app_id = ?1 AND budget = ?2 AND fair > COALESCE(
                    (SELECT last_fair FROM budget_cursors WHERE app_id = ?1 AND budget = ?2), '')
                ORDER BY fair, neg_priority, seq LIMIT 1)
            UNION ALL
            SELECT * FROM (
                SELECT 1 AS arm, fair, neg_priority, seq FROM budget_waiters
                WHERE app_id = ?1 AND budget = ?2
                ORDER BY fair, neg_priority, seq LIMIT 1)
        ) ORDER BY arm LIMIT 1)
RETURNING fair, invocation_id
"""
# A cancelled waiter leaves its place (params: app, budget, fair, neg_priority, seq).
UNPARK_WAITER = """
DELETE FROM budget_waiters
WHERE app_id = ? AND budget = ? AND fair = ? AND neg_priority = ? AND seq = ?
"""
DROP_CURSOR = "DELETE FROM budget_cursors WHERE app_id = ? AND budget = ?"
WOKEN_COUNT = "SELECT count FROM budget_woken WHERE app_id = ? AND budget = ?"
ADD_WOKEN = """
INSERT INTO budget_woken (app_id, budget, count) VALUES (?, ?, ?)
ON CONFLICT (app_id, budget) DO UPDATE SET count = count + excluded.count
"""
# A woken waiter taken by a claim (admitted, parked again or dropped): one fewer on its way.
TAKE_WOKEN = "UPDATE budget_woken SET count = count - 1 WHERE app_id = ? AND budget = ?"
DROP_SPENT_WOKEN = "DELETE FROM budget_woken WHERE app_id = ? AND budget = ? AND count <= 0"
SET_CURSOR = """
INSERT INTO budget_cursors (app_id, budget, last_fair) VALUES (?, ?, ?)
ON CONFLICT (app_id, budget) DO UPDATE SET last_fair = excluded.last_fair
"""
# A waiter's record holds the declared values of the budget it waits for.
HEAD_WAITER_BUDGETS = """
SELECT i.budgets FROM budget_waiters w
JOIN invocations i ON i.app_id = w.app_id AND i.invocation_id = w.invocation_id
WHERE w.app_id = ? AND w.budget = ? LIMIT 1
"""
HAS_WAITERS = "SELECT 1 FROM budget_waiters WHERE app_id = ? AND budget = ? LIMIT 1"
BUDGETS_WAITING_OF_LIMIT = (
    "SELECT DISTINCT budget FROM budget_waiters WHERE app_id = ? AND limit_name = ?"
)
COUNT_WAITERS_BY_BUDGET = (
    "SELECT budget, COUNT(*) FROM budget_waiters WHERE app_id = ? GROUP BY budget"
)

# The timed structure.
TIMED_DUE_EXISTS = "SELECT 1 FROM timed WHERE app_id = ? AND due <= ? LIMIT 1"
TIMED_TAKE_DUE = """
DELETE FROM timed WHERE app_id = ?1 AND member IN (
    SELECT member FROM timed WHERE app_id = ?1 AND due <= ?2 ORDER BY due LIMIT ?3)
RETURNING member, due
"""
TIMED_REMOVE = "DELETE FROM timed WHERE app_id = ? AND member = ?"
TIMED_ADD = """
INSERT INTO timed (app_id, member, due) VALUES (?, ?, ?)
ON CONFLICT (app_id, member) DO UPDATE SET due = MIN(due, excluded.due)
"""
# What an idle claim looks at: is there work, and when is the next timed entry due.
IDLE_LOOK = """
SELECT EXISTS (SELECT 1 FROM queue WHERE app_id = ?1),
    (SELECT MIN(due) FROM timed WHERE app_id = ?1)
"""
_IDLE_LOOK_OF = """
SELECT EXISTS (SELECT 1 FROM queue WHERE app_id = ?1 AND queue IN ({marks})),
    (SELECT MIN(due) FROM timed WHERE app_id = ?1)
"""


@functools.lru_cache(maxsize=64)
def idle_look_sql(count: int) -> str:
    """:data:`IDLE_LOOK` for a claim of ``count`` named queues (params: app, the names)."""
    return _IDLE_LOOK_OF.format(marks=", ".join(f"?{n + 2}" for n in range(count)))


# Overrides.
OVERRIDES = (
    "SELECT name, concurrency, rate_count, rate_period FROM limit_overrides WHERE app_id = ?"
)
SET_OVERRIDE = """
INSERT INTO limit_overrides (app_id, name, concurrency, rate_count, rate_period)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (app_id, name) DO UPDATE SET concurrency = excluded.concurrency,
    rate_count = excluded.rate_count, rate_period = excluded.rate_period
"""
DELETE_OVERRIDE = "DELETE FROM limit_overrides WHERE app_id = ? AND name = ?"

# Reports.
BLOCKED_ROW = """
SELECT status, running_key, parked_on, ready_at FROM invocations
WHERE app_id = ? AND invocation_id = ?
"""
_OF_LIMIT = "(limit_name = ?2 OR (?2 IS NULL AND limit_name IS NOT NULL))"
USAGE_HOLDERS = f"""
SELECT h.budget, h.limit_name, h.invocation_id, i.runner_id, i.lease_expires_at
FROM budget_holders h
LEFT JOIN invocations i ON i.app_id = h.app_id AND i.invocation_id = h.invocation_id
WHERE h.app_id = ?1 AND {_OF_LIMIT.replace("limit_name", "h.limit_name")}
ORDER BY h.budget, h.invocation_id
"""
USAGE_WAITERS = f"""
SELECT budget, limit_name, COUNT(*), MIN(since) FROM budget_waiters
WHERE app_id = ?1 AND {_OF_LIMIT} GROUP BY budget, limit_name
"""
USAGE_STARTS = f"""
SELECT budget, limit_name, started_at, period FROM rate_starts WHERE app_id = ?1 AND {_OF_LIMIT}
"""


def load_overrides(conn: sqlite3.Connection, app_id: str) -> dict[str, LimitOverride]:
    """Every stored override of the app, by limit name."""
    return {
        name: LimitOverride(concurrency, None if count is None else Rate(count, period))
        for name, concurrency, count, period in conn.execute(OVERRIDES, (app_id,))
    }


def budget_usage(
    conn: sqlite3.Connection, app_id: str, limit: str | None, now: float
) -> list[BudgetUsage]:
    """What :meth:`Backend.budget_usage` returns, read in the caller's transaction."""
    holders: defaultdict[str, list[BudgetHolder]] = defaultdict(list)
    names: dict[str, str] = {}
    for budget, name, invocation_id, runner_id, lease in conn.execute(
        USAGE_HOLDERS, (app_id, limit)
    ):
        holders[budget].append(BudgetHolder(invocation_id, runner_id, lease))
        names[budget] = name
    waiting: dict[str, tuple[int, float | None]] = {}
    for budget, name, count, oldest in conn.execute(USAGE_WAITERS, (app_id, limit)):
        waiting[budget] = (count, oldest)
        names[budget] = name
    overrides = load_overrides(conn, app_id)
    starts: defaultdict[str, int] = defaultdict(int)
    for budget, name, started_at, started_period in conn.execute(USAGE_STARTS, (app_id, limit)):
        override = overrides.get(name)
        period = (
            started_period if override is None or override.rate is None else override.rate.period
        )
        if started_at > now - period:
            starts[budget] += 1
            names[budget] = name
    return [
        BudgetUsage(
            key=budget,
            limit=names[budget],
            holders=tuple(holders.get(budget, ())),
            waiting=waiting.get(budget, (0, None))[0],
            oldest_wait=waiting.get(budget, (0, None))[1],
            window_starts=starts.get(budget, 0),
        )
        for budget in sorted(names)
    ]
