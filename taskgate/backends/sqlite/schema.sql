-- taskgate SQLite schema, version 6 (PRAGMA user_version); schema.py upgrades older files.
-- Every table is keyed by app_id first: apps sharing one file never see each other's rows.

-- Each write touches every b-tree it changes (a WAL page each at least): registering writes
-- the row, its unique index and the queue, and nothing else (v5: no AUTOINCREMENT counter
-- page, history kept in the row; v6: a fresh registration is left out of
-- invocations_by_status_task, the queue row says what that index would).
-- Expired leases are found among the RUNNING rows of that index (v5: no index of leases).
CREATE TABLE invocations (
    -- Registration order (newest first). The rowid without AUTOINCREMENT: a new row takes the
    -- largest seq + 1, so it is still newer than every row in the file.
    seq               INTEGER PRIMARY KEY,
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
    -- v2 (limits): columns added by ALTER TABLE on older files, so they come last.
    budgets           TEXT,                               -- record.encode_budgets; NULL: none
    priority          INTEGER NOT NULL DEFAULT 0,
    parked_on         TEXT,                               -- the budget a waiter waits for
    parked_since      REAL,                               -- first park of this wait
    ready_at          REAL,                               -- parked on a rate: when it admits
    scheduled_for     REAL,                               -- a delayed call: not before then
    -- v3 (queues, cancellation).
    queue             TEXT    NOT NULL DEFAULT 'default',
    cancel_requested  INTEGER NOT NULL DEFAULT 0,         -- cancel() while it ran
    -- v4 (monitor, tracing).
    trace_context     TEXT,                               -- the caller's; NULL unless tracing
    -- v5: the transitions, oldest first, as JSON arrays [status, timestamp, runner_id] joined
    -- by commas (queries.HISTORY_ENTRY): appended by the UPDATE of each transition, read by
    -- wrapping it in brackets. A table of its own cost two b-trees (rows, index) per write.
    history           TEXT    NOT NULL,
    UNIQUE (app_id, invocation_id)
);
-- One index for both filters (v5; v4 had one by task and one by status, each a b-tree more per
-- registration): counts by status and task in one index-only scan, pages of a status, a task
-- or both merged from its (status, task) groups, each in seq order (newest.py). Partial (v6):
-- a REGISTERED row that never ran (attempt 0) is left out, so a registration writes one b-tree
-- fewer and its claim inserts an entry instead of moving one. Such a row is always in the
-- ready queue (only a claim or a cancel takes it out, and either changes its status in the same
-- transaction), whose row carries its task and seq for the counts and pages (newest.py).
-- Queries through this index repeat its WHERE (queries.INDEXED): SQLite uses a partial index
-- only for a query whose WHERE implies the index's, and reads no row for it only when the
-- index holds every column that WHERE names, hence attempt last (it changes only with status).
CREATE INDEX invocations_by_status_task ON invocations (app_id, status, task_id, seq, attempt)
    WHERE status <> 'registered' OR attempt > 0;
CREATE INDEX invocations_by_expiry ON invocations (app_id, expires_at)
    WHERE expires_at IS NOT NULL;

-- The ready queues: taken highest priority first (neg_priority = -priority), then by position.
-- Positions are unique per priority across queues (MAX + 1 at the tail); a woken, handed-back
-- or recovered invocation takes MIN - 1, the head of its priority. Lane 0 holds queue
-- 'default', lane 1 every other queue (v4): a claim of every queue takes the better of the two
-- lanes' heads in the primary key, a claim naming queues reads the head of 'default' there and
-- of each other queue through queue_other_lanes, which indexes lane-1 rows only, so a call
-- without a queue option writes one b-tree entry here, not two.
CREATE TABLE queue (
    app_id        TEXT    NOT NULL,
    lane          INTEGER NOT NULL,                       -- 0: queue 'default'; 1: others
    neg_priority  INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    queue         TEXT    NOT NULL,
    invocation_id TEXT    NOT NULL,
    -- v6: a fresh registration's task and invocations.seq (REGISTERED, attempt 0: the rows
    -- invocations_by_status_task leaves out); NULL for every other row of the queue.
    task_id       TEXT,
    seq           INTEGER,
    PRIMARY KEY (app_id, lane, neg_priority, position)
) WITHOUT ROWID;
CREATE INDEX queue_other_lanes ON queue (app_id, queue, neg_priority, position) WHERE lane = 1;

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

-- Invocations parked on a full running key: higher priority first, then first come first
-- served (position; MIN - 1 for a handed-back one, first in line).
CREATE TABLE parked (
    app_id        TEXT    NOT NULL,
    running_key   TEXT    NOT NULL,
    neg_priority  INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    invocation_id TEXT    NOT NULL,
    queue         TEXT    NOT NULL,                       -- its ready queue, once woken
    PRIMARY KEY (app_id, running_key, neg_priority, position)
) WITHOUT ROWID;

CREATE TABLE runners (
    app_id     TEXT NOT NULL,
    runner_id  TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (app_id, runner_id)
) WITHOUT ROWID;

-- Limits (v2). Budgets are keyed by their text (record.Budget.key); limit_name is the limit's
-- name (NULL for a task's own running scope), which overrides and usage reports are read by.

-- Slots of a budget: one row per holder.
CREATE TABLE budget_holders (
    app_id        TEXT NOT NULL,
    budget        TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    limit_name    TEXT,
    PRIMARY KEY (app_id, budget, invocation_id)
) WITHOUT ROWID;

-- Invocations waiting for a budget, in waking order within each fairness value: higher
-- priority first, then call order (seq is invocations.seq, kept when a waiter parks again).
CREATE TABLE budget_waiters (
    app_id        TEXT    NOT NULL,
    budget        TEXT    NOT NULL,
    fair          TEXT    NOT NULL,                       -- '' without fair_by
    neg_priority  INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    invocation_id TEXT    NOT NULL,
    since         REAL    NOT NULL,
    limit_name    TEXT,
    PRIMARY KEY (app_id, budget, fair, neg_priority, seq)
) WITHOUT ROWID;

-- Round robin across fairness values: a wake takes the next value after the last one served.
CREATE TABLE budget_cursors (
    app_id    TEXT NOT NULL,
    budget    TEXT NOT NULL,
    last_fair TEXT NOT NULL,
    PRIMARY KEY (app_id, budget)
) WITHOUT ROWID;

-- Waiters a budget woke (moved to the ready queue) that no claim has taken yet: they count as
-- taken when it wakes more, so a free slot goes to one waiter, never to two.
CREATE TABLE budget_woken (
    app_id TEXT    NOT NULL,
    budget TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (app_id, budget)
) WITHOUT ROWID;

-- Starts of rate-limited budgets, trimmed to the window when the budget admits.
CREATE TABLE rate_starts (
    app_id        TEXT NOT NULL,
    budget        TEXT NOT NULL,
    started_at    REAL NOT NULL,
    invocation_id TEXT NOT NULL,
    period        REAL NOT NULL,                          -- the window when it started
    limit_name    TEXT,
    PRIMARY KEY (app_id, budget, started_at, invocation_id)
) WITHOUT ROWID;

-- What becomes due at a time: 'b:<budget>' when a rate next admits one of its waiters,
-- 'i:<invocation id>' when a delayed call (SCHEDULED) or a delayed retry (RETRY) is due.
CREATE TABLE timed (
    app_id TEXT NOT NULL,
    member TEXT NOT NULL,
    due    REAL NOT NULL,
    PRIMARY KEY (app_id, member)
) WITHOUT ROWID;
CREATE INDEX timed_by_due ON timed (app_id, due);

-- Live overrides of limits (app.set_limit); NULL keeps the declared value.
CREATE TABLE limit_overrides (
    app_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    concurrency INTEGER,
    rate_count  INTEGER,
    rate_period REAL,
    PRIMARY KEY (app_id, name)
) WITHOUT ROWID;

-- Cancellation (v3): cancels requested for running invocations, until their runner reads them
-- (wait_cancel_requests) or the run ends.
CREATE TABLE cancel_requests (
    app_id        TEXT NOT NULL,
    runner_id     TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    PRIMARY KEY (app_id, runner_id, invocation_id)
) WITHOUT ROWID;

-- Periodic tasks (v3): the last tick registered per task (register_tick).
CREATE TABLE periodic_ticks (
    app_id    TEXT NOT NULL,
    task_id   TEXT NOT NULL,
    last_tick REAL NOT NULL,
    PRIMARY KEY (app_id, task_id)
) WITHOUT ROWID;

-- Runner descriptions (v4): what each live runner announced with its last heartbeat
-- (record.RunnerInfo as JSON), kept until expires_at; a few rows per runner host.
CREATE TABLE runner_info (
    app_id     TEXT NOT NULL,
    runner_id  TEXT NOT NULL,
    info       TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (app_id, runner_id)
) WITHOUT ROWID;
