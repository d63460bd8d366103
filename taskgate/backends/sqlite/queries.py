"""Named SQL statements of the SQLite backend, and readers that turn rows into records."""

from __future__ import annotations

import functools
import json
import sqlite3

from taskgate.record import ConcurrencyPlan, InvocationRecord, Transition, decode_budgets
from taskgate.status import InvocationStatus

# The WHERE of the partial index invocations_by_status_task (schema.sql), which a query through
# it repeats word for word: SQLite uses a partial index only when it can prove the query's WHERE
# implies the index's, and an identical term is the proof it always finds.
INDEXED = "(status <> 'registered' OR attempt > 0)"

APP_TABLES = (
    "invocations",
    "queue",
    "registration_keys",
    "slots",
    "parked",
    "runners",
    "budget_holders",
    "budget_waiters",
    "budget_cursors",
    "budget_woken",
    "rate_starts",
    "timed",
    "limit_overrides",
    "cancel_requests",
    "periodic_ticks",
    "runner_info",
)

INSERT_INVOCATION = """
INSERT INTO invocations (
    app_id, invocation_id, task_id, arguments, registration_key, running_key, running_limit,
    drop_when_blocked, max_retries, status, created_at, budgets, priority, scheduled_for, queue,
    trace_context, history
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# A transition's entry (history_entry) appended to the row's history; a statement of its own
# for the rarer transitions, the common ones append in their own UPDATE (START_RUNNING...).
APPEND_HISTORY = """
UPDATE invocations SET history = history || ',' || ? WHERE app_id = ? AND invocation_id = ?
"""
# Params: status, its history entry, app, id.
SET_STATUS = """
UPDATE invocations SET status = ?, history = history || ',' || ?
WHERE app_id = ? AND invocation_id = ?
"""
SELECT_INVOCATION = "SELECT * FROM invocations WHERE app_id = ? AND invocation_id = ?"
SELECT_INVOCATIONS_IN = "SELECT * FROM invocations WHERE app_id = ? AND invocation_id IN ({marks})"
# What answers a result (Backend.final_outcomes): three columns, not the whole row.
SELECT_OUTCOMES_IN = (
    "SELECT invocation_id, status, result, error FROM invocations"
    " WHERE app_id = ? AND invocation_id IN ({marks})"
)
# Ids per IN (...) list: well under SQLite's limit on bound parameters.
IN_BATCH = 500
STATUS_AND_RUNNING_KEY = (
    "SELECT status, running_key FROM invocations WHERE app_id = ? AND invocation_id = ?"
)

# Registration keys.
REGISTRATION_HOLDER = """
SELECT k.invocation_id, i.arguments FROM registration_keys k
JOIN invocations i ON i.app_id = k.app_id AND i.invocation_id = k.invocation_id
WHERE k.app_id = ? AND k.key = ?
"""
TAKE_REGISTRATION_KEY = (
    "INSERT OR IGNORE INTO registration_keys (app_id, key, invocation_id) VALUES (?, ?, ?)"
)
RELEASE_REGISTRATION_KEY = (
    "DELETE FROM registration_keys WHERE app_id = ? AND key = ? AND invocation_id = ?"
)

# The ready queues, in (neg_priority, position) order; positions are unique per priority. Rows
# of queue 'default' are lane 0, of any other queue lane 1 (schema.sql): each lane is in that
# order in the primary key, and the head or the end of a priority is the better of two lanes'.
QUEUE_NOT_EMPTY = "SELECT 1 FROM queue WHERE app_id = ? LIMIT 1"
OTHER_LANE_NOT_EMPTY = "SELECT 1 FROM queue WHERE app_id = ? AND lane = 1 LIMIT 1"
# The head of every queue while lane 1 is empty (every call without a queue option): the
# first row of lane 0, one seek; nothing when lane 1 has rows. Then OTHER_LANE_NOT_EMPTY (one
# seek) says whether QUEUE_POP_HEAD must decide: a claim that empties the queue skips it.
QUEUE_POP_PLAIN_HEAD = """
DELETE FROM queue WHERE app_id = ?1 AND (lane, neg_priority, position) = (
    SELECT lane, neg_priority, position FROM queue WHERE app_id = ?1 AND lane = 0
        AND NOT EXISTS (SELECT 1 FROM queue WHERE app_id = ?1 AND lane = 1)
    ORDER BY neg_priority, position LIMIT 1)
RETURNING invocation_id
"""
# The head of every queue: the better of the two lanes' first rows (a compound query with a
# sort of two rows: several times the cost of one seek, paid only once lane 1 has rows).
QUEUE_POP_HEAD = """
DELETE FROM queue WHERE app_id = ?1 AND (lane, neg_priority, position) = (
    SELECT lane, neg_priority, position FROM (
        SELECT * FROM (SELECT lane, neg_priority, position FROM queue
            WHERE app_id = ?1 AND lane = 0 ORDER BY neg_priority, position LIMIT 1)
        UNION ALL
        SELECT * FROM (SELECT lane, neg_priority, position FROM queue
            WHERE app_id = ?1 AND lane = 1 ORDER BY neg_priority, position LIMIT 1))
    ORDER BY neg_priority, position LIMIT 1)
RETURNING invocation_id
"""
# The head of some queues (?2, ?3...): the best of each queue's head (see pop_head_sql). The
# lane is written out (0 for 'default', 1 for the rest): queue_other_lanes, an index of lane-1
# rows only, serves a query only when its WHERE names lane = 1 literally.
_QUEUE_HEAD_OF = """SELECT * FROM (SELECT lane, neg_priority, position FROM queue
    WHERE app_id = ?1 AND lane = {lane} AND queue = ?{n} ORDER BY neg_priority, position LIMIT 1)"""
_QUEUE_POP_HEAD_OF = """
DELETE FROM queue WHERE app_id = ?1 AND (lane, neg_priority, position) = (
    SELECT lane, neg_priority, position FROM ({heads}) ORDER BY neg_priority, position LIMIT 1)
RETURNING invocation_id
"""
# The last (first) position of a priority over both lanes, NULL when it has none: two seeks of
# the primary key (an IN over the lanes would defeat SQLite's min/max optimization).
_END_OF_PRIORITY = """(SELECT {fn}(p) FROM (
    SELECT {fn}(position) AS p FROM queue WHERE app_id = ?1 AND lane = 0 AND neg_priority = {neg}
    UNION ALL
    SELECT {fn}(position) FROM queue WHERE app_id = ?1 AND lane = 1 AND neg_priority = {neg}))"""
_LAST = _END_OF_PRIORITY.format(fn="MAX", neg="?3")
_FIRST = _END_OF_PRIORITY.format(fn="MIN", neg="?3")
# Whether a ready invocation of a higher priority than ?2 (a smaller neg_priority) waits.
QUEUE_AHEAD_OF = """
SELECT 1 FROM queue WHERE app_id = ?1 AND lane = 0 AND neg_priority < ?2
UNION ALL
SELECT 1 FROM queue WHERE app_id = ?1 AND lane = 1 AND neg_priority < ?2
LIMIT 1
"""
# Params: app, queue, neg_priority, invocation id, then task and seq for a fresh registration
# (what invocations_by_status_task leaves out of it, schema.sql), else NULL and NULL.
QUEUE_PUSH_BACK = f"""
INSERT INTO queue (app_id, lane, neg_priority, position, queue, invocation_id, task_id, seq)
VALUES (?1, ?2 <> 'default', ?3, COALESCE({_LAST}, 0) + 1, ?2, ?4, ?5, ?6)
"""
QUEUE_PUSH_FRONT = f"""
INSERT INTO queue (app_id, lane, neg_priority, position, queue, invocation_id)
VALUES (?1, ?2 <> 'default', ?3, COALESCE({_FIRST}, 0) - 1, ?2, ?4)
"""
# The same by id alone (queue and priority read from the row). Params: app, invocation id.
QUEUE_PUSH_FRONT_ID = f"""
INSERT INTO queue (app_id, lane, neg_priority, position, queue, invocation_id)
SELECT ?1, i.queue <> 'default', -i.priority,
    COALESCE({_END_OF_PRIORITY.format(fn="MIN", neg="-i.priority")}, 0) - 1, i.queue, ?2
FROM invocations i WHERE i.app_id = ?1 AND i.invocation_id = ?2
"""
# A due timed invocation goes to the tail, if it still waits (SCHEDULED or a delayed RETRY).
QUEUE_PUSH_BACK_WAITING = f"""
INSERT INTO queue (app_id, lane, neg_priority, position, queue, invocation_id)
SELECT ?1, i.queue <> 'default', -i.priority,
    COALESCE({_END_OF_PRIORITY.format(fn="MAX", neg="-i.priority")}, 0) + 1, i.queue, ?2
FROM invocations i WHERE i.app_id = ?1 AND i.invocation_id = ?2
    AND i.status IN ('scheduled', 'retry')
"""


@functools.lru_cache(maxsize=64)
def pop_head_sql(names: tuple[str, ...]) -> str:
    """The statement taking the head of the named queues (params: app, then ``names``)."""
    heads = " UNION ALL ".join(
        _QUEUE_HEAD_OF.format(lane=int(name != "default"), n=n + 2) for n, name in enumerate(names)
    )
    return _QUEUE_POP_HEAD_OF.format(heads=heads)


# Running slots and parked invocations.
SLOT_HELD = "SELECT 1 FROM slots WHERE app_id = ? AND running_key = ? AND invocation_id = ?"
SLOT_HOLDERS = "SELECT invocation_id FROM slots WHERE app_id = ? AND running_key = ?"
TAKE_SLOT = "INSERT INTO slots (app_id, running_key, invocation_id) VALUES (?, ?, ?)"
# A slot if the key has one free (fewer than ?4 holders); nothing if not, or already held.
# Params: app, running key, invocation id, running limit.
TAKE_FREE_SLOT = """
INSERT OR IGNORE INTO slots (app_id, running_key, invocation_id)
SELECT ?1, ?2, ?3 WHERE (SELECT COUNT(*) FROM slots WHERE app_id = ?1 AND running_key = ?2) < ?4
"""
RELEASE_SLOT = "DELETE FROM slots WHERE app_id = ? AND running_key = ? AND invocation_id = ?"
# Params: app, running key, neg_priority, invocation id, queue.
PARK_BACK = """
INSERT INTO parked (app_id, running_key, neg_priority, position, invocation_id, queue)
VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(position), 0) + 1 FROM parked
                     WHERE app_id = ?1 AND running_key = ?2 AND neg_priority = ?3), ?4, ?5)
"""
PARK_FRONT = """
INSERT INTO parked (app_id, running_key, neg_priority, position, invocation_id, queue)
VALUES (?1, ?2, ?3, (SELECT COALESCE(MIN(position), 0) - 1 FROM parked
                     WHERE app_id = ?1 AND running_key = ?2 AND neg_priority = ?3), ?4, ?5)
"""
# The first waiter of a running key, taken off its list if the key has a free slot (fewer
# than ?3 holders). Params: app, running key, running limit.
PARKED_POP_IF_FREE = """
DELETE FROM parked WHERE app_id = ?1 AND running_key = ?2 AND (neg_priority, position) = (
    SELECT neg_priority, position FROM parked WHERE app_id = ?1 AND running_key = ?2
    ORDER BY neg_priority, position LIMIT 1)
    AND (SELECT COUNT(*) FROM slots WHERE app_id = ?1 AND running_key = ?2) < ?3
RETURNING neg_priority, invocation_id, queue
"""
UNPARK_ID = """
DELETE FROM parked WHERE app_id = ? AND running_key = ? AND neg_priority = ? AND invocation_id = ?
"""

# Claims, leases and outcomes.
START_RUNNING = """
UPDATE invocations SET status = 'running', attempt = attempt + 1, runner_id = ?,
    lease_expires_at = ?, history = history || ',' || ?
WHERE app_id = ? AND invocation_id = ?
RETURNING invocation_id, task_id, arguments, attempt, num_retries, max_retries, registration_key
"""
# The common claim in one statement: a queued invocation without budgets starts at once if it
# has no running key, holds its slot already (a waiter woken by a finish, which took the slot
# for it), or its key has a free slot (fewer than running_limit holders), which the caller
# then takes (TAKE_STARTED_SLOT) in the same transaction: else nothing changes and the caller
# takes the general path (park or drop). No subquery in RETURNING: SQLite cannot seek an index
# there with the row's columns. Params: runner, lease expiry, history entry, app, id.
START_READY_STATUSES = ("registered", "retry", "scheduled", "concurrency_controlled")
START_READY = f"""
UPDATE invocations SET status = 'running', attempt = attempt + 1, runner_id = ?1,
    lease_expires_at = ?2, history = history || ',' || ?3
WHERE app_id = ?4 AND invocation_id = ?5 AND budgets IS NULL
    AND status IN ({", ".join(f"'{status}'" for status in START_READY_STATUSES)})
    AND (running_key IS NULL OR EXISTS (SELECT 1 FROM slots s
        WHERE s.app_id = ?4 AND s.running_key = invocations.running_key AND s.invocation_id = ?5)
        OR (SELECT COUNT(*) FROM slots s
            WHERE s.app_id = ?4 AND s.running_key = invocations.running_key) < running_limit)
RETURNING invocation_id, task_id, arguments, attempt, num_retries, max_retries, registration_key,
    running_key
"""
# The slot of the row START_READY started: the free one it found, or (ignored) the one it holds.
TAKE_STARTED_SLOT = (
    "INSERT OR IGNORE INTO slots (app_id, running_key, invocation_id) VALUES (?, ?, ?)"
)
REQUEUE = """
UPDATE invocations SET status = 'registered', runner_id = NULL, lease_expires_at = NULL
WHERE app_id = ? AND invocation_id = ?
"""
OWNED = """
SELECT * FROM invocations
WHERE app_id = ? AND invocation_id = ? AND status = 'running' AND runner_id = ? AND attempt = ?
"""
RENEW_LEASE = """
UPDATE invocations SET lease_expires_at = ?
WHERE app_id = ? AND invocation_id = ? AND status = 'running' AND runner_id = ? AND attempt = ?
"""
RECORD_RETRY = """
UPDATE invocations SET status = 'retry', runner_id = NULL, lease_expires_at = NULL,
    num_retries = num_retries + 1, error = ?
WHERE app_id = ? AND invocation_id = ?
"""
# The common finish in one statement: SUCCESS or FAILED of a run its runner still owns, no
# cancel requested (else nothing changes and the caller takes the general path). Params:
# status, expires_at, result, error, history entry, app, id, runner, attempt.
FINISH_OWNED = """
UPDATE invocations SET status = ?, runner_id = NULL, lease_expires_at = NULL, expires_at = ?,
    result = ?, error = ?, history = history || ',' || ?
WHERE app_id = ? AND invocation_id = ? AND status = 'running' AND runner_id = ? AND attempt = ?
    AND cancel_requested = 0
RETURNING invocation_id, running_key, running_limit, budgets
"""
RECORD_FINAL = """
UPDATE invocations SET status = ?, runner_id = NULL, lease_expires_at = NULL, expires_at = ?,
    result = ?, error = ?, history = history || ',' || ?
WHERE app_id = ? AND invocation_id = ?
"""
COUNT_RECOVERY = (
    "UPDATE invocations SET num_recoveries = num_recoveries + 1 "
    "WHERE app_id = ? AND invocation_id = ?"
)
# Only RUNNING rows hold a lease (every step out of RUNNING clears it): the running rows, as
# many as runners run at once, are read through invocations_by_status_task. An index of leases
# (v4) cost every claim and every finish a b-tree write.
EXPIRED_LEASES = f"""
SELECT * FROM invocations INDEXED BY invocations_by_status_task
WHERE app_id = ? AND status = 'running' AND {INDEXED} AND lease_expires_at < ?
ORDER BY lease_expires_at
"""
EXPIRED_FINALS = """
SELECT invocation_id FROM invocations
WHERE app_id = ? AND expires_at IS NOT NULL AND expires_at <= ? LIMIT ?
"""
DELETE_INVOCATION = "DELETE FROM invocations WHERE app_id = ? AND invocation_id = ?"

# Runners.
UPSERT_RUNNER = """
INSERT INTO runners (app_id, runner_id, expires_at) VALUES (?, ?, ?)
ON CONFLICT (app_id, runner_id) DO UPDATE SET expires_at = excluded.expires_at
"""
DELETE_DEAD_RUNNERS = "DELETE FROM runners WHERE app_id = ? AND expires_at <= ?"
DELETE_RUNNER = "DELETE FROM runners WHERE app_id = ? AND runner_id = ?"
# A runner's description (see descriptions.py).
DELETE_RUNNER_INFO = "DELETE FROM runner_info WHERE app_id = ? AND runner_id = ?"
RUNNING_OF_RUNNER = f"""
SELECT * FROM invocations INDEXED BY invocations_by_status_task
WHERE app_id = ? AND status = 'running' AND {INDEXED} AND runner_id = ?
ORDER BY lease_expires_at
"""
LIVE_RUNNERS = "SELECT runner_id, expires_at FROM runners WHERE app_id = ? AND expires_at > ?"

# Admin.
COUNT_PARKED_BY_KEY = (
    "SELECT running_key, COUNT(*) FROM parked WHERE app_id = ? GROUP BY running_key"
)


_STATUSES = {status.value: status for status in InvocationStatus}
# A record without control (the usual case) shares one plan, which is frozen: every read of a
# record (a result, a page of the monitor) runs row_to_record.
_NO_PLAN = ConcurrencyPlan()


def _plan(row: sqlite3.Row) -> ConcurrencyPlan:
    registration_key, running_key = row["registration_key"], row["running_key"]
    running_limit, drop_when_blocked = row["running_limit"], row["drop_when_blocked"]
    budgets = row["budgets"]
    if (
        registration_key is None
        and running_key is None
        and budgets is None
        and running_limit == 1
        and not drop_when_blocked
    ):
        return _NO_PLAN
    return ConcurrencyPlan(
        registration_key=registration_key,
        running_key=running_key,
        running_limit=running_limit,
        drop_when_blocked=bool(drop_when_blocked),
        budgets=decode_budgets(budgets),
    )


def row_to_record(row: sqlite3.Row, history: list[Transition]) -> InvocationRecord:
    """Rebuild a record from its ``invocations`` row and its history."""
    return InvocationRecord(
        invocation_id=row["invocation_id"],
        task_id=row["task_id"],
        arguments=row["arguments"],
        plan=_plan(row),
        max_retries=row["max_retries"],
        priority=row["priority"],
        queue=row["queue"],
        scheduled_for=row["scheduled_for"],
        status=_STATUSES[row["status"]],
        attempt=row["attempt"],
        num_retries=row["num_retries"],
        num_recoveries=row["num_recoveries"],
        runner_id=row["runner_id"],
        lease_expires_at=row["lease_expires_at"],
        created_at=row["created_at"],
        result=row["result"],
        error=row["error"],
        history=history,
        cancel_requested=bool(row["cancel_requested"]),
        trace_context=row["trace_context"],
    )


def history_entry(status: InvocationStatus, timestamp: float, runner_id: str | None) -> str:
    """One transition as the ``history`` column stores it: a compact JSON array (a float's
    repr, its exact value; any runner id quoted). Formatted by hand: ``json.dumps`` took a
    tenth of a claim's CPU."""
    runner = "null" if runner_id is None else _json_string(runner_id)
    return f'["{status.value}",{timestamp!r},{runner}]'


@functools.lru_cache(maxsize=256)
def _json_string(text: str) -> str:
    return json.dumps(text)


def load_history(row: sqlite3.Row) -> list[Transition]:
    """The transitions of one ``invocations`` row, oldest first.

    A row upgraded from a file without history rows starts empty, so its first appended entry
    follows a lone comma: stripped here rather than tested in every UPDATE that appends.
    """
    entries = row["history"].lstrip(",")
    return [
        Transition(InvocationStatus(status), timestamp, runner_id)
        for status, timestamp, runner_id in json.loads(f"[{entries}]")
    ]


def load_record(
    conn: sqlite3.Connection, app_id: str, invocation_id: str
) -> InvocationRecord | None:
    """One record with its history, or None."""
    row = conn.execute(SELECT_INVOCATION, (app_id, invocation_id)).fetchone()
    if row is None:
        return None
    return row_to_record(row, load_history(row))


def find_ids(conn: sqlite3.Connection, app_id: str, prefix: str, limit: int) -> list[str]:
    """Up to ``limit`` invocation ids starting with ``prefix``, sorted.

    A range on the ``(app_id, invocation_id)`` unique index rather than LIKE, whose wildcards
    (and case folding) would need escaping; every id starting with ``prefix`` sorts at or after
    it and before ``prefix`` followed by the highest code point.
    """
    rows = conn.execute(
        "SELECT invocation_id FROM invocations WHERE app_id = ? AND invocation_id >= ? "
        "AND invocation_id < ? ORDER BY invocation_id LIMIT ?",
        (app_id, prefix, prefix + "\U0010ffff", limit),
    ).fetchall()
    return [row[0] for row in rows]
