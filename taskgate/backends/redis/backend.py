"""The Redis backend: the contract of :class:`Backend` for runners on many hosts.

Each contract operation is one Lua script (``scripts/*.lua``, each prefixed with
``lib_core.lua`` and, where needed, ``lib.lua``; the key layout is documented in
``lib_core.lua``), loaded once and called by SHA. All keys of an app share the hash tag
``{app_id}``, so every script touches one cluster slot. Time inside scripts is the Redis
server's clock, so leases do not depend on the hosts' clocks agreeing.

Nothing polls: an idle claimer gets in line and blocks in ``BLPOP`` on its own inbox (register
hands it new invocations there, already claimed), the app's wake-up list and a list of its own
(which :meth:`wake_claimers` pushes to). A result waiter marks the record and blocks in
``BLMOVE`` on the invocation's ``done`` list, which the script that makes it final pushes to.
A caller reading results in turn mostly needs neither: see :mod:`taskgate.readahead`.

Single commands go over a connection of the calling thread's own, written and read directly:
redis-py's pool and command layer cost about as much per call as the round trip itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from typing import Any, cast
from urllib.parse import urlsplit

import redis

from taskgate.backends.base import Backend, BackendOptions, log_stale_report
from taskgate.backends.redis.records import (
    decode_override,
    decode_record,
    decode_usage,
    encode_override,
)
from taskgate.errors import BackendAuthenticationError, BackendError, BackendUnavailableError
from taskgate.record import (
    BackendStats,
    BlockedBy,
    BudgetUsage,
    Claim,
    InvocationRecord,
    LimitOverride,
    Outcome,
    RegisterResult,
    encode_budgets,
)
from taskgate.status import InvocationStatus
from taskgate.urls import redact_url

logger = logging.getLogger(__name__)


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
)
# Blocking commands wait at most this long per call, well inside the socket timeout, so a dead
# connection is noticed and a stop request is seen.
MAX_BLOCK_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 10.0
RECOVER_BATCH = 500
# Records registered per script call: a batch holds the server for well under a millisecond.
REGISTER_BATCH = 200
LIST_PAGE = 200
# Index entries ZSCAN looks at per round trip when finding ids by prefix.
SCAN_COUNT = 1000
# Characters of a Redis glob pattern that must be escaped to match themselves.
_GLOB_SPECIAL = re.compile(r"[\\*?\[\]]")
# How long past the end of its blocking wait a waiting runner stays in line for hand-overs
# (its claim call leaves the line at once when it returns; this bounds a dead runner's stay).
IDLE_MARGIN_SECONDS = 1.0


# Scripts that only store or read records need the core steps alone: less Lua to run per call.
CORE_ONLY = frozenset(
    {"register", "blocked_by", "purge", "final_records", "watch", "expire", "budget_waiting"}
)
# Scripts that never admit, release or wake budget waiters go without lib_budgets.lua.
NO_BUDGETS = frozenset({"renew", "unidle"})


def _script_source(name: str) -> str:
    """The script's source: lib_core.lua, then lib.lua and lib_budgets.lua unless not
    needed, then the script."""
    folder = resources.files("taskgate.backends.redis").joinpath("scripts")
    if name in CORE_ONLY:
        parts = ["lib_core"]
    elif name in NO_BUDGETS:
        parts = ["lib_core", "lib"]
    else:
        parts = ["lib_core", "lib", "lib_budgets"]
    return "\n".join(folder.joinpath(f"{part}.lua").read_text() for part in [*parts, name])


class RedisBackend(Backend):
    """Invocations as hashes, the queue and parked invocations as lists, slots as sets."""

    def __init__(self, url: str, options: BackendOptions) -> None:
        super().__init__(options)
        self.url = url
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=5.0,
            health_check_interval=30,
        )
        self._prefix = f"taskgate:{{{options.app_id}}}:"
        self._keys = [self._prefix]
        self._wake_key = self._prefix + "wake"
        # This object's own wake-up list: wake_claimers() interrupts only this process's claims.
        self._local_wake_key = f"{self._prefix}wake:{uuid.uuid4().hex}"
        self._wake_generation = 0
        self._sources = {name: _script_source(name) for name in SCRIPTS}
        self._shas = {
            name: hashlib.sha1(src.encode()).hexdigest() for name, src in self._sources.items()
        }
        self._local = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        # The process that opened the connections: a forked child must not use its parent's.
        self._pid = os.getpid()

    # --- the atomic contract -------------------------------------------------------------------

    def register(self, record: InvocationRecord) -> RegisterResult:
        stride = _stride((record,))
        reply = self._run("register", stride, *_register_args(record, stride))
        return _register_result(record, reply[0])

    def register_many(self, records: Sequence[InvocationRecord]) -> list[RegisterResult]:
        results: list[RegisterResult] = []
        for start in range(0, len(records), REGISTER_BATCH):
            batch = records[start : start + REGISTER_BATCH]
            stride = _stride(batch)
            args = [value for record in batch for value in _register_args(record, stride)]
            replies = self._run("register", stride, *args)
            results.extend(
                _register_result(record, reply)
                for record, reply in zip(batch, replies, strict=True)
            )
        return results

    def claim(
        self,
        runner_id: str,
        max_count: int,
        lease_seconds: float,
        timeout: float,
        *,
        wait_first: bool = False,
    ) -> list[Claim]:
        # While blocked, the runner is in line for hand-overs: register claims a new invocation
        # for it and pushes it to the runner's inbox, which this BLPOP watches first.
        deadline = time.monotonic() + timeout
        self._check_fork()  # the wake-up key below is per process
        generation = self._wake_generation
        lease = float(lease_seconds)  # the same text in every script: part of the idle entry
        inbox = self._prefix + "inbox:" + runner_id
        look = not wait_first
        while generation == self._wake_generation:
            if look:
                claims, due_ms = self._run(
                    "claim",
                    runner_id,
                    max_count,
                    lease,
                    self.options.result_ttl_seconds,
                    timeout + IDLE_MARGIN_SECONDS,
                )
                if claims:
                    return _claims(claims)
                self._note_due(due_ms)
            look = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # A timed wake-up (a rate admitting its waiters) is due before: look again then.
            due_at: float | None = getattr(self._local, "due_at", None)
            if due_at is not None and due_at - time.monotonic() < remaining:
                remaining = due_at - time.monotonic()
                self._local.due_at = None
            popped = self._command(
                "BLPOP", inbox, self._local_wake_key, self._wake_key, _block(remaining)
            )
            if popped is not None and _text(popped[0]) == inbox:
                return [_handed_claim(popped[1])]
        return self._leave_line(runner_id, lease)

    def _note_due(self, due_ms: int) -> None:
        """Remember (per thread) when the earliest timed wake-up a script replied is due."""
        self._local.due_at = None if due_ms < 0 else time.monotonic() + due_ms / 1000

    def _leave_line(self, runner_id: str, lease: float) -> list[Claim]:
        """Take ``runner_id`` out of the line for hand-overs; returns what it was handed meanwhile
        (claimed for it already: the runner runs those like any claim)."""
        return _claims(self._run("unidle", runner_id, lease))

    def finish(self, invocation_id: str, runner_id: str, attempt: int, outcome: Outcome) -> bool:
        done, _ = self.finish_and_claim(
            invocation_id, runner_id, attempt, outcome, max_count=0, lease_seconds=0.0
        )
        return done

    def finish_and_claim(
        self,
        invocation_id: str,
        runner_id: str,
        attempt: int,
        outcome: Outcome,
        *,
        max_count: int,
        lease_seconds: float,
    ) -> tuple[bool, list[Claim]]:
        done, claims, due_ms = self._run(
            "finish_and_claim",
            invocation_id,
            runner_id,
            attempt,
            outcome.kind.value,
            outcome.payload,
            self.options.result_ttl_seconds,
            max_count,
            float(lease_seconds),
            # Nothing to claim: in line for hand-overs until the runner's claim() takes over.
            MAX_BLOCK_SECONDS + IDLE_MARGIN_SECONDS if max_count > 0 else 0,
        )
        if not done:
            log_stale_report(invocation_id, runner_id, attempt)
        if max_count > 0:
            self._note_due(due_ms)
        return bool(done), _claims(claims)

    def release(self, invocation_id: str, runner_id: str, attempt: int) -> bool:
        done = self._run("release", invocation_id, runner_id, attempt)
        if not done:
            log_stale_report(invocation_id, runner_id, attempt)
        return bool(done)

    def renew(
        self, runner_id: str, claims: Sequence[tuple[str, int]], lease_seconds: float
    ) -> list[str]:
        pairs = [value for claim in claims for value in claim]
        return [_text(item) for item in self._run("renew", runner_id, lease_seconds, *pairs)]

    def recover(self, now: float | None = None) -> list[str]:
        reply = self._run(
            "recover",
            "" if now is None else repr(now),
            self.options.max_recoveries,
            self.options.lost_error,
            self.options.result_ttl_seconds,
            RECOVER_BATCH,
        )
        self.expire(now)
        return [_text(item) for item in reply]

    def expire_finals(self, batch: int, now: float | None = None) -> int:
        return int(self._run("expire", "" if now is None else repr(now), batch))

    def recover_runner(self, runner_id: str) -> list[str]:
        reply = self._run(
            "recover_runner",
            runner_id,
            self.options.max_recoveries,
            self.options.lost_error,
            self.options.result_ttl_seconds,
        )
        return [_text(item) for item in reply]

    # --- reads and admin -----------------------------------------------------------------------

    def get(self, invocation_id: str) -> InvocationRecord | None:
        return self._records([invocation_id], history=True)[0]

    def wait_final(self, invocation_id: str, timeout: float | None) -> InvocationRecord | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        done_key = self._prefix + "done:" + invocation_id
        while True:
            fields = _pairs(self._run("watch", invocation_id))
            if not fields:
                return None
            record = decode_record(invocation_id, fields, history=False)
            remaining = MAX_BLOCK_SECONDS if deadline is None else deadline - time.monotonic()
            if record.status.is_final or remaining <= 0:
                return record
            # Moving the token to the same list leaves it there for every other waiter.
            self._command("BLMOVE", done_key, done_key, "LEFT", "RIGHT", _block(remaining))

    def blocked_by(self, invocation_id: str) -> BlockedBy | None:
        reply = self._run("blocked_by", invocation_id)
        if not reply:
            return None
        ready_at = float(reply[1]) if reply[1] else None
        return BlockedBy(_text(reply[0]), tuple(_text(item) for item in reply[2:]), ready_at)

    def list_invocations(
        self, task_id: str | None, status: InvocationStatus | None, limit: int
    ) -> list[InvocationRecord]:
        index = self._prefix + (f"task:{task_id}" if task_id is not None else "index")
        found: list[InvocationRecord] = []
        start = 0
        while len(found) < limit:
            page = self._command("ZREVRANGE", index, start, start + LIST_PAGE)
            ids = [_text(item) for item in page]
            if not ids:
                break
            start += len(ids)
            for record in self._records(ids, history=True):
                # None: expired between the index read and this one.
                if record is not None and (status is None or record.status is status):
                    found.append(record)
        return found[:limit]

    def find_ids(self, prefix: str, limit: int) -> list[str]:
        pattern = _GLOB_SPECIAL.sub(r"\\\g<0>", prefix) + "*"
        found: set[str] = set()
        cursor = 0
        while True:
            cursor, page = self._command(
                "ZSCAN", self._prefix + "index", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT
            )
            # ZSCAN replies member, score, member, score...; a member may come twice.
            found.update(_text(member) for member in page[::2])
            cursor = int(cursor)
            if cursor == 0:
                return sorted(found)[:limit]

    def stats(self) -> BackendStats:
        counts = _pairs(self._command("HGETALL", self._prefix + "counts"))
        parked_keys = [_text(k) for k in self._command("SMEMBERS", self._prefix + "parked_keys")]
        with self._translated():
            pipe = self._client.pipeline(transaction=False)
            for key in parked_keys:
                pipe.llen(self._prefix + "parked:" + key)
            parked_lengths = pipe.execute()
        seconds, micros = self._command("TIME")
        now = int(seconds) + int(micros) / 1_000_000
        with self._translated():
            runners = cast(
                "list[tuple[bytes, float]]",
                self._client.zrangebyscore(
                    self._prefix + "runners", f"({now}", "+inf", withscores=True
                ),
            )
        by_task_and_status: dict[tuple[str, InvocationStatus], int] = {}
        for field, value in counts.items():
            task, _, status = _text(field).partition("\x1f")
            if int(value) > 0:
                by_task_and_status[(task, InvocationStatus(status))] = int(value)
        parked = {key: n for key, n in zip(parked_keys, parked_lengths, strict=True) if n}
        waiting = self._run("budget_waiting")
        for key, n in zip(waiting[::2], waiting[1::2], strict=True):
            if n:
                parked[_text(key)] = parked.get(_text(key), 0) + int(n)
        return BackendStats(by_task_and_status, parked, {_text(r): t for r, t in runners})

    def set_limit_override(self, name: str, override: LimitOverride) -> None:
        self._run("set_limit_override", name, encode_override(override))

    def reset_limit_override(self, name: str) -> None:
        self._run("reset_limit_override", name)

    def limit_overrides(self) -> dict[str, LimitOverride]:
        stored = _pairs(self._command("HGETALL", self._prefix + "overrides"))
        return {_text(name): decode_override(_text(text)) for name, text in stored.items()}

    def budget_usage(self, limit: str | None = None) -> list[BudgetUsage]:
        reply = self._run("budget_usage", *(() if limit is None else (limit,)))
        return sorted((decode_usage(entry) for entry in reply), key=lambda usage: usage.key)

    def purge(self) -> None:
        self._run("purge")

    def wake_claimers(self) -> None:
        self._check_fork()
        self._wake_generation += 1
        with contextlib.suppress(BackendError), self._translated():
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(self._local_wake_key, "1")
            pipe.expire(self._local_wake_key, 10)
            pipe.execute()

    def close(self) -> None:
        connection: Any  # redis-py leaves the connection's methods unannotated
        for connection in list(self._connections):
            connection.disconnect()
        self._client.close()

    # --- helpers -------------------------------------------------------------------------------

    def _run(self, script: str, *args: Any) -> Any:
        """Run one of the scripts by SHA, loading it first if the server does not have it."""
        try:
            return self._command("EVALSHA", self._shas[script], 1, self._prefix, *args)
        except BackendError as exc:
            if not isinstance(exc.__cause__, redis.exceptions.NoScriptError):
                raise
        self._command("SCRIPT", "LOAD", self._sources[script])
        return self._command("EVALSHA", self._shas[script], 1, self._prefix, *args)

    def _command(self, *args: Any) -> Any:
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
            raise self._translate(exc) from exc

    def _connection(self) -> Any:
        # A forked child inherits the forking thread's connection, whose socket is the
        # parent's: replies would cross. The pid tells (as in redis-py's pool).
        if self._pid != os.getpid():
            self._check_fork()
        # Any: redis-py leaves the connection's methods unannotated.
        conn: Any = getattr(self._local, "conn", None)
        if conn is None:
            pool = self._client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            self._local.conn = conn
            self._connections.add(conn)
        return conn

    def _check_fork(self) -> None:
        """In a forked child, forget the parent's connections and wake-up list.

        The inherited connections are dropped, never disconnected: shutting their sockets down
        would break them in the parent too. (redis-py's own pool, used for pipelines, checks
        the pid itself.)
        """
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._local = threading.local()
        self._connections = weakref.WeakSet()
        self._local_wake_key = f"{self._prefix}wake:{uuid.uuid4().hex}"

    def get_many(self, invocation_ids: Sequence[str]) -> list[InvocationRecord | None]:
        records: list[InvocationRecord | None] = []
        for start in range(0, len(invocation_ids), LIST_PAGE):
            records.extend(self._records(invocation_ids[start : start + LIST_PAGE], history=False))
        return records

    def final_records(self, invocation_ids: Sequence[str]) -> dict[str, InvocationRecord]:
        found: dict[str, InvocationRecord] = {}
        for start in range(0, len(invocation_ids), LIST_PAGE):
            reply = self._run("final_records", *invocation_ids[start : start + LIST_PAGE])
            for raw_id, fields in zip(reply[::2], reply[1::2], strict=True):
                invocation_id = _text(raw_id)
                found[invocation_id] = decode_record(invocation_id, _pairs(fields), history=False)
        return found

    def _records(self, ids: Sequence[str], *, history: bool) -> list[InvocationRecord | None]:
        """The records of ``ids`` in one round trip (None for missing ones), with history?"""
        with self._translated():
            pipe = self._client.pipeline(transaction=False)
            for invocation_id in ids:
                pipe.hgetall(self._prefix + "inv:" + invocation_id)
            replies = pipe.execute()
        return [
            decode_record(invocation_id, fields, history=history) if fields else None
            for invocation_id, fields in zip(ids, replies, strict=True)
        ]

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn redis-py errors into taskgate errors that say what to do."""
        try:
            yield
        except redis.RedisError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: redis.RedisError) -> BackendError:
        """The taskgate error for a redis-py error: refused credentials (fatal: retrying cannot
        help), unreachable (retry later), or any other failure."""
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
# loading its data set or out of memory until results expire. Retrying helps: not fatal. Inside
# a script the reply is quoted after a '-' ("Error running script ...: -READONLY ...").
_PASSING_STATE = re.compile(
    r"(?:^|-)(?:READONLY|LOADING|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|BUSY|OOM) "
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


def _text(value: Any) -> str:
    """A reply item as text (replies are bytes: the client does not decode, for binary data)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _claims(reply: list[list[Any]]) -> list[Claim]:
    return [
        Claim(_text(item[0]), _text(item[1]), item[2], int(item[3]), int(item[4]), int(item[5]))
        for item in reply
    ]


def _handed_claim(item: bytes) -> Claim:
    """A claim register handed over: ``<id>\\31<task_id>\\31<max_retries>\\31<arguments>``."""
    invocation_id, task_id, max_retries, arguments = item.split(b"\x1f", 3)
    return Claim(invocation_id.decode(), task_id.decode(), arguments, 1, 0, int(max_retries))


def _pairs(reply: list[bytes] | dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A raw HGETALL reply as a dict (a flat list in RESP2, already a map in RESP3)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _stride(records: Sequence[InvocationRecord]) -> int:
    """Values per record in a register batch: 11 if one of them uses budgets, else 9."""
    return 11 if any(record.plan.budgets for record in records) else 9


def _register_args(record: InvocationRecord, stride: int) -> tuple[Any, ...]:
    """The ``stride`` script arguments of one record (see scripts/register.lua)."""
    plan = record.plan
    if stride > 9:
        return (*_register_args(record, 9), encode_budgets(plan.budgets), record.priority)
    return (
        record.invocation_id,
        record.task_id,
        record.arguments,
        plan.registration_key or "",
        plan.running_key or "",
        plan.running_limit,
        int(plan.drop_when_blocked),
        record.max_retries,
        record.created_at or time.time(),
    )


def _register_result(record: InvocationRecord, reply: list[Any]) -> RegisterResult:
    """One record's reply of register.lua: {1, id} stored, or {0, holder, holder_arguments}."""
    if reply[0] == 1:
        return RegisterResult(record.invocation_id, True)
    return RegisterResult(_text(reply[1]), False, reply[2])


def _block(remaining: float) -> float:
    """A blocking command's timeout for ``remaining`` seconds of wait.

    Redis truncates these timeouts to whole milliseconds, and 0 means "block forever". It
    parses "0.001" as a long double a hair under 0.001, which truncates to 0 too: never send
    less than two milliseconds.
    """
    return max(0.002, min(remaining, MAX_BLOCK_SECONDS))
