"""SQLite connections: one per thread and process, WAL mode, and write transactions that retry.

Every write runs in one ``BEGIN IMMEDIATE`` transaction, which takes the database's write lock
up front, so two writers never interleave and no transaction fails late on a lock upgrade.
"database is locked" is retried here with back-off until ``lock_timeout`` passes; callers only
ever see :class:`BackendUnavailableError` or :class:`BackendError`.

Writers of one process also queue on a Python lock per database file before asking SQLite for
its write lock: SQLite's busy handler makes a waiting writer sleep in steps of milliseconds,
while a thread waiting on a Python lock wakes the instant the lock is free. Holding that lock,
the threads of a process write through one connection: SQLite drops a connection's page cache
whenever another connection wrote since its last transaction, so one connection per writing
thread read every page a write touches afresh (from the WAL or the OS) at each write, while a
shared one finds them cached whenever this process wrote last. Reads keep a connection per
thread, which run concurrently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from taskgate.backends.sqlite.schema import ensure_schema
from taskgate.backoff import Backoff
from taskgate.errors import (
    BackendError,
    BackendStoreReplacedError,
    BackendUnavailableError,
    ConfigError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_process_write_locks: dict[tuple[int, Path], threading.Lock] = {}
_process_write_locks_guard = threading.Lock()


def _process_write_lock(path: Path) -> threading.Lock:
    """The lock this process's writers of ``path`` share (a new one after a fork)."""
    key = (os.getpid(), path.resolve())
    with _process_write_locks_guard:
        return _process_write_locks.setdefault(key, threading.Lock())


# Pages of a new file (SQLite's default is 4,096). Every commit appends each page it changed to
# the WAL whole, and a checkpoint copies it back: a registration changes a page in each of 4
# b-trees, a claim-and-finish 6 or so, and each of those changes writes a few hundred bytes at
# most. Half-size pages halve the bytes written, checksummed and synced per task: a task's
# statements (register, claim and finish, read) took 182-196 microseconds in one process, from
# 222-236 with 4,096 (1,024 gained no more). A record of up to about 2,000 bytes still fits in
# its page; larger arguments or results go on overflow pages, as they did past about 4,000.
PAGE_SIZE = 2048

_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")

# Python 3.11's sqlite3 binds an int, float, str or bytearray parameter directly, and any other
# value (None and bytes, several of each in every statement here) only after a look in its
# adapter registry. A miss there asks the PrepareProtocol type for __adapt__, which formats an
# AttributeError and clears it: some 16,000 CPU instructions of a registration's 229,000 went
# to that (callgrind). With these two adapters the look is a hit, and the value bound is the
# same one: bytes(b) is b for a bytes object, and {}.get(None) is None (both C functions,
# cheaper to call than a Python one). The registry is keyed by exact type and global to the
# process, so only these two types are affected, in the same way for every sqlite3 user.
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))


class SqliteConnector:
    """Hands out this thread's connection to one database file and runs transactions on it.

    Connections are opened once per thread (and again after a fork), never per operation.
    """

    def __init__(self, path: Path, *, busy_timeout: float = 1.0, lock_timeout: float = 30.0):
        self.path = path
        self.busy_timeout = busy_timeout
        self.lock_timeout = lock_timeout
        self._local = threading.local()
        # Weak: a thread's connection closes when the thread (and its local) goes away.
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._all_lock = threading.Lock()
        self._write_lock: threading.Lock | None = None
        self._write_lock_pid = 0
        # This process's writes (under the write lock): see the module docstring.
        self._writer: _Connection | None = None
        self._writer_pid = 0
        # (st_dev, st_ino) of the file the first connection opened: see check_store().
        self._identity: tuple[int, int] | None = None

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema created) on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._retry(self._open)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _write_connection(self) -> sqlite3.Connection:
        """The connection this process's writes share; the caller holds the write lock."""
        conn = self._writer
        if conn is None or self._writer_pid != os.getpid():
            conn = self._writer = self._open()
            self._writer_pid = os.getpid()
        return conn

    def write(
        self, operation: Callable[[sqlite3.Connection], T], *, lock_timeout: float | None = None
    ) -> T:
        """Run ``operation`` in one ``BEGIN IMMEDIATE`` transaction, retrying while locked.

        ``lock_timeout``: wait for the database's write lock at most this long (SQLite's busy
        wait included), instead of the connector's, then raise
        :class:`BackendUnavailableError`. For writes better skipped than late (a runner's
        announcement must not hold up its next lease renewal).
        """
        lock = self._write_lock
        if lock is None or self._write_lock_pid != os.getpid():
            lock = self._write_lock = _process_write_lock(self.path)
            self._write_lock_pid = os.getpid()

        if lock_timeout is not None:
            return self._bounded(lock, operation, lock_timeout)

        def attempt() -> T:
            with lock:
                return _transaction(self._write_connection(), operation)

        return self._retry(attempt)

    def _bounded(
        self,
        lock: threading.Lock,
        operation: Callable[[sqlite3.Connection], T],
        lock_timeout: float,
    ) -> T:
        """:meth:`write` waiting ``lock_timeout`` at most in all: for this process's other
        writers (the Python lock), in SQLite's busy handler and between retries."""
        deadline = time.monotonic() + lock_timeout
        bounded = int(min(self.busy_timeout, lock_timeout) * 1000)

        def attempt() -> T:
            if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise sqlite3.OperationalError("database is locked (by this process's writers)")
            try:
                conn = self._write_connection()
                # Set and reset under the lock: the connection is every writer's.
                conn.execute(f"PRAGMA busy_timeout = {bounded}")
                try:
                    return _transaction(conn, operation)
                finally:
                    with contextlib.suppress(sqlite3.Error):  # a broken connection: raised
                        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            finally:
                lock.release()

        return self._retry(attempt, lock_timeout)

    def read(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` in one read transaction (a consistent snapshot, no write lock)."""
        conn = self.connection()

        def attempt() -> T:
            conn.execute("BEGIN")
            try:
                return operation(conn)
            finally:
                conn.execute("COMMIT")

        return self._retry(attempt)

    def read_one(self, sql: str, params: tuple[object, ...]) -> sqlite3.Row | None:
        """The first row of one statement (its own snapshot: no BEGIN and COMMIT around it)."""
        conn = self.connection()
        # fetchall: the statement runs to its end, so no read transaction stays open.
        rows = self._retry(lambda: conn.execute(sql, params).fetchall())
        return rows[0] if rows else None

    def check_store(self) -> None:
        """Raise :class:`BackendStoreReplacedError` if the file at ``path`` is no longer the one
        this connector opened (deleted, or another file moved onto the path).

        Open connections keep using the old file, which no process opening the path sees: the
        store would be split silently. One ``stat``; runners call it from their heartbeat.
        """
        if self._identity is not None and _identity(self.path) != self._identity:
            raise self._replaced()

    def _replaced(self) -> BackendStoreReplacedError:
        return BackendStoreReplacedError(
            f"the SQLite file {self.path} was deleted or replaced while this process used it: "
            "this process still uses the old file, which no other process sees. Stop the "
            "runners and callers of this store and start them again"
        )

    def close(self) -> None:
        """Close every connection this connector opened in this process."""
        with self._all_lock:
            connections, self._all = list(self._all), weakref.WeakSet()
            self._identity = None  # reopening starts over with the file then at the path
            self._writer = None
        for conn in connections:
            # Closing a connection another thread is using may fail; it is harmless here.
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def _retry(self, attempt: Callable[[], T], lock_timeout: float | None = None) -> T:
        waited = self.lock_timeout if lock_timeout is None else lock_timeout
        deadline = time.monotonic() + waited
        backoff = Backoff(0.001, 0.1)
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._translate(exc) from exc
                if time.monotonic() >= deadline:
                    raise BackendUnavailableError(
                        f"SQLite database {self.path} stayed locked for {waited} s; "
                        "is a process holding a long transaction on it?"
                    ) from exc
                time.sleep(backoff.next())
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> BackendError:
        if isinstance(exc, sqlite3.OperationalError):
            return BackendUnavailableError(
                f"SQLite database {self.path} cannot be used: {exc}; check that the path exists "
                "and is writable"
            )
        return BackendError(f"SQLite database {self.path} failed: {exc}")

    def _open(self) -> _Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            failed = _failed_path(exc, self.path.parent)
            reason = (
                f"{failed} exists and is not a directory"
                if isinstance(exc, FileExistsError)
                else f"cannot create the directory {failed} ({exc.strerror})"
            )
            raise ConfigError(
                f"SQLite database {self.path.absolute()}: {reason}; {_CHECK_PATH}"
            ) from exc
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                factory=_Connection,
            )
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorname == "SQLITE_CANTOPEN":
                _raise_if_unusable(self.path, exc)
            raise
        conn.row_factory = sqlite3.Row
        try:
            # Takes effect only in a new, empty file (before WAL mode, which fixes it).
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            ensure_schema(conn, self.path)
        except BaseException:
            conn.close()
            raise
        identity = _identity(self.path)
        with self._all_lock:
            if self._identity is None:
                self._identity = identity
            stale = identity != self._identity
            if not stale:
                self._all.add(conn)
        if stale:  # a thread opening the path now would split the store within this process
            conn.close()
            raise self._replaced()
        return conn


_CHECK_PATH = "check the path in the backend URL and that this user may create files there"


def _failed_path(exc: OSError, default: Path) -> str:
    return str(Path(exc.filename).absolute()) if exc.filename else str(default.absolute())


def _raise_if_unusable(path: Path, exc: sqlite3.Error) -> None:
    """Raise :class:`ConfigError` if ``path`` cannot be a database file for this user.

    SQLite says only "unable to open database file"; the file system says why. Returns when no
    lasting reason is found (too many open files, say): the caller's error is then retryable.
    """
    where = path.absolute()
    if path.is_dir():
        raise ConfigError(f"SQLite database {where} is a directory; {_CHECK_PATH}") from exc
    if path.exists():
        try:
            os.close(os.open(path, os.O_RDWR))
        except OSError as error:
            raise ConfigError(
                f"SQLite database {where} cannot be opened for writing ({error.strerror}); "
                f"{_CHECK_PATH}"
            ) from exc
        return
    try:
        # A probe file of its own name: creating the database file itself here could race with
        # another process that is creating it.
        handle, probe = tempfile.mkstemp(prefix=".taskgate-probe-", dir=path.parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            f"SQLite database {where} cannot be created: this user cannot create files in "
            f"{where.parent} ({error.strerror}); {_CHECK_PATH}"
        ) from exc


class _Connection(sqlite3.Connection):
    """A connection that can be referenced weakly (the base class cannot)."""


def _identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, or None when there is none."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino


def _transaction(conn: sqlite3.Connection, operation: Callable[[sqlite3.Connection], T]) -> T:
    """``operation`` in one ``BEGIN IMMEDIATE`` transaction (the caller holds the Python lock)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = operation(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return any(text in message for text in _BUSY_MESSAGES)
