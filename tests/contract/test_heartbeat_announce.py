"""The heartbeat's announcement of the runner's description never delays a lease renewal
(issue 14 review, finding L5), on every backend.

The announcement follows a renewal on the heartbeat thread. It is skipped after a renewal that
took longer than a sixth of the lease (the store is contended: another write then would only
add to it), and on SQLite it waits for the store's write lock at most a sixth of the lease: so
it ends before the next renewal is due, a third of a lease after the last one started.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from taskgate import App
from taskgate.backends.base import Backend
from taskgate.backends.sqlite.connection import _process_write_lock
from taskgate.errors import BackendUnavailableError
from taskgate.record import RunnerInfo
from taskgate.runner import heartbeat as heartbeat_module
from taskgate.runner.heartbeat import Heartbeat

LEASE = 30.0
WAIT = 15.0


def _info(runner_id: str) -> RunnerInfo:
    return RunnerInfo(
        runner_id=runner_id,
        host="host-1",
        pid=4242,
        kind="thread",
        threads=1,
        queues=None,
        started_at=1.0,
        heartbeat_at=2.0,
    )


@pytest.mark.parametrize("renewal_takes", [0.0, LEASE / 6, LEASE / 6 + 0.5])
def test_an_announcement_follows_only_a_renewal_that_was_quick(
    renewal_takes: float, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]  # the heartbeat's monotonic clock, moved by the renewal below
    monkeypatch.setattr(heartbeat_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    real_renew = backend.renew

    def renew(runner_id: str, claims: Sequence[tuple[str, int]], lease: float) -> list[str]:
        clock[0] += renewal_takes
        return real_renew(runner_id, claims, lease)

    monkeypatch.setattr(backend, "renew", renew)
    heartbeat = Heartbeat(
        backend,
        "runner-x",
        LEASE,
        lambda: [],
        lambda lost: lost,
        describe=lambda: _info("runner-x"),
    )
    heartbeat.start()  # the first renewal and announcement happen here and now
    heartbeat.stop()
    announced = [info.runner_id for info in backend.runner_infos()]
    assert announced == ([] if renewal_takes > LEASE / 6 else ["runner-x"])


@pytest.mark.parametrize("holder", ["another process", "another thread"])
def test_a_sqlite_announcement_waits_for_the_lock_a_sixth_of_its_ttl_at_most(
    holder: str, tmp_path: Path
) -> None:
    path = tmp_path / "taskgate.db"
    app = App("announce-lock", backend=f"sqlite:///{path}")  # lock_timeout: 30 s by default
    backend = app.backend
    backend.announce_runner(_info("runner-a"), LEASE)  # the store and its schema exist
    with contextlib.ExitStack() as held:
        if holder == "another process":  # SQLite's own write lock, as another process takes it
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            held.callback(other.close)
            held.callback(other.execute, "ROLLBACK")
        else:  # a writer of this process, queued on the Python lock before SQLite's
            held.enter_context(_process_write_lock(path))
        outcome: list[Any] = []
        ended = threading.Event()

        def announce() -> None:
            try:
                backend.announce_runner(_info("runner-b"), 0.6)  # waits 0.1 s at most
                outcome.append("announced")
            except BackendUnavailableError as exc:
                outcome.append(exc)
            ended.set()

        thread = threading.Thread(target=announce)
        thread.start()
        held.callback(thread.join, WAIT)  # first on the way out (LIFO), the lock still held
        # Unbounded, it would wait for the lock until the holder gives it up (after WAIT here).
        ended.wait(WAIT)
        assert outcome and isinstance(outcome[0], BackendUnavailableError), outcome
    assert [info.runner_id for info in backend.runner_infos()] == ["runner-a"]
    backend.close()
