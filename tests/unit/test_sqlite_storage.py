"""How the SQLite backend lays out a file and binds values (connection.py): 2 KB pages in a new
file, an existing file's own page size kept, and parameters bound unchanged by the adapters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.backends.sqlite.connection import PAGE_SIZE, SqliteConnector
from taskgate.record import ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S

OPTIONS = BackendOptions("app", 60.0, 3, b"lost")


def page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        size: int = conn.execute("PRAGMA page_size").fetchone()[0]
        return size
    finally:
        conn.close()


def run_one_task(path: Path) -> None:
    backend = SqliteBackend(path, OPTIONS)
    try:
        backend.register(InvocationRecord("one", "tests.task", b"args", ConcurrencyPlan()))
        [claim] = backend.claim("runner", 1, 30.0, 0)
        assert backend.finish("one", "runner", claim.attempt, Outcome(OutcomeKind.SUCCESS, b"r"))
        record = backend.get("one")
        assert record is not None
        assert (record.status, record.arguments, record.result) == (S.SUCCESS, b"args", b"r")
    finally:
        backend.close()


def test_a_new_file_gets_2_kb_pages(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    connector = SqliteConnector(path)
    connector.connection()
    connector.close()
    assert page_size(path) == PAGE_SIZE == 2048
    run_one_task(path)
    assert page_size(path) == 2048


def test_an_existing_file_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("PRAGMA journal_mode = WAL")  # fixes the page size, as any written file has
    conn.close()
    run_one_task(path)
    assert page_size(path) == 4096


def test_none_and_bytes_parameters_bind_as_null_and_blob(tmp_path: Path) -> None:
    # connection.py registers adapters for both (a faster bind); the values stored are the same.
    conn = sqlite3.connect(tmp_path / "plain.db")
    try:
        row = conn.execute(
            "SELECT typeof(?1), ?1 IS NULL, typeof(?2), ?2, typeof(?3), ?3",
            (None, b"\x00bytes", bytearray(b"array")),
        ).fetchone()
    finally:
        conn.close()
    assert row == ("null", 1, "blob", b"\x00bytes", "blob", b"array")
