"""Redis only: what the layout keeps per invocation (one hash; a done list only when waited on)."""

from __future__ import annotations

import re
import threading
import time

import pytest
import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend
from taskgate.backends.redis.connection import script_source
from taskgate.record import ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer

LEASE = 30.0
WAIT = 15.0
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")


def setup(redis_server: RedisServer) -> tuple[RedisBackend, redis.Redis, InvocationRecord]:
    backend = App(f"layout-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(backend, RedisBackend)
    record = InvocationRecord(
        invocation_id=f"inv-{time.time_ns()}",
        task_id="tests.task",
        arguments=b"args",
        plan=ConcurrencyPlan(None, None, 1, False),
        max_retries=0,
    )
    backend.register(record)
    return backend, redis.Redis.from_url(redis_server.url), record


def test_an_invocation_is_one_hash_history_included(redis_server: RedisServer) -> None:
    backend, client, record = setup(redis_server)
    [claim] = backend.claim("r", 1, LEASE, 0)
    backend.finish(claim.invocation_id, "r", 1, DONE)
    keys = {k.decode().removeprefix(backend._prefix) for k in client.keys(backend._prefix + "*")}
    assert not any(k.startswith(("hist:", "done:")) for k in keys)
    # Listed by its task's zset only: a listing of every task merges those (pages.py).
    assert "index" not in keys and "task:tests.task" in keys
    stored = backend.get(record.invocation_id)
    assert stored is not None
    assert [(t.status, t.runner_id) for t in stored.history] == [
        (S.REGISTERED, None),
        (S.RUNNING, "r"),
        (S.SUCCESS, "r"),
    ]


def test_a_finished_record_keeps_the_compact_encoding(redis_server: RedisServer) -> None:
    # A runner id of 45 characters (hostname-pid-hex), the longest that keeps every value of
    # the record within hash-max-listpack-value (64 bytes): the hash stays a listpack.
    runner = "worker-deployment-7d9f8b6c5-x2k4z-123-0123abcd"[-45:]
    backend, client, record = setup(redis_server)
    [claim] = backend.claim(runner, 1, LEASE, 0)
    backend.finish(claim.invocation_id, runner, 1, DONE)
    key = backend._prefix + "inv:" + record.invocation_id
    assert client.object("encoding", key) in (b"listpack", b"ziplist")  # Redis 7, 6.2
    fields = client.hgetall(key)
    assert b"history" not in fields and max(len(v) for v in fields.values()) <= 64
    # The end of the run names its runner by reference (stored once).
    assert fields[b"h2"].endswith(b"\x1f") and runner.encode() in fields[b"h1"]
    stored = backend.get(record.invocation_id)
    assert stored is not None
    assert [(t.status, t.runner_id) for t in stored.history] == [
        (S.REGISTERED, None),
        (S.RUNNING, runner),
        (S.SUCCESS, runner),
    ]
    assert stored.history[0].timestamp == stored.created_at
    started, ended = (float(fields[name][1:18]) for name in (b"h1", b"h2"))
    assert [t.timestamp for t in stored.history[1:]] == [started, ended]


def test_a_record_of_an_earlier_build_still_decodes_and_moves(redis_server: RedisServer) -> None:
    # Earlier builds kept the history as JSON lines in field 'history'.
    backend, client, record = setup(redis_server)
    key = backend._prefix + "inv:" + record.invocation_id
    created = client.hget(key, "created_at")
    assert created is not None
    client.hset(key, "history", b'["registered",' + created + b",false]")
    [claim] = backend.claim("r", 1, LEASE, 0)
    backend.finish(claim.invocation_id, "r", 1, DONE)
    stored = backend.get(record.invocation_id)
    assert stored is not None and stored.status is S.SUCCESS
    assert [(t.status, t.runner_id) for t in stored.history] == [
        (S.REGISTERED, None),
        (S.RUNNING, "r"),
        (S.SUCCESS, "r"),
    ]
    assert stored.history[0].timestamp == float(created)
    client.hset(key, "history", b'["registered",1.5,false]\n["running",2.25,"old"]')
    client.hdel(key, "hn", "h1", "h2")
    stored = backend.get(record.invocation_id)
    assert stored is not None
    assert [(t.status, t.timestamp, t.runner_id) for t in stored.history] == [
        (S.REGISTERED, 1.5, None),
        (S.RUNNING, 2.25, "old"),
    ]


def test_a_result_waiter_is_woken_through_the_done_list(redis_server: RedisServer) -> None:
    backend, client, record = setup(redis_server)
    [claim] = backend.claim("r", 1, LEASE, 0)
    seen: list[S] = []
    waiter = threading.Thread(
        target=lambda: seen.append(backend.wait_final(record.invocation_id, WAIT).status)  # type: ignore[union-attr]
    )
    waiter.start()
    deadline = time.monotonic() + WAIT
    while not client.hget(backend._prefix + "inv:" + record.invocation_id, "waited"):
        assert time.monotonic() < deadline  # the waiter marks the record before blocking
        time.sleep(0.002)
    backend.finish(claim.invocation_id, "r", 1, DONE)
    waiter.join(WAIT)
    assert seen == [S.SUCCESS]
    assert client.exists(backend._prefix + "done:" + record.invocation_id)


TIME_TEXT = re.compile(rb"^\d+\.\d{6}$")


def in_micros(text: bytes) -> int:
    """A time written as seconds with six decimals, in whole microseconds."""
    return int(text.replace(b".", b""))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        ("1764445627.123456", b"1764445627.123456"),
        ("1764445627.000005", b"1764445627.000005"),  # leading zeros of the microseconds kept
        ("1764445627.9999996", b"1764445628.000000"),  # rounding carries into the seconds
        ("30", b"30.000000"),
        ("0.5", b"0.500000"),
    ],
)
def test_scripts_write_times_as_printf_six_decimals_would(
    redis_server: RedisServer, seconds: str, text: bytes
) -> None:
    # time_text formats with integers only (a float's printf is costly inside Redis); its text
    # must still be what '%.6f' prints, since records are read back with float().
    client = redis.Redis.from_url(redis_server.url)
    source = script_source("register").split("-- register:")[0]
    assert client.eval(source + "\nreturn time_text(tonumber(ARGV[1]))", 1, "p:", seconds) == text


def test_times_come_from_the_server_clock_to_the_microsecond(redis_server: RedisServer) -> None:
    backend, client, record = setup(redis_server)
    [claim] = backend.claim("r", 1, LEASE, 0)
    seconds, micros = client.time()
    fields = client.hgetall(backend._prefix + "inv:" + record.invocation_id)
    lease_expires_at = fields[b"lease_expires_at"]
    assert TIME_TEXT.match(lease_expires_at)
    assert abs(float(lease_expires_at) - (seconds + micros / 1e6 + LEASE)) < WAIT
    running = fields[b"h" + fields[b"hn"]]
    # Code 'running', its time, its runner (see 'inv:<id>' in lib_core.lua).
    assert re.fullmatch(rb"u\d+\.\d{6}\x1fr", running)
    # Both texts are whole microseconds of one server time: exactly LEASE apart, no rounding.
    started = running[1:-2]
    assert in_micros(lease_expires_at) - in_micros(started) == LEASE * 1_000_000
    # The lease and the hand-over line are sorted by those same times, in whole microseconds
    # (integer scores: see micros_text in lib_core.lua).
    score = client.zscore(backend._prefix + "leases", claim.invocation_id)
    assert score == in_micros(lease_expires_at)
    # Nothing queued: the claim script puts "r" in line, waiting for 5 s.
    assert backend._run("claim", "r", 1, LEASE, 60, 5.0) == [[], -1]
    [(member, until)] = client.zrange(backend._prefix + "idle", 0, -1, withscores=True)
    assert member.startswith(b"r\x1f") and until == int(until) > seconds * 1_000_000


def test_lookups_and_purge_reach_the_invocations_of_every_task(
    redis_server: RedisServer,
) -> None:
    # No zset lists every invocation: each task's zset does, and 'counts' names the tasks.
    backend, client, first = setup(redis_server)
    others = [
        InvocationRecord(
            invocation_id=f"{first.invocation_id}-{task}",
            task_id=task,
            arguments=b"args",
            plan=ConcurrencyPlan(None, None, 1, False),
            max_retries=0,
            created_at=time.time() + number,
        )
        for number, task in enumerate(("tests.b", "tests.c"), 1)
    ]
    for record in others:
        backend.register(record)
    ids = [first.invocation_id] + [record.invocation_id for record in others]
    assert backend.find_ids(first.invocation_id, 10) == sorted(ids)
    assert [r.invocation_id for r in backend.list_invocations(None, None, 10)] == ids[::-1]
    assert [r.invocation_id for r in backend.list_invocations("tests.b", None, 10)] == ids[1:2]
    assert backend.page_invocations(limit=2).records[1].invocation_id == ids[1]
    backend.purge()
    assert client.keys(backend._prefix + "*") == []


def test_finals_are_dated_in_buckets_of_a_second_to_the_microsecond(
    redis_server: RedisServer,
) -> None:
    backend, client, record = setup(redis_server)
    [claim] = backend.claim("r", 1, LEASE, 0)
    seconds, micros = client.time()
    backend.finish(claim.invocation_id, "r", 1, DONE)
    # Its bucket: the second its TTL ends in (the finish's time is a little after 'now').
    [bucket] = [int(b) for b in client.zrange(backend._prefix + "expb", 0, -1)]
    [entry] = client.lrange(backend._prefix + f"exp:{bucket}", 0, -1)
    invocation_id, fraction = entry.split(b"\x1f")
    assert invocation_id == record.invocation_id.encode() and re.fullmatch(rb"\d{6}", fraction)
    ends = bucket + int(fraction) / 1e6
    assert 0 <= ends - (seconds + micros / 1e6 + backend.options.result_ttl_seconds) < WAIT
    assert backend.expire_finals(10, now=ends - 0.001) == 0
    assert backend.get(record.invocation_id) is not None
    assert backend.expire_finals(10, now=ends) == 1
    assert backend.get(record.invocation_id) is None
    assert client.keys(backend._prefix + "exp*") == []


def test_finals_dated_as_earlier_builds_did_still_expire(redis_server: RedisServer) -> None:
    # Earlier builds kept each final id in zset 'expiry', scored by its expiry time.
    backend, client, record = setup(redis_server)
    [claim] = backend.claim("r", 1, LEASE, 0)
    backend.finish(claim.invocation_id, "r", 1, DONE)
    for bucket in client.zrange(backend._prefix + "expb", 0, -1):
        client.delete(backend._prefix + "exp:" + bucket.decode())
    client.delete(backend._prefix + "expb")
    client.zadd(backend._prefix + "expiry", {record.invocation_id: 5000.5})
    assert backend.expire_finals(10, now=5000.0) == 0
    assert backend.expire_finals(10, now=5000.5) == 1
    assert backend.get(record.invocation_id) is None
    assert client.keys(backend._prefix + "exp*") == []


@pytest.mark.parametrize("dated_as", ["expiry", "exp"])
def test_expiry_empties_the_index_of_every_invocation_that_earlier_builds_kept(
    redis_server: RedisServer, dated_as: str
) -> None:
    # Earlier builds also listed every id in zset 'index'; nothing reads it now, and nothing
    # but expiry would ever take the entries of their records out of it.
    backend, client, record = setup(redis_server)
    created = client.hget(backend._prefix + "inv:" + record.invocation_id, "created_at")
    assert created is not None
    client.zadd(backend._prefix + "index", {record.invocation_id: float(created)})
    [claim] = backend.claim("r", 1, LEASE, 0)
    backend.finish(claim.invocation_id, "r", 1, DONE)
    if dated_as == "expiry":  # finished by an earlier build
        for bucket in client.zrange(backend._prefix + "expb", 0, -1):
            client.delete(backend._prefix + "exp:" + bucket.decode())
        client.delete(backend._prefix + "expb")
        client.zadd(backend._prefix + "expiry", {record.invocation_id: 5000.5})
    assert backend.expire_finals(10, now=time.time() + 10 * WAIT + 10**6) == 1
    assert backend.get(record.invocation_id) is None
    assert client.keys(backend._prefix + "*") == [backend._prefix.encode() + b"counts"]  # zeros
