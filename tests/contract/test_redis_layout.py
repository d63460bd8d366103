"""Redis only: what the layout keeps per invocation (one hash; a done list only when waited on).

On every redis-server found: the scripts run as a function library on Redis 7, by SHA on 6.2.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend
from taskgate.backends.redis.connection import STORE_FORMAT, script_source
from taskgate.errors import BackendStoreFormatError
from taskgate.record import ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer, redis_server_binaries

LEASE = 30.0
WAIT = 15.0
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")


@pytest.fixture(scope="module", params=redis_server_binaries())
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    with RedisServer(binary=request.param) as started:
        yield started


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
    # Listed by its task's index only: a listing of every task merges those (pages.py).
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


def earlier_build_store(client: redis.Redis, prefix: str, counted: int) -> None:
    """What a build before store format 3 left: records under long field names (history as
    JSON lines in the oldest), a zset as each task's index, the counts."""
    for n in range(3):
        invocation_id = f"old-{n}"
        client.hset(
            prefix + "inv:" + invocation_id,
            mapping={
                "task_id": "tests.task",
                "arguments": b"args",
                "created_at": "1700000000.5",
                "status": "registered",
                "history": b'["registered",1700000000.5,false]',
            },
        )
        client.zadd(prefix + "task:tests.task", {invocation_id: 1700000000.5 + n})
        client.rpush(prefix + "queue", invocation_id)
    client.hset(prefix + "counts", "tests.task\x1fregistered", counted)


def test_a_store_of_an_earlier_build_is_refused_until_purged(redis_server: RedisServer) -> None:
    # Its records are under other field names: no script may read them as this build's (a
    # claim would take them for missing). The first script of a process checks; purge empties
    # a store of any layout.
    app = App(f"earlier-{time.time_ns()}", backend=redis_server.url)
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    client = redis.Redis.from_url(redis_server.url)
    earlier_build_store(client, backend._prefix, counted=3)
    with pytest.raises(BackendStoreFormatError) as refused:
        backend.claim("r", 1, LEASE, 0)
    assert "earlier taskgate" in str(refused.value) and "taskgate purge" in str(refused.value)
    with pytest.raises(BackendStoreFormatError):  # refused again, nothing written
        backend.register(record_of("tests.task"))
    assert client.llen(backend._prefix + "queue") == 3
    assert client.get(backend._prefix + "format") is None
    backend.purge()
    assert client.keys(backend._prefix + "*") == []
    record = record_of("tests.task")
    assert backend.register(record).created
    assert client.get(backend._prefix + "format") == STORE_FORMAT.encode()
    assert [c.invocation_id for c in backend.claim("r", 1, LEASE, 0)] == [record.invocation_id]


def test_a_drained_store_of_an_earlier_build_is_taken_over(redis_server: RedisServer) -> None:
    # Its invocations all expired (counts back at zero, its zsets gone with their last entry):
    # nothing to misread, so no purge is needed.
    backend = App(f"drained-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(backend, RedisBackend)
    client = redis.Redis.from_url(redis_server.url)
    client.hset(backend._prefix + "counts", "tests.task\x1fsuccess", 0)
    record = record_of("tests.task")
    assert backend.register(record).created
    assert client.get(backend._prefix + "format") == STORE_FORMAT.encode()
    stored = backend.get(record.invocation_id)
    assert stored is not None and stored.status is S.REGISTERED


def test_a_layout_3_store_is_taken_over_unless_it_keeps_timed_entries(
    redis_server: RedisServer,
) -> None:
    # Layout 3 scored 'timed' in seconds, 4 in microseconds: what it kept there would all fall
    # due at once. Without such entries (the lanes' marker at 0 is the same in both) nothing
    # differs, and the store is taken over as it stands.
    client = redis.Redis.from_url(redis_server.url)
    kept = App(f"l3-timed-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(kept, RedisBackend)
    client.set(kept._prefix + "format", "3")
    client.zadd(kept._prefix + "timed", {"l:": 0, "i:old-0": 1700000000.5})
    with pytest.raises(BackendStoreFormatError, match="format 3"):
        kept.register(record_of("tests.task"))
    assert client.get(kept._prefix + "format") == b"3"

    clear = App(f"l3-clear-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(clear, RedisBackend)
    client.set(clear._prefix + "format", "3")
    client.zadd(clear._prefix + "timed", {"l:": 0})
    record = record_of("tests.task")
    assert clear.register(record).created
    assert client.get(clear._prefix + "format") == STORE_FORMAT.encode() == b"4"
    assert [c.invocation_id for c in clear.claim("r", 1, LEASE, 0)] == [record.invocation_id]


@pytest.mark.parametrize("emptied_by", ["purge", "a restart without persistence"])
def test_a_store_emptied_under_running_processes_is_not_refused(
    redis_server: RedisServer, emptied_by: str
) -> None:
    # The 'format' key goes with everything else while processes that checked it go on
    # registering: a process that starts then must take the store as this layout's (the
    # evidence of an earlier one is its zset indexes, not a missing key).
    app_id = f"emptied-{time.time_ns()}"
    caller = App(app_id, backend=redis_server.url).backend
    assert isinstance(caller, RedisBackend)
    caller.register(record_of("tests.task"))
    client = redis.Redis.from_url(redis_server.url)
    if emptied_by == "purge":
        caller.purge()
    else:  # as FLUSHDB would, for this app's keys only (the server is the session's)
        client.delete(*client.keys(caller._prefix + "*"))
    assert client.get(caller._prefix + "format") is None
    queued = record_of("tests.task")
    assert caller.register(queued).created  # this process checked before: no check again
    runner = App(app_id, backend=redis_server.url).backend  # a process starting now
    assert [c.invocation_id for c in runner.claim("r", 1, LEASE, 0)] == [queued.invocation_id]
    assert client.get(caller._prefix + "format") == STORE_FORMAT.encode()


def record_of(task: str) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"inv-{time.time_ns()}",
        task_id=task,
        arguments=b"args",
        plan=ConcurrencyPlan(None, None, 1, False),
        max_retries=0,
    )


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
    # No index lists every invocation: each task's does, and 'counts' names the tasks.
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


def test_a_task_index_entry_is_the_registration_time_kept_in_order(
    redis_server: RedisServer,
) -> None:
    # The entry id is the caller's time in microseconds. A call in the same microsecond, or
    # from a host whose clock is behind, follows the last entry (one more in its second part),
    # and keeps its own time as 'c': the index stays in registration order, every record has
    # its caller's time, and one caller far ahead dates no later registration in its future.
    backend, client, first = setup(redis_server)
    index = backend._prefix + "task:tests.task"
    base = time.time() + 100
    records = [record_of("tests.task") for _ in range(4)]
    times = [base, base, base - 50, time.time()]  # the same microsecond, behind, now
    for record, at in zip(records, times, strict=True):
        record.created_at = at
    for record in records:
        backend.register(record)
    micros = round(base * 1_000_000)
    entries = client.xrange(index, "-", "+")
    assert [(e[0], e[1][b"i"].decode()) for e in entries[1:]] == [
        (f"{micros}-{n}".encode(), record.invocation_id) for n, record in enumerate(records)
    ]
    for n, (record, at) in enumerate(zip(records, times, strict=True)):
        fields = client.hgetall(backend._prefix + "inv:" + record.invocation_id)
        assert fields[b"x"] == (str(micros) if n == 0 else f"{micros}-{n}").encode()
        assert fields.get(b"c") == (None if n == 0 else str(round(at * 1_000_000)).encode())
        stored = backend.get(record.invocation_id)
        assert stored is not None and stored.created_at == round(at * 1_000_000) / 1_000_000
        assert stored.history[0].timestamp == stored.created_at
    listed = [r.invocation_id for r in backend.list_invocations("tests.task", None, 10)]
    assert listed == [r.invocation_id for r in records[::-1]] + [first.invocation_id]


def test_a_listing_of_every_task_is_in_registration_order(redis_server: RedisServer) -> None:
    # Calls of two tasks made one after the other, well within a millisecond: each task's
    # index is dated to the microsecond, so the merge of the two keeps their order.
    backend, _, first = setup(redis_server)
    made = [record_of(task) for task in ("tests.other", "tests.task", "tests.other")]
    for record in made:
        backend.register(record)
    listed = [r.invocation_id for r in backend.list_invocations(None, None, 10)]
    assert listed == [r.invocation_id for r in [first, *made][::-1]]


def test_expiry_takes_the_entry_out_of_the_task_index(redis_server: RedisServer) -> None:
    backend, client, _ = setup(redis_server)
    other = record_of("tests.task")
    backend.register(other)
    [claim] = backend.claim("r", 1, LEASE, 0)
    backend.finish(claim.invocation_id, "r", 1, DONE)
    assert backend.expire_finals(10, now=time.time() + 10 * WAIT + 10**6) == 1
    index = backend._prefix + "task:tests.task"
    assert [e[1][b"i"].decode() for e in client.xrange(index, "-", "+")] == [other.invocation_id]
    assert [r.invocation_id for r in backend.list_invocations(None, None, 10)] == [
        other.invocation_id
    ]
