"""Redis only: the layout of queues, priorities and cancellation (scripts/lib_core.lua).

A cancelled waiting invocation must be gone from every structure it can sit in; hand-overs and
wake-ups must reach only runners serving the work's queue.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend
from taskgate.record import (
    Budget,
    CancelResult,
    Claim,
    ConcurrencyPlan,
    InvocationRecord,
    Outcome,
    OutcomeKind,
)
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer

LEASE = 30.0
WAIT = 15.0
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")
_ids = itertools.count()


def setup(redis_server: RedisServer) -> tuple[RedisBackend, redis.Redis]:
    backend = App(f"queues-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(backend, RedisBackend)
    return backend, redis.Redis.from_url(redis_server.url)


def rec(
    *,
    queue: str = "default",
    priority: int = 0,
    run: str | None = None,
    reg: str | None = None,
    **fields: object,
) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"q-{time.time_ns()}-{next(_ids)}",
        task_id="tests.task",
        arguments=b"args",
        plan=ConcurrencyPlan(reg, run, 1, False),
        max_retries=0,
        queue=queue,
        priority=priority,
        **fields,  # type: ignore[arg-type]
    )


def places(client: redis.Redis, prefix: str, invocation_id: str) -> set[str]:
    """Every key of the app (but the record's own hash and its indexes) that names the id."""
    found: set[str] = set()
    ident = invocation_id.encode()
    for raw in client.keys(prefix + "*"):
        key = raw.decode().removeprefix(prefix)
        kind = client.type(raw).decode()
        items: list[Any]
        if kind == "list":
            items = client.lrange(raw, 0, -1)
        elif kind == "set":
            items = list(client.smembers(raw))
        elif kind == "zset":
            items = client.zrange(raw, 0, -1)
        elif kind == "hash":
            items = list(client.hvals(raw))
        else:
            continue
        if key == "task:tests.task" or key.startswith(("inv:", "exp:")):
            continue
        if any(ident in item for item in items):
            found.add(key)
    return found


def ids(claims: list[Claim]) -> list[str]:
    return [claim.invocation_id for claim in claims]


def test_priorities_then_call_order_and_queues(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    low, plain, high1, high2, other = (
        rec(priority=-3),
        rec(),
        rec(priority=5),
        rec(priority=5),
        rec(queue="mail", priority=9),
    )
    backend.register_many([low, plain, high1, high2, other])
    # While lanes exist, 'timed' holds their marker first (what every claim looks at anyway).
    assert client.zrange(backend._prefix + "timed", 0, -1, withscores=True) == [(b"l:", 0.0)]
    assert backend.stats().queue_depth == {"default": 4, "mail": 1}
    claimed = ids(backend.claim("r", 10, LEASE, 0, queues=frozenset({"default"})))
    assert claimed == [r.invocation_id for r in (high1, high2, plain, low)]
    assert ids(backend.claim("r", 10, LEASE, 0)) == [other.invocation_id]
    # Lanes go when empty, their marker with them.
    assert client.exists(backend._prefix + "lanes", backend._prefix + "timed") == 0
    assert backend.stats().queue_depth == {}


def test_the_plain_path_pays_no_command_for_lanes(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    backend.register_many([rec(), rec()])
    client.config_resetstat()
    [claim] = backend.claim("r", 1, LEASE, 0)
    backend.finish_and_claim(claim.invocation_id, "r", 1, DONE, max_count=1, lease_seconds=LEASE)
    calls = {k: v["calls"] for k, v in client.info("commandstats").items()}
    assert calls["cmdstat_zrange"] == 2  # the look at 'timed' of each claim, nothing more
    assert not {"cmdstat_exists", "cmdstat_hgetall"} & calls.keys()


def test_a_timed_entry_behind_the_marker_is_still_the_earliest(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    backend.register(rec(queue="other"))  # a lane, so the marker
    results: list[list[Claim]] = []
    waiter = threading.Thread(
        target=lambda: results.append(
            backend.claim("w", 1, LEASE, 1.5, queues=frozenset({"default"}))
        )
    )
    waiter.start()
    deadline = time.monotonic() + WAIT
    while client.zcard(backend._prefix + "idleq") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    # Earliest real entry: the waiting runner is woken to wait for it instead of sleeping 1.5 s.
    delayed = rec(scheduled_for=time.time() + 0.2)
    backend.register(delayed)
    waiter.join(WAIT)
    assert ids(results[0]) == [delayed.invocation_id]


def test_handed_back_work_goes_first_in_its_priority(redis_server: RedisServer) -> None:
    backend, _ = setup(redis_server)
    first, second = rec(priority=2), rec(priority=2)
    backend.register_many([first, second])
    [claim] = backend.claim("r", 1, LEASE, 0)
    assert backend.release(claim.invocation_id, "r", 1)
    assert ids(backend.claim("r", 2, LEASE, 0)) == [first.invocation_id, second.invocation_id]


def test_parked_waiters_wake_by_priority(redis_server: RedisServer) -> None:
    backend, _ = setup(redis_server)
    holder = rec(run="k")
    backend.register(holder)
    [claim] = backend.claim("r", 1, LEASE, 0)
    waiters = [rec(run="k", priority=p) for p in (0, -1, 3, 0, 3)]
    backend.register_many(waiters)
    assert backend.claim("r", 10, LEASE, 0) == []  # all parked
    assert backend.stats().parked_by_key == {"k": 5}
    order = []
    current = claim
    for _ in waiters:
        _, [current] = backend.finish_and_claim(
            current.invocation_id, "r", current.attempt, DONE, max_count=1, lease_seconds=LEASE
        )
        order.append(current.invocation_id)
    expected = [waiters[i].invocation_id for i in (2, 4, 0, 3, 1)]
    assert order == expected


def test_hand_over_only_to_a_runner_serving_the_queue(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    # In line for hand-overs (idle for 10 s) without blocking: the claim script alone.
    assert backend._db.run("claim", "mailer", 1, 30.0, 60.0, 10, "mail")[0] == []
    assert client.zcard(backend._prefix + "idleq") == 1
    other = rec(queue="reports")
    backend.register(other)
    assert backend.get(other.invocation_id).status is S.REGISTERED
    mail = rec(queue="mail")
    backend.register(mail)
    stored = backend.get(mail.invocation_id)
    assert stored is not None and stored.status is S.RUNNING and stored.runner_id == "mailer"
    assert client.zcard(backend._prefix + "idle") == 0
    assert client.zcard(backend._prefix + "idleq") == 0
    assert ids(backend.claim("mailer", 5, LEASE, 0, queues=frozenset({"mail"}))) == [
        mail.invocation_id
    ]


def test_a_wake_up_reaches_a_runner_serving_the_queue(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    # A lane exists, so a keyed record is queued, not handed over: it lands in lane "b".
    backend.register(rec(queue="c"))
    results: dict[str, list[Claim]] = {}

    def wait(runner: str, queue: str) -> None:
        results[runner] = backend.claim(runner, 1, LEASE, 1.5, queues=frozenset({queue}))

    threads = [threading.Thread(target=wait, args=(r, q)) for r, q in (("ra", "a"), ("rb", "b"))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT
    while client.zcard(backend._prefix + "idleq") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    work = rec(queue="b", run="key")
    backend.register(work)
    for thread in threads:
        thread.join(WAIT)
    # Without the wake-up on wake:b, rb would have slept its 1.5 s and claimed nothing.
    assert ids(results["rb"]) == [work.invocation_id]
    assert results["ra"] == []


def test_a_claim_leaving_work_behind_passes_the_baton_to_a_runner_of_its_queue(
    redis_server: RedisServer,
) -> None:
    backend, client = setup(redis_server)
    # A lane exists, so the keyed records below are queued, not handed over (as above).
    other = rec(queue="c")
    backend.register(other)
    assert backend._run("claim", "rb", 1, LEASE, 60, 30.0, "b")[0] == []  # in line for "b"
    first, second = rec(queue="b", run="k1"), rec(queue="b", run="k2")
    backend.register_many([first, second])
    tokens = client.llen(backend._prefix + "wake:b")  # the lane's first push woke "b" once
    [claim] = backend.claim("r", 1, LEASE, 0, queues=frozenset({"b"}))
    assert claim.invocation_id == first.invocation_id
    # second is left: the claim passes the baton to the runner of "b" still in line.
    assert client.llen(backend._prefix + "wake:b") == tokens + 1
    [claim] = backend.claim("r", 1, LEASE, 0, queues=frozenset({"c"}))
    assert claim.invocation_id == other.invocation_id
    assert client.llen(backend._prefix + "wake:b") == tokens + 2
    client.config_resetstat()
    [claim] = backend.claim("r", 1, LEASE, 0, queues=frozenset({"b"}))
    assert claim.invocation_id == second.invocation_id
    # Nothing left: no token, and one look at the line (who waits), not two.
    assert client.llen(backend._prefix + "wake:b") == tokens + 2
    calls = {k: v["calls"] for k, v in client.info("commandstats").items()}
    assert calls["cmdstat_zcard"] == 1


@pytest.mark.parametrize("where", ["lane", "plain", "timed", "timed-lane", "parked", "pz", "slot"])
def test_a_cancelled_waiting_invocation_leaves_nothing_behind(
    redis_server: RedisServer, where: str
) -> None:
    backend, client = setup(redis_server)
    follower = None
    if where == "lane":
        target = rec(queue="x", priority=4, reg="rk")
        backend.register(target)
    elif where == "plain":
        target = rec()
        backend.register(target)
    elif where in ("timed", "timed-lane"):  # on 'timed' as "d:<id>", or as "i:<id>"
        at = time.time() + 60
        target = (
            rec(scheduled_for=at, queue="x", priority=4)
            if where == "timed-lane"
            else rec(scheduled_for=at)
        )
        backend.register(target)
        assert backend.get(target.invocation_id).status is S.SCHEDULED
    else:
        holder = rec(run="k")
        backend.register(holder)
        [claim] = backend.claim("r", 1, LEASE, 0)
        target = rec(run="k", priority=0 if where != "pz" else 7)
        follower = rec(run="k")
        backend.register_many([target, follower])
        assert backend.claim("r", 5, LEASE, 0) == []
        if where == "slot":  # woken: holds the slot handed to it, first in the ready queue
            backend.finish(claim.invocation_id, "r", 1, DONE)
    assert places(client, backend._prefix, target.invocation_id)
    assert backend.cancel(target.invocation_id) is CancelResult.CANCELLED
    assert places(client, backend._prefix, target.invocation_id) == set()
    assert backend.get(target.invocation_id).status is S.CANCELLED
    assert backend.cancel(target.invocation_id) is CancelResult.FINAL
    if where == "slot":
        assert follower is not None
        assert ids(backend.claim("r", 5, LEASE, 0)) == [follower.invocation_id]
    if where == "lane":
        assert client.exists(backend._prefix + "lanes") == 0


def test_cancel_of_a_handed_over_unread_invocation(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    assert backend._db.run("claim", "r", 1, 30.0, 60.0, 10, "")[0] == []
    target = rec(run="k")
    backend.register(target)
    assert client.llen(backend._prefix + "inbox:r") == 1
    # Running as far as callers can see: REQUESTED, but it never starts: cancelled at once.
    assert backend.cancel(target.invocation_id) is CancelResult.REQUESTED
    assert backend.get(target.invocation_id).status is S.CANCELLED
    assert client.llen(backend._prefix + "inbox:r") == 0
    assert places(client, backend._prefix, target.invocation_id) == set()
    nxt = rec(run="k")
    backend.register(nxt)
    assert ids(backend.claim("r", 1, LEASE, 0)) == [nxt.invocation_id]


@pytest.mark.parametrize("how", ["finish", "retry", "release", "recover"])
def test_a_running_cancel_is_requested_then_ends_cancelled(
    redis_server: RedisServer, how: str
) -> None:
    backend, client = setup(redis_server)
    target = rec(run="k")
    backend.register(target)
    [claim] = backend.claim("r", 1, LEASE, 0)
    assert backend.cancel(target.invocation_id) is CancelResult.REQUESTED
    assert backend.cancel(target.invocation_id) is CancelResult.FINAL
    stored = backend.get(target.invocation_id)
    assert stored is not None and stored.cancel_requested and stored.status is S.RUNNING
    assert backend.wait_cancel_requests("r", 1.0) == [target.invocation_id]
    assert backend.wait_cancel_requests("r", 0.01) == []
    if how == "finish":
        assert backend.finish(target.invocation_id, "r", 1, DONE)
    elif how == "retry":
        assert backend.finish(target.invocation_id, "r", 1, Outcome(OutcomeKind.RETRY, b"e"))
    elif how == "release":
        assert backend.release(target.invocation_id, "r", 1)
    else:
        assert backend.recover_runner("r") == [target.invocation_id]
    assert backend.get(target.invocation_id).status is S.CANCELLED
    assert places(client, backend._prefix, target.invocation_id) == set()
    assert claim.attempt == 1


def test_ticks_register_once_and_purge_clears_everything(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    tick = 1_700_000_000.0
    assert backend.register_tick(rec(scheduled_for=tick), tick) is not None
    assert backend.register_tick(rec(scheduled_for=tick), tick) is None
    assert backend.register_tick(rec(scheduled_for=tick - 60), tick - 60) is None
    assert backend.register_tick(rec(queue="q", scheduled_for=tick + 60), tick + 60) is not None
    assert backend.stats().periodic_ticks == {"tests.task": tick + 60}
    backend.register(rec(queue="x", priority=2))
    backend.claim("r", 1, LEASE, 0)
    running = backend.claim("r", 1, LEASE, 0)
    backend.cancel(running[0].invocation_id)
    backend.purge()
    assert backend.stats().periodic_ticks == {}
    left = {k.decode().removeprefix(backend._prefix) for k in client.keys(backend._prefix + "*")}
    assert left <= {"idle", "idleq"}


def test_hand_over_skips_runners_that_do_not_serve_the_queue(redis_server: RedisServer) -> None:
    backend, client = setup(redis_server)
    # Longest in line: a runner serving "a" and "b"; then one serving every queue.
    assert backend._db.run("claim", "ab", 1, 30.0, 60.0, 10, "a,b")[0] == []
    assert backend._db.run("claim", "any", 1, 30.0, 60.0, 10, "")[0] == []
    c_work, b_work = rec(queue="c"), rec(queue="b")
    backend.register(c_work)
    assert backend.get(c_work.invocation_id).runner_id == "any"
    backend.register(b_work)
    assert backend.get(b_work.invocation_id).runner_id == "ab"
    assert client.zcard(backend._prefix + "idle") == 0
    assert client.zcard(backend._prefix + "idleq") == 0


@pytest.mark.parametrize("fair", [None, "tenant-1"])
@pytest.mark.parametrize("woken", [False, True])
def test_a_cancelled_budget_waiter_leaves_nothing_behind(
    redis_server: RedisServer, fair: str | None, woken: bool
) -> None:
    backend, client = setup(redis_server)
    budget = Budget("limit b", "b", concurrency=1, fair=fair)

    def limited() -> InvocationRecord:
        return replace(rec(priority=1), plan=ConcurrencyPlan(budgets=(budget,)))

    holder, target, follower = limited(), limited(), limited()
    backend.register_many([holder, target, follower])
    [claim] = backend.claim("r", 5, LEASE, 0)
    assert claim.invocation_id == holder.invocation_id
    if woken:  # the freed slot wakes the target: counted in 'bwoken', first in its lane
        backend.finish(holder.invocation_id, "r", 1, DONE)
        assert client.hget(backend._prefix + "bwoken", "limit b") == b"1"
    assert places(client, backend._prefix, target.invocation_id)
    assert backend.cancel(target.invocation_id) is CancelResult.CANCELLED
    assert places(client, backend._prefix, target.invocation_id) == set()
    if woken:  # the woken count went on to the follower, which a claim now admits
        assert ids(backend.claim("r", 5, LEASE, 0)) == [follower.invocation_id]
    else:
        backend.finish(holder.invocation_id, "r", 1, DONE)
        assert ids(backend.claim("r", 5, LEASE, 0)) == [follower.invocation_id]
    assert client.hget(backend._prefix + "bwoken", "limit b") is None
