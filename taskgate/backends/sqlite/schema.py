"""The schema of a taskgate SQLite file: creating it, and upgrading files of older versions.

``schema.sql`` always holds the current schema, which a new file gets whole. A file of an older
version (``PRAGMA user_version``) is upgraded step by step by :data:`MIGRATIONS`; each step ends
with the file equal to what ``schema.sql`` creates (a test compares them), and every step runs in
the caller's one ``BEGIN IMMEDIATE`` transaction, so racing processes upgrade a file once.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from importlib import resources
from pathlib import Path

from taskgate.errors import ConfigError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 6

# From version N to N + 1: columns of existing tables first (ALTER TABLE appends them, which is
# why schema.sql lists them last); the tables and indexes of schema.sql that the file lacks are
# then created from schema.sql itself, so their definitions are never written twice. A table
# whose key changes is renamed aside first, created anew, and filled by COPIES (then dropped).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE invocations ADD COLUMN budgets TEXT",
        "ALTER TABLE invocations ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE invocations ADD COLUMN parked_on TEXT",
        "ALTER TABLE invocations ADD COLUMN parked_since REAL",
        "ALTER TABLE invocations ADD COLUMN ready_at REAL",
        "ALTER TABLE invocations ADD COLUMN scheduled_for REAL",
    ),
    2: (
        "ALTER TABLE invocations ADD COLUMN queue TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE invocations ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        # Both are ordered by priority now: their keys gain neg_priority.
        "ALTER TABLE queue RENAME TO queue_v2",
        "ALTER TABLE parked RENAME TO parked_v2",
    ),
    # The runner_info table comes from schema.sql.
    3: ("ALTER TABLE invocations ADD COLUMN trace_context TEXT",),
    # Fewer pages per write: invocations loses AUTOINCREMENT and gains its history column, the
    # history table goes. Both are set aside for REBUILD; the indexes of invocations go now, as
    # schema.sql creates them anew under the same names (history_by_invocation stays until its
    # table is dropped: REBUILD reads the history through it).
    4: (
        "ALTER TABLE invocations RENAME TO invocations_v4",
        "DROP INDEX IF EXISTS invocations_by_task",
        "DROP INDEX IF EXISTS invocations_by_status",
        "DROP INDEX IF EXISTS invocations_by_lease",
        "DROP INDEX IF EXISTS invocations_by_expiry",
        "ALTER TABLE history RENAME TO history_v4",
    ),
    # The status index becomes partial: schema.sql creates it anew (absent from files before v5).
    5: ("DROP INDEX IF EXISTS invocations_by_status_task",),
}

_V4_COLUMNS = (
    "seq, app_id, invocation_id, task_id, arguments, registration_key, running_key, "
    "running_limit, drop_when_blocked, max_retries, status, attempt, num_retries, "
    "num_recoveries, runner_id, lease_expires_at, created_at, expires_at, result, error, "
    "budgets, priority, parked_on, parked_since, ready_at, scheduled_for, queue, "
    "cancel_requested, trace_context"
)
# Run for a file older than v5 once schema.sql's tables exist, before COPIES (which join
# invocations): the rows of invocations move in, each with its history as queries.HISTORY_ENTRY
# writes it (timestamps in 17 digits: a float's exact value).
REBUILT_BEFORE = 5
REBUILD = (
    f"""INSERT INTO invocations ({_V4_COLUMNS}, history)
    SELECT {_V4_COLUMNS}, COALESCE((
        SELECT group_concat(entry, ',') FROM (
            SELECT '["' || h.status || '",' || printf('%!.17g', h.timestamp) || ','
                || COALESCE(json_quote(h.runner_id), 'null') || ']' AS entry
            FROM history_v4 h
            WHERE h.app_id = i.app_id AND h.invocation_id = i.invocation_id
            ORDER BY h.step)), '')
    FROM invocations_v4 i""",
    "DROP TABLE invocations_v4",
    "DROP TABLE history_v4",
)

# A queue row's task and seq (v6): set for a fresh registration (REGISTERED, never run), which
# invocations_by_status_task leaves out; the joined invocation is ``i``.
_FRESH = (
    "CASE WHEN i.status = 'registered' AND i.attempt = 0 THEN i.task_id END, "
    "CASE WHEN i.status = 'registered' AND i.attempt = 0 THEN i.seq END"
)
_QUEUE_COLUMNS = "app_id, lane, neg_priority, position, queue, invocation_id, task_id, seq"

# Run after the tables of schema.sql were created: rows of the tables renamed aside move in.
COPIES: dict[int, tuple[str, ...]] = {
    2: (
        f"""INSERT INTO queue ({_QUEUE_COLUMNS})
        SELECT q.app_id, COALESCE(i.queue, 'default') <> 'default', -COALESCE(i.priority, 0),
            q.position, COALESCE(i.queue, 'default'), q.invocation_id, {_FRESH}
        FROM queue_v2 q
        LEFT JOIN invocations i ON i.app_id = q.app_id AND i.invocation_id = q.invocation_id""",
        "DROP TABLE queue_v2",
        """INSERT INTO parked (app_id, running_key, neg_priority, position, invocation_id, queue)
        SELECT p.app_id, p.running_key, -COALESCE(i.priority, 0), p.position, p.invocation_id,
            COALESCE(i.queue, 'default')
        FROM parked_v2 p
        LEFT JOIN invocations i ON i.app_id = p.app_id AND i.invocation_id = p.invocation_id""",
        "DROP TABLE parked_v2",
    ),
}

# Steps for a file of exactly that version, around the steps above: a table set aside and
# refilled in a layout only that version had. The ready queue of a v3 file gains the lane
# ('default' or not) in its key (v4); older files refill theirs by COPIES[2], queue_by_lane
# goes with the v3 table. The queue of a v4 or v5 file gains task_id and seq (v6); its index
# goes now, as schema.sql creates it under the same name.
_SET_QUEUE_ASIDE = (
    "ALTER TABLE queue RENAME TO queue_v5",
    "DROP INDEX IF EXISTS queue_other_lanes",
)
_REFILL_QUEUE = (
    f"""INSERT INTO queue ({_QUEUE_COLUMNS})
    SELECT q.app_id, q.lane, q.neg_priority, q.position, q.queue, q.invocation_id, {_FRESH}
    FROM queue_v5 q
    LEFT JOIN invocations i ON i.app_id = q.app_id AND i.invocation_id = q.invocation_id""",
    "DROP TABLE queue_v5",
)
SET_ASIDE: dict[int, tuple[str, ...]] = {
    3: ("ALTER TABLE queue RENAME TO queue_v3",),
    4: _SET_QUEUE_ASIDE,
    5: _SET_QUEUE_ASIDE,
}
REFILL: dict[int, tuple[str, ...]] = {
    3: (
        f"""INSERT INTO queue ({_QUEUE_COLUMNS})
        SELECT q.app_id, q.queue <> 'default', q.neg_priority, q.position, q.queue,
            q.invocation_id, {_FRESH}
        FROM queue_v3 q
        LEFT JOIN invocations i ON i.app_id = q.app_id AND i.invocation_id = q.invocation_id""",
        "DROP TABLE queue_v3",
    ),
    4: _REFILL_QUEUE,
    5: _REFILL_QUEUE,
}

_CREATED_NAME = re.compile(r"^CREATE\s+(?:TABLE|INDEX)\s+(\w+)", re.IGNORECASE)


def schema_statements() -> list[str]:
    """The statements of ``schema.sql``, comments left out."""
    text = resources.files("taskgate.backends.sqlite").joinpath("schema.sql").read_text()
    statements, current = [], ""
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file, or upgrade an older one, in one write transaction.

    Raises:
        ConfigError: The file was made by a newer taskgate.
    """
    version = _version(conn)
    if version == SCHEMA_VERSION:
        return
    _refuse_newer(version, path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have created or upgraded the schema while this one waited.
        version = _version(conn)
        _refuse_newer(version, path)
        if version == 0:
            for statement in schema_statements():
                conn.execute(statement)
            logger.info("created taskgate schema v%s in %s", SCHEMA_VERSION, path)
        elif version < SCHEMA_VERSION:
            _upgrade(conn, version)
            logger.info("upgraded taskgate schema v%s to v%s in %s", version, SCHEMA_VERSION, path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    for step in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[step]:
            conn.execute(statement)
    for statement in SET_ASIDE.get(version, ()):
        conn.execute(statement)
    existing = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    for statement in schema_statements():
        match = _CREATED_NAME.match(statement)
        if match is not None and match.group(1) not in existing:
            conn.execute(statement)
    for statement in REBUILD if version < REBUILT_BEFORE else ():
        conn.execute(statement)
    for step in range(version, SCHEMA_VERSION):
        for statement in COPIES.get(step, ()):
            conn.execute(statement)
    for statement in REFILL.get(version, ()):
        conn.execute(statement)


def _version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"SQLite database {path} has schema version {version}, newer than this "
            f"taskgate understands ({SCHEMA_VERSION}); upgrade taskgate or use another file"
        )
