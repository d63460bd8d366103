"""Runner descriptions on SQLite (``announce_runner``, ``runner_infos``, ``forget_runner``): the
``runner_info`` table, a few rows per app, pruned by every announcement."""

from __future__ import annotations

import sqlite3

from taskgate.backends.sqlite import queries as q
from taskgate.record import RunnerInfo

_UPSERT = """
INSERT INTO runner_info (app_id, runner_id, info, expires_at) VALUES (?, ?, ?, ?)
ON CONFLICT (app_id, runner_id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at
"""
_DELETE_DEAD = "DELETE FROM runner_info WHERE app_id = ? AND expires_at <= ?"
_LIVE = "SELECT info FROM runner_info WHERE app_id = ? AND expires_at > ? ORDER BY runner_id"


def announce(
    conn: sqlite3.Connection, app_id: str, info: RunnerInfo, now: float, ttl: float
) -> None:
    """Store ``info`` until ``now + ttl``, replacing the runner's last one (in the caller's
    write transaction); descriptions past their time go."""
    conn.execute(_DELETE_DEAD, (app_id, now))
    conn.execute(_UPSERT, (app_id, info.runner_id, info.to_json(), now + ttl))


def live(conn: sqlite3.Connection, app_id: str, now: float) -> list[RunnerInfo]:
    """The unexpired descriptions, by runner id."""
    return [RunnerInfo.from_json(row[0]) for row in conn.execute(_LIVE, (app_id, now))]


def forget(conn: sqlite3.Connection, app_id: str, runner_id: str) -> None:
    """Drop the runner from the live runners and its description (a graceful stop)."""
    conn.execute(q.DELETE_RUNNER, (app_id, runner_id))
    conn.execute(q.DELETE_RUNNER_INFO, (app_id, runner_id))
