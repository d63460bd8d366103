"""The Redis connection seam: one raw connection per thread, the scripts, and error translation.

Single commands go over a connection of the calling thread's own, written and read directly:
redis-py's pool and command layer cost about as much per call as the round trip itself. Each
contract operation is one Lua script (``scripts/*.lua``, prefixed with ``lib_core.lua`` and,
where needed, ``lib.lua`` and ``lib_budgets.lua``), loaded once and called by SHA. Every redis-py
error leaves here as a taskgate error that says what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, cast
from urllib.parse import urlsplit

import redis

from taskgate.errors import BackendAuthenticationError, BackendError, BackendUnavailableError
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

SCRIPTS = (
    "register",
    "claim",
    "finish_and_claim",
    "release",
    "renew",
    "recover",
    "recover_runner",
    "expire",
    "blocked_by",
    "purge",
    "final_records",
    "unidle",
    "watch",
    "set_limit_override",
    "reset_limit_override",
    "budget_usage",
    "budget_waiting",
    "cancel",
    "register_tick",
    "announce",
    "runner_infos",
    "page_chunk",
)

# Scripts that only store or read records need the core steps alone: less Lua to run per call.
CORE_ONLY = frozenset(
    {
        "register",
        "register_tick",
        "blocked_by",
        "purge",
        "final_records",
        "watch",
        "expire",
        "budget_waiting",
        "announce",
        "runner_infos",
        "page_chunk",
    }
)
# Scripts that run another's text after their own (register_tick checks, then registers).
FOLLOWED_BY = {"register_tick": "register"}
# Scripts that never admit, release or wake budget waiters go without lib_budgets.lua.
NO_BUDGETS = frozenset({"renew", "unidle"})


def script_source(name: str) -> str:
    """The script's source: lib_core.lua, then lib.lua and lib_budgets.lua unless not
    needed, then the script."""
    folder = resources.files("taskgate.backends.redis").joinpath("scripts")
    if name in CORE_ONLY:
        parts = ["lib_core"]
    elif name in NO_BUDGETS:
        parts = ["lib_core", "lib"]
    else:
        parts = ["lib_core", "lib", "lib_budgets"]
    parts.append(name)
    if name in FOLLOWED_BY:
        parts.append(FOLLOWED_BY[name])
    return "\n".join(folder.joinpath(f"{part}.lua").read_text() for part in parts)


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
        self._sources = {name: script_source(name) for name in SCRIPTS}
        self._shas = {
            name: hashlib.sha1(src.encode()).hexdigest() for name, src in self._sources.items()
        }
        self._local = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        # The process that opened the connections: a forked child must not use its parent's.
        self._pid = os.getpid()

    def run(self, script: str, *args: Any) -> Any:
        """Run one of the scripts by SHA, loading it first if the server does not have it."""
        try:
            return self.command("EVALSHA", self._shas[script], 1, self.prefix, *args)
        except BackendError as exc:
            if not isinstance(exc.__cause__, redis.exceptions.NoScriptError):
                raise
        self.command("SCRIPT", "LOAD", self._sources[script])
        return self.command("EVALSHA", self._shas[script], 1, self.prefix, *args)

    def command(self, *args: Any) -> Any:
        """One command on this thread's own connection; the raw reply (bytes, lists, ints)."""
        conn = self._connection()
        try:
            if PACK_COMMAND is None:
                conn.send_command(*args)
            else:  # hiredis packs our arguments (bytes, str, numbers) as they are
                conn.send_packed_command((PACK_COMMAND(args),))
            return conn.read_response()
        except redis.RedisError as exc:
            if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                conn.disconnect()  # reconnects on next use
            raise self.translate(exc) from exc

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
        return conn

    def close(self) -> None:
        """Close this process's connections."""
        connection: Any  # redis-py leaves the connection's methods unannotated
        for connection in list(self._connections):
            connection.disconnect()
        self.client.close()

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """Turn redis-py errors raised in the block (pipelines) into taskgate errors."""
        try:
            yield
        except redis.RedisError as exc:
            raise self.translate(exc) from exc

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
        if isinstance(exc, redis.ResponseError) and _PASSING_STATE.search(str(exc)):
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
