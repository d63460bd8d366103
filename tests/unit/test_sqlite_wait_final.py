"""SQLite's result waits: a finish that is not final (a retry) does not make the waiter poll
without pause for the rest of its wait."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.record import ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind

OPTIONS = BackendOptions("app", 60.0, 3, b"lost")


def test_a_retry_does_not_make_a_result_waiter_spin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = SqliteBackend(tmp_path / "w.db", OPTIONS)
    try:
        backend.register(InvocationRecord("inv", "tests.task", b"", ConcurrencyPlan(), 3))
        (claim,) = backend.claim("runner", 1, 30.0, 0)
        db, reads = backend._db, [0]
        connection = db.connection

        def counted() -> object:
            reads[0] += 1
            return connection()

        monkeypatch.setattr(db, "connection", counted)
        waiting = threading.Thread(target=backend.wait_final, args=("inv", 0.5))
        waiting.start()
        while "inv" not in backend._final_events:  # the waiter's wake-up event is in place
            threading.Event().wait(0.001)
        retry = Outcome(OutcomeKind.RETRY, b"error", retry_delay=60.0)
        assert backend.finish("inv", "runner", claim.attempt, retry)  # wakes the waiter
        waiting.join()
        # Polls back off from 1 ms to 20 ms over the half second: a few dozen reads, not one
        # after another for the rest of the wait.
        assert reads[0] < 200
    finally:
        backend.close()
