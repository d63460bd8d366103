"""The Redis connection seam: one raw connection per thread, the scripts, and error translation.

Single commands go over a connection of the calling thread's own, written and read directly:
redis-py's pool and command layer cost about as much per call as the round trip itself. Each
contract operation is one Lua script (see :mod:`taskgate.backends.redis.lua`): a function of one
library on Redis 7 and later (FCALL), else a script called by SHA (EVALSHA), loaded on first
use either way. Every redis-py error leaves here as a taskgate error that says what to do.

The first script or command a process runs against a store checks the store's layout
(``store_format.lua``; purge aside): one round trip per process, so that nothing reads records an
earlier build wrote under other field names.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import redis

from taskgate.backends.redis.lua import library_source, script_sha, script_source
from taskgate.errors import (
    BackendAuthenticationError,
    BackendError,
    BackendStoreFormatError,
    BackendUnavailableError,
)
from taskgate.urls import redact_url

SOCKET_TIMEOUT_SECONDS = 10.0


def _hiredis_packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    """hiredis's command packer (installed with taskgate[redis]): it takes our arguments
    (bytes, str, numbers) as they are, where redis-py's own packing costs ~10 us more per call."""
    try:
        from hiredis import pack_command
    except ImportError:  # redis-py packs then
        return None
    return cast("Callable[[tuple[Any, ...]], bytes]", pack_command)


PACK_COMMAND = _hiredis_packer()

# The layout of records and indexes the scripts read and write ('format' in lib_core.lua).
STORE_FORMAT = "4"
# Scripts that run before the format is known: the check itself, and purge (which empties a
# store of any layout, an earlier build's included).
_ANY_FORMAT = frozenset({"store_format", "purge"})


class RedisConnector:
    """This process's connections to one Redis for one app (key prefix ``prefix``).

    Args:
        url: The backend URL (shown password-masked in every error).
        prefix: The app's key prefix, passed as KEYS[1] to every script.
        on_fork: Called in a forked child when it first uses the connector (the inherited
            connections are dropped then, never disconnected: that would break the parent's).
    """

    def __init__(self, url: str, prefix: str, on_fork: Callable[[], None]) -> None:
        self.url = url
        self.prefix = prefix
        self._on_fork = on_fork
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=5.0,
            health_check_interval=30,
        )
        self._functions, self._library = library_source()
        # Whether the server takes FCALL: None until the first call tells (a server before 7.0,
        # or a user not allowed FCALL, answers with an error: scripts by SHA from then on).
        # Tests set it to False to run the EVALSHA path on any server.
        self.use_functions: bool | None = None
        self._local = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        # The process that opened the connections: a forked child must not use its parent's.
        self._pid = os.getpid()
        # Whether this process found the store in this build's layout (see _check_format).
        self._format_checked = False
        # Counts this process's failed connections. A thread's connection opened before the
        # latest failure is suspect: the server may have restarted, and such a connection
        # would fail its next command too (after the outage ended, as a new one). It
        # reconnects before that command instead; see _connection().
        self._failure_numbers = itertools.count(1)  # next() is atomic: no update is lost
        self._failures = 0

    def run(self, script: str, *args: Any) -> Any:
        """Run one of the scripts: its function (loading the library first if the server does
        not have it), or, on a server without functions, the script by SHA.

        Raises:
            BackendStoreFormatError: the first script this process runs found a store written
                by an earlier taskgate (see _check_format).
        """
        if not self._format_checked and script not in _ANY_FORMAT:
            self._check_format()
        if self.use_functions is False:
            return self._run_by_sha(script, args)
        function = self._functions[script]
        try:
            reply = self._send("FCALL", function, 1, self.prefix, *args)
        except BackendError as exc:
            if self._functions_refused(exc):
                return self._run_by_sha(script, args)
            if not _error_text(exc).startswith("Function not found"):
                raise
            # Not loaded (a new or restarted server, a FUNCTION FLUSH). REPLACE: another
            # process may load the same text meanwhile; either is it.
            try:
                self._send("FUNCTION", "LOAD", "REPLACE", self._library)
            except BackendError as load_exc:
                if not self._functions_refused(load_exc):
                    raise
                return self._run_by_sha(script, args)
            reply = self._send("FCALL", function, 1, self.prefix, *args)
        self.use_functions = True
        return reply

    def _check_format(self) -> None:
        """Claim the store for this build's layout, or refuse it (once per process: racing
        threads each check, harmlessly)."""
        reply = self.run("store_format", STORE_FORMAT)
        found = reply.decode() if isinstance(reply, bytes) else str(reply)
        if found != STORE_FORMAT:
            raise BackendStoreFormatError(
                f"the Redis store at {redact_url(self.url)} (key prefix {self.prefix!r}) holds "
                f"invocations stored by an earlier taskgate (format {found or 'before 3'}), "
                f"whose records this version ({STORE_FORMAT}) cannot read. Let that version's "
                "runners finish them and their results expire, or delete them with "
                "'taskgate purge --app <module:attr>' (this version can), then retry"
            )
        self._format_checked = True

    def _functions_refused(self, exc: BackendError) -> bool:
        """Whether ``exc`` says that functions cannot be used here (a server before 7.0, an ACL
        that denies FCALL or FUNCTION LOAD): then scripts go by SHA from now on, in every
        thread."""
        if not _NO_FUNCTIONS.match(_error_text(exc)):
            return False
        self.use_functions = False
        return True

    def _run_by_sha(self, script: str, args: tuple[Any, ...]) -> Any:
        """Run the script by SHA, loading it first if the server does not have it."""
        try:
            return self._send("EVALSHA", script_sha(script), 1, self.prefix, *args)
        except BackendError as exc:
            if not isinstance(exc.__cause__, redis.exceptions.NoScriptError):
                raise
        self._send("SCRIPT", "LOAD", script_source(script))
        return self._send("EVALSHA", script_sha(script), 1, self.prefix, *args)

    def command(self, *args: Any) -> Any:
        """One command on this thread's own connection; the raw reply (bytes, lists, ints).

        Raises:
            BackendStoreFormatError: as :meth:`run` (the first command of a process checks
                the store's layout too: a read of a record is as wrong as a script's).
        """
        if not self._format_checked:
            self._check_format()
        return self._send(*args)

    def _send(self, *args: Any) -> Any:
        """:meth:`command` without the layout check."""
        conn = self._connection()
        try:
            if PACK_COMMAND is None:
                conn.send_command(*args)
            else:  # hiredis packs our arguments (bytes, str, numbers) as they are
                conn.send_packed_command((PACK_COMMAND(args),))
            return conn.read_response()
        except redis.RedisError as exc:
            raise self._failed(conn, exc) from exc
        except BaseException:
            # An asynchronous exception (a body's timeout or cancel, see runner.interrupts)
            # between the write and the read: the reply left unread would answer the next call.
            conn.disconnect()
            raise

    def commands(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Several commands in one round trip (one write, then every reply) on this thread's
        own connection; their raw replies, in order. Not a transaction: each command is atomic
        on its own. A command's error reply raises (as a taskgate error) once all are read."""
        if not self._format_checked:
            self._check_format()
        conn = self._connection()
        try:
            # One buffer, one write: redis-py writes each item of a list with its own sendall.
            if PACK_COMMAND is None:
                packed = b"".join(conn.pack_commands(commands))
            else:
                packed = b"".join([PACK_COMMAND(command) for command in commands])
            conn.send_packed_command((packed,))
            replies = []
            failure: redis.ResponseError | None = None
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:  # read the others: the connection stays in step
                    failure = failure or exc
                    replies.append(None)
        except redis.RedisError as exc:
            raise self._failed(conn, exc) from exc
        except BaseException:
            conn.disconnect()  # replies left unread (an asynchronous exception): as in command()
            raise
        if failure is not None:
            raise self.translate(failure) from failure
        return replies

    def check_fork(self) -> None:
        """In a forked child, forget the parent's connections (and tell the owner, once).

        The inherited connections are dropped, never disconnected: shutting their sockets down
        would break them in the parent too. (redis-py's own pool, used for pipelines, checks
        the pid itself.)
        """
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._local = threading.local()
        self._connections = weakref.WeakSet()
        self._on_fork()

    def _connection(self) -> Any:
        # A forked child inherits the forking thread's connection, whose socket is the
        # parent's: replies would cross. The pid tells (as in redis-py's pool).
        if self._pid != os.getpid():
            self.check_fork()
        # Any: redis-py leaves the connection's methods unannotated.
        conn: Any = getattr(self._local, "conn", None)
        if conn is None:
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            self._local.conn = conn
            self._connections.add(conn)
            self._local.failures = self._failures
        elif self._local.failures != self._failures:
            # Another thread's connection failed since this one was checked: reconnect before
            # sending, when nothing can have run yet (a command is never sent twice).
            conn.disconnect()
            self._local.failures = self._failures
        return conn

    def close(self) -> None:
        """Close this process's connections."""
        connection: Any  # redis-py leaves the connection's methods unannotated
        for connection in list(self._connections):
            connection.disconnect()
        self.client.close()

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """Turn redis-py errors raised in the block (pipelines) into taskgate errors (after the
        layout check of :meth:`run`, for a process's first use)."""
        if not self._format_checked:
            self._check_format()
        try:
            yield
        except redis.RedisError as exc:
            raise self.translate(exc) from exc

    def _failed(self, conn: Any, exc: redis.RedisError) -> BackendError:
        """The taskgate error for ``exc`` met on ``conn``, which is dropped (to reconnect on
        next use) when the failure was the connection's."""
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            conn.disconnect()
            # The other threads' connections may be stale too.
            self._failures = next(self._failure_numbers)
        return self.translate(exc)

    def translate(self, exc: redis.RedisError) -> BackendError:
        """The taskgate error for a redis-py error: refused credentials (fatal: retrying cannot
        help), unreachable or in a passing state (retry later), or any other failure."""
        where = f"Redis at {redact_url(self.url)}"
        if _refuses_credentials(exc):
            fix = (
                "check the user and password in the backend URL"
                if urlsplit(self.url).password
                else "the backend URL has no password: add it"
            )
            return BackendAuthenticationError(
                f"{where} refused the credentials ({exc}); {fix} "
                "(redis://[user]:password@host:port/db); retrying cannot help"
            )
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return BackendUnavailableError(
                f"{where} is unreachable ({exc}); runners retry with back-off, callers should "
                "retry later"
            )
        if isinstance(exc, _PASSING_ERRORS) or (
            isinstance(exc, redis.ResponseError) and _PASSING_STATE.search(str(exc))
        ):
            return BackendUnavailableError(
                f"{where} cannot serve writes right now ({exc}); runners retry with back-off, "
                "callers should retry later"
            )
        return BackendError(f"{where} failed: {exc}")


# Replies of a server in a state that passes by itself: a replica during a failover, a server
# loading its data set, out of memory until results expire, or unable to persist (MISCONF) or
# to reach its replicas until an operator acts. Retrying helps: not fatal. Inside
# a script the reply is quoted after a '-' ("Error running script ...: -READONLY ...").
_PASSING_STATE = re.compile(
    r"(?:^|-)(?:READONLY|LOADING|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|BUSY|OOM|MISCONF|NOREPLICAS) "
)

# The same replies when they start with their code: redis-py strips it and raises these (a
# function that may write is refused up front by a full server or a replica, where a script
# by SHA met the state inside, its reply quoted as above).
_PASSING_ERRORS = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # MASTERDOWN's too
)

# Functions refused as such: FCALL by a server before 7.0, FCALL or FUNCTION LOAD by an ACL that
# denies it (not a NOPERM for a key inside a function, which names no command).
_NO_FUNCTIONS = re.compile(
    r"unknown command .FCALL.|.*no permissions to run the '(?:fcall|function\|load)' command",
    re.IGNORECASE,
)

_AUTH_ERRORS = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
)


def _refuses_credentials(exc: redis.RedisError) -> bool:
    """Whether the server refused the login: a missing or wrong password, or an unknown user.

    redis-py raises AuthenticationError (a ConnectionError: it must not count as unreachable);
    older versions leave NOAUTH and WRONGPASS replies as plain ResponseErrors.
    """
    if isinstance(exc, _AUTH_ERRORS):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS"))


def _error_text(exc: BackendError) -> str:
    """The server's error reply behind ``exc`` ('' when it is not one)."""
    return str(exc.__cause__) if isinstance(exc.__cause__, redis.ResponseError) else ""
