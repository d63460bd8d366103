"""Redis only: how the budget path is laid out (lib_core.lua, lib_budgets.lua) and what it costs
work that uses no limits."""

from __future__ import annotations

import time

import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend
from taskgate.record import (
    Budget,
    ConcurrencyPlan,
    InvocationRecord,
    LimitOverride,
    Outcome,
    OutcomeKind,
    Rate,
)
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer

LEASE = 30.0
WAIT = 15.0
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")
BUDGET_FIELDS = {b"budgets", b"seq", b"priority", b"parked_on", b"parked_rate", b"parked_since"}


def setup(redis_server: RedisServer) -> tuple[RedisBackend, redis.Redis]:
    backend = App(f"budgets-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(backend, RedisBackend)
    return backend, redis.Redis.from_url(redis_server.url)


def record(*budgets: Budget, priority: int = 0) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"inv-{time.time_ns()}",
        task_id="tests.task",
        arguments=b"args",
        plan=ConcurrencyPlan(budgets=budgets),
        priority=priority,
    )


def keys(backend: RedisBackend, client: redis.Redis) -> set[str]:
    return {k.decode().removeprefix(backend._prefix) for k in client.keys(backend._prefix + "*")}


def test_records_without_budgets_store_no_budget_field_and_touch_no_budget_key(
    redis_server: RedisServer,
) -> None:
    backend, client = setup(redis_server)
    plain = record()
    backend.register(plain)
    client.config_resetstat()
    [claim] = backend.claim("r", 1, LEASE, 0)
    backend.finish(claim.invocation_id, "r", 1, DONE)
    # The one command the budget path adds to a claim: a look at 'timed' (nothing due).
    calls = {k: v["calls"] for k, v in client.info("commandstats").items()}
    assert calls["cmdstat_zrange"] == 1
    assert not {"cmdstat_hgetall", "cmdstat_incr", "cmdstat_scard"} & calls.keys()
    fields = client.hgetall(backend._prefix + "inv:" + plain.invocation_id)
    assert not BUDGET_FIELDS & fields.keys()
    assert not {k for k in keys(backend, client) if k.startswith(("b", "lb:", "timed", "seq"))}


def test_a_budget_record_keeps_its_budgets_and_sequence(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    # Nobody in line: both are queued (test_redis_hand_over_budgets.py covers hand-overs).
    first = record(Budget("limit a", "a", concurrency=1), priority=2)
    second = record(Budget("limit a", "a", concurrency=1))
    backend.register_many([first, second])
    # Each in the ready lane of its priority (see 'lanes' in lib_core.lua).
    assert client.lrange(backend._prefix + "lane:2\x1fdefault", 0, -1) == [
        first.invocation_id.encode()
    ]
    assert client.lrange(backend._prefix + "queue", 0, -1) == [second.invocation_id.encode()]
    stored = client.hgetall(backend._prefix + "inv:" + first.invocation_id)
    assert stored[b"seq"] == b"1" and stored[b"priority"] == b"2"
    assert stored[b"budgets"] == b"limit a\x1fa\x1f1\x1f\x1f\x1f"
    assert b"priority" not in client.hgetall(backend._prefix + "inv:" + second.invocation_id)
    assert client.hget(backend._prefix + "inv:" + second.invocation_id, "seq") == b"2"


def test_a_rate_refusal_goes_on_timed_keeping_the_earlier_time(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    api = Budget("limit api", "api", rate=Rate(1, 60.0))
    ids = []
    for _ in range(3):
        r = record(api)
        backend.register(r)
        ids.append(r.invocation_id)
    claims, due_ms = backend._run("claim", "r", 10, LEASE, 60, 0)
    assert [c[0].decode() for c in claims] == ids[:1]
    # The claimer learns how long until the rate admits again (server clock, milliseconds).
    assert 55_000 < due_ms <= 60_000
    [(member, ready)] = client.zrange(backend._prefix + "timed", 0, -1, withscores=True)
    assert member == b"b:limit api"
    blocked = backend.blocked_by(ids[1])
    assert blocked is not None and blocked.ready_at == ready / 1_000_000  # scored in µs
    assert client.zrange(backend._prefix + "bw:limit api", 0, -1) == [i.encode() for i in ids[1:]]


def test_fair_waiters_queue_per_value_with_a_ring(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)

    def fair(value: str) -> Budget:
        return Budget("limit llm", "llm", concurrency=1, fair=f"t={value}")

    for value in ("a", "a", "b", "a"):
        backend.register(record(fair(value)))
    backend.claim("r", 10, LEASE, 0)
    prefix = backend._prefix
    assert client.lrange(prefix + "br:limit llm", 0, -1) == [b"t=a", b"t=b"]
    assert client.zcard(prefix + "bw:limit llm:t=a") == 2
    assert client.zcard(prefix + "bw:limit llm:t=b") == 1
    assert backend.stats().parked_by_key == {"limit llm": 3}


def test_purge_deletes_every_budget_key(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    budgets = (
        Budget("limit api", "api", rate=Rate(1, 60.0)),
        Budget("limit llm", "llm", concurrency=1, fair="t=a"),
    )
    for _ in range(3):
        backend.register(record(*budgets))
    backend.register(record(budgets[1]))
    backend.claim("r", 10, LEASE, 0)
    backend.set_limit_override("llm", LimitOverride(1, None))
    assert {
        "bh:limit llm",
        "bs:limit api",
        "bw:limit api",
        "bw:limit llm:t=a",
        "br:limit llm",
        "timed",
        "overrides",
    } <= keys(backend, client)
    backend.purge()
    assert keys(backend, client) <= {"idle"}


def test_recover_sweeps_out_budgets_that_hold_nothing(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    r = record(Budget("limit api", "api", concurrency=1, rate=Rate(5, 0.05)))
    backend.register(r)
    [claim] = backend.claim("r", 1, LEASE, 0)
    backend.finish(claim.invocation_id, "r", 1, DONE)
    listed = backend._prefix + "lb:api"
    assert client.hkeys(listed) == [b"limit api"]
    backend.recover()
    assert client.hkeys(listed) == [b"limit api"]  # its start is in the window still
    deadline = time.monotonic() + WAIT
    while client.exists(backend._prefix + "bs:limit api"):  # expires a period after the start
        assert time.monotonic() < deadline
        time.sleep(0.01)
    backend.recover()
    assert not client.exists(listed)
    assert not client.sismember(backend._prefix + "lnames", "api")
    # Listed again by the next start.
    again = record(Budget("limit api", "api", concurrency=1, rate=Rate(5, 0.05)))
    backend.register(again)
    assert [c.invocation_id for c in backend.claim("r", 1, LEASE, 0)] == [again.invocation_id]
    assert client.hkeys(listed) == [b"limit api"]
    stored = backend.get(again.invocation_id)
    assert stored is not None and stored.status is S.RUNNING


def test_the_library_keeps_its_budget_steps_across_calls_yet_reads_each_call_afresh(
    redis_server: RedisServer,
) -> None:
    """On Redis 7 the function library builds the budget steps once (lib_budgets.lua) and keeps
    the budget texts it parsed, up to PARSED_MAX: past that many texts the cache starts afresh
    and every budget is still its own; an override set between two calls applies at the next."""
    backend, client = setup(redis_server)
    texts = 1100  # more than PARSED_MAX (1024): the cache starts afresh at least once

    def keyed(n: int) -> Budget:
        return Budget(f"limit k#n={n}", "k", concurrency=1)

    first = [record(keyed(n)) for n in range(texts)]
    backend.register_many(first)
    claimed = []
    while batch := backend.claim("r", 200, LEASE, 0):
        claimed.extend(c.invocation_id for c in batch)
    assert claimed == [r.invocation_id for r in first]  # one slot per key: all admitted
    # The same keys again, each held: every one waits on its own budget, none on another's.
    again = [record(keyed(n)) for n in range(texts)]
    backend.register_many(again)
    assert backend.claim("r", 200, LEASE, 0) == []
    for n in (0, 1023, 1024, texts - 1):
        assert client.zrange(backend._prefix + f"bw:limit k#n={n}", 0, -1) == [
            again[n].invocation_id.encode()
        ]
    # Two slots per key from now on: the override's own call wakes the waiters of every key
    # (wake_limit), and the claims after it read the override, admitting each beside its holder.
    backend.set_limit_override("k", LimitOverride(2, None))
    woken = []
    while batch := backend.claim("r", 200, LEASE, 0):
        woken.extend(c.invocation_id for c in batch)
    assert sorted(woken) == sorted(r.invocation_id for r in again)
