-- taskgate SQLite schema, version 1 (PRAGMA user_version).
-- Every table is keyed by app_id first: apps sharing one file never see each other's rows.

CREATE TABLE invocations (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,  -- registration order (newest first)
    app_id            TEXT    NOT NULL,
    invocation_id     TEXT    NOT NULL,
    task_id           TEXT    NOT NULL,
    arguments         BLOB    NOT NULL,
    registration_key  TEXT,
    running_key       TEXT,
    running_limit     INTEGER NOT NULL,
    drop_when_blocked INTEGER NOT NULL,
    max_retries       INTEGER NOT NULL,
    status            TEXT    NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    num_retries       INTEGER NOT NULL DEFAULT 0,
    num_recoveries    INTEGER NOT NULL DEFAULT 0,
    runner_id         TEXT,
    lease_expires_at  REAL,
    created_at        REAL    NOT NULL,
    expires_at        REAL,                               -- set when final (result TTL)
    result            BLOB,
    error             BLOB,
    UNIQUE (app_id, invocation_id)
);
CREATE INDEX invocations_by_task ON invocations (app_id, task_id, seq);
CREATE INDEX invocations_by_status ON invocations (app_id, status, seq);
CREATE INDEX invocations_by_lease ON invocations (app_id, lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;
CREATE INDEX invocations_by_expiry ON invocations (app_id, expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE history (
    step          INTEGER PRIMARY KEY,                    -- insertion order
    app_id        TEXT    NOT NULL,
    invocation_id TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    timestamp     REAL    NOT NULL,
    runner_id     TEXT
);
CREATE INDEX history_by_invocation ON history (app_id, invocation_id, step);

-- The ready queue. position orders it; a woken or handed-back invocation goes before the head.
CREATE TABLE queue (
    app_id        TEXT    NOT NULL,
    position      INTEGER NOT NULL,
    invocation_id TEXT    NOT NULL,
    PRIMARY KEY (app_id, position)
) WITHOUT ROWID;

-- Registration keys held by invocations that have not started running.
CREATE TABLE registration_keys (
    app_id        TEXT NOT NULL,
    key           TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    PRIMARY KEY (app_id, key)
) WITHOUT ROWID;

-- Running slots: one row per holder; a key is full when it has running_limit rows.
CREATE TABLE slots (
    app_id        TEXT NOT NULL,
    running_key   TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    PRIMARY KEY (app_id, running_key, invocation_id)
) WITHOUT ROWID;

-- Invocations parked on a full running key, first come first served.
CREATE TABLE parked (
    app_id        TEXT    NOT NULL,
    running_key   TEXT    NOT NULL,
    position      INTEGER NOT NULL,
    invocation_id TEXT    NOT NULL,
    PRIMARY KEY (app_id, running_key, position)
) WITHOUT ROWID;

CREATE TABLE runners (
    app_id     TEXT NOT NULL,
    runner_id  TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (app_id, runner_id)
) WITHOUT ROWID;
