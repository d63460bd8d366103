"""Redis only: register hands a call with limits (budgets) straight to a waiting runner.

Only when it may start right now with nothing ahead of it: empty ready lanes, no waiter on any of
its budgets, and every budget admitting it. It then takes the slots and rate tokens in the same
script, as a claim's admission would; otherwise it is queued and a claim admits or parks it. The
edges of the hand-over itself (the line, dead runners) are in test_redis_hand_over.py; these pin
what budgets add: what is taken, when nothing is handed over, and that whatever ends the hand-over
(a finish, a cancel, a take-back) frees every budget.
"""

from __future__ import annotations

import time

import pytest
import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend
from taskgate.record import (
    Budget,
    CancelResult,
    ConcurrencyPlan,
    InvocationRecord,
    Outcome,
    OutcomeKind,
    Rate,
)
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer

RUNNER = "runner-a"
OTHER = "runner-b"
LEASE = 30.0
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")
SHARED = Budget("limit shared", "shared", concurrency=10, rate=Rate(100, 60.0))
ONE = Budget("limit one", "one", concurrency=1)
ONCE = Budget("limit once", "once", rate=Rate(1, 60.0))  # one start a minute


@pytest.fixture
def script_backend(redis_server: RedisServer) -> RedisBackend:
    backend = App(f"hand-over-budgets-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(backend, RedisBackend)
    return backend


@pytest.fixture
def backend(script_backend: RedisBackend, client: redis.Redis) -> RedisBackend:
    """The hand-over of calls with limits is the function library's (Redis 7 and later): a
    server that runs the scripts by SHA only queues them (the last test)."""
    if int(str(client.info("server")["redis_version"]).split(".")[0]) < 7:
        pytest.skip("needs Redis 7 or later (functions): a script run by SHA queues the call")
    return script_backend


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


_ids = iter(range(1_000_000))


def record(*budgets: Budget) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"inv-{next(_ids)}",
        task_id="tests.task",
        arguments=b"args",
        plan=ConcurrencyPlan(budgets=budgets),
    )


def key(backend: RedisBackend, name: str) -> str:
    return backend._prefix + name


def stand_in_line(backend: RedisBackend, runner: str = RUNNER) -> None:
    """What a runner's claim does when nothing is ready: get in line (then it would block)."""
    claims, _ = backend._run("claim", runner, 1, LEASE, 60, 30.0)
    assert claims == []


def inbox(backend: RedisBackend, client: redis.Redis, runner: str = RUNNER) -> list[str]:
    items = client.lrange(key(backend, f"inbox:{runner}"), 0, -1)
    return [item.split(b"\x1f", 1)[0].decode() for item in items]


def holders(backend: RedisBackend, client: redis.Redis, budget: Budget) -> set[str]:
    return {m.decode() for m in client.smembers(key(backend, f"bh:{budget.key}"))}


def starts(backend: RedisBackend, client: redis.Redis, budget: Budget) -> list[str]:
    return [m.decode() for m in client.zrange(key(backend, f"bs:{budget.key}"), 0, -1)]


def status(backend: RedisBackend, invocation_id: str) -> S:
    stored = backend.get(invocation_id)
    assert stored is not None
    return stored.status


def test_a_call_every_budget_admits_is_handed_over_with_its_slots_and_token(
    backend: RedisBackend, client: redis.Redis
) -> None:
    stand_in_line(backend)
    call = record(SHARED, ONE)
    backend.register(call)
    assert inbox(backend, client) == [call.invocation_id]
    stored = backend.get(call.invocation_id)
    assert stored is not None
    assert (stored.status, stored.runner_id, stored.attempt) == (S.RUNNING, RUNNER, 1)
    assert [t.status for t in stored.history] == [S.REGISTERED, S.RUNNING]
    assert client.llen(key(backend, "queue")) == 0
    # Taken as a claim's admission takes them: a slot of each budget, a start in the window.
    assert holders(backend, client, SHARED) == holders(backend, client, ONE) == {call.invocation_id}
    assert starts(backend, client, SHARED) == [f"{call.invocation_id}:1"]
    usage = {u.key: len(u.holders) for u in backend.budget_usage()}
    assert usage == {"limit one": 1, "limit shared": 1}
    # Its runner reads it as any hand-over; its finish frees every slot.
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    assert (claim.invocation_id, claim.attempt) == (call.invocation_id, 1)
    assert backend.finish(call.invocation_id, RUNNER, 1, DONE)
    assert holders(backend, client, SHARED) == holders(backend, client, ONE) == set()
    assert status(backend, call.invocation_id) is S.SUCCESS


def test_a_full_budget_hands_nothing_over_and_the_claim_parks_the_call(
    backend: RedisBackend, client: redis.Redis
) -> None:
    stand_in_line(backend)
    first, second = record(ONE), record(ONE)
    backend.register(first)
    stand_in_line(backend, OTHER)
    backend.register(second)  # ONE's slot is first's: queued, untouched, for a claim
    assert inbox(backend, client, OTHER) == []
    assert client.lrange(key(backend, "queue"), 0, -1) == [second.invocation_id.encode()]
    assert status(backend, second.invocation_id) is S.REGISTERED
    assert holders(backend, client, ONE) == {first.invocation_id}
    assert backend.claim(OTHER, 1, LEASE, 0) == []
    assert status(backend, second.invocation_id) is S.CONCURRENCY_CONTROLLED
    # first's finish wakes it; it runs.
    assert backend.finish(first.invocation_id, RUNNER, 1, DONE)
    [claim] = backend.claim(OTHER, 1, LEASE, 0)
    assert claim.invocation_id == second.invocation_id


def test_a_spent_rate_hands_nothing_over(backend: RedisBackend, client: redis.Redis) -> None:
    stand_in_line(backend)
    first, second = record(ONCE), record(ONCE)
    backend.register(first)
    stand_in_line(backend, OTHER)
    backend.register(second)
    assert inbox(backend, client) == [first.invocation_id]
    assert inbox(backend, client, OTHER) == []
    assert starts(backend, client, ONCE) == [f"{first.invocation_id}:1"]
    assert status(backend, second.invocation_id) is S.REGISTERED


def test_a_budget_with_waiters_hands_nothing_over_even_with_room(
    backend: RedisBackend, client: redis.Redis
) -> None:
    first, waiter = record(ONCE), record(ONCE)
    backend.register_many([first, waiter])
    claims = backend.claim(OTHER, 2, LEASE, 0)
    assert [c.invocation_id for c in claims] == [first.invocation_id]
    assert status(backend, waiter.invocation_id) is S.CONCURRENCY_CONTROLLED
    # The window empties (as a minute later) while waiter still waits for its wake-up on
    # 'timed': a new call must not go ahead of it.
    client.delete(key(backend, f"bs:{ONCE.key}"))
    stand_in_line(backend)
    late = record(ONCE)
    backend.register(late)
    assert inbox(backend, client) == []
    assert status(backend, late.invocation_id) is S.REGISTERED
    assert starts(backend, client, ONCE) == []


def test_queued_work_goes_before_a_hand_over(backend: RedisBackend, client: redis.Redis) -> None:
    stand_in_line(backend)
    holder = record(ONE)
    backend.register(holder)  # handed over: ONE is full
    stand_in_line(backend, OTHER)
    blocked, free = record(ONE), record(SHARED)
    backend.register(blocked)  # queued (ONE is full)
    backend.register(free)  # SHARED admits it, but blocked is ahead in the queue
    assert inbox(backend, client, OTHER) == []
    assert client.lrange(key(backend, "queue"), 0, -1) == [
        blocked.invocation_id.encode(),
        free.invocation_id.encode(),
    ]
    assert holders(backend, client, SHARED) == set()


def test_cancelling_a_hand_over_its_runner_has_not_read_frees_every_budget(
    backend: RedisBackend, client: redis.Redis
) -> None:
    stand_in_line(backend)
    call = record(SHARED, ONE)
    backend.register(call)
    # Taken out of the inbox: it never starts (the reply is REQUESTED, as for any running one).
    assert backend.cancel(call.invocation_id) is CancelResult.REQUESTED
    assert inbox(backend, client) == []
    assert status(backend, call.invocation_id) is S.CANCELLED
    assert holders(backend, client, SHARED) == holders(backend, client, ONE) == set()


def test_a_hand_over_taken_back_frees_its_budgets_for_their_waiters_and_is_queued(
    backend: RedisBackend, client: redis.Redis
) -> None:
    gate = Budget("limit gate", "gate", concurrency=1, rate=Rate(100, 60.0))
    stand_in_line(backend)  # RUNNER waits, then dies: nothing reads its inbox
    call = record(SHARED, gate)
    backend.register(call)
    waiter = record(gate)
    backend.register(waiter)
    assert backend.claim(OTHER, 1, LEASE, 0) == []  # parks waiter on gate
    assert status(backend, waiter.invocation_id) is S.CONCURRENCY_CONTROLLED
    assert backend.recover_runner(RUNNER) == [call.invocation_id]
    stored = backend.get(call.invocation_id)
    assert stored is not None
    assert (stored.status, stored.attempt, stored.runner_id) == (S.REGISTERED, 0, None)
    assert holders(backend, client, SHARED) == holders(backend, client, gate) == set()
    # The freed slot woke waiter; call goes back first in line, ahead of it (as any run taken
    # back: see first_in_line in lib.lua), and is admitted again as attempt 1, its rate start
    # counted once.
    assert client.lrange(key(backend, "queue"), 0, -1) == [
        call.invocation_id.encode(),
        waiter.invocation_id.encode(),
    ]
    [claim] = backend.claim(OTHER, 1, LEASE, 0)
    assert (claim.invocation_id, claim.attempt) == (call.invocation_id, 1)
    assert holders(backend, client, gate) == {call.invocation_id}
    assert starts(backend, client, SHARED) == [f"{call.invocation_id}:1"]


def test_a_hand_over_taken_back_gives_back_its_rate_start(
    backend: RedisBackend, client: redis.Redis
) -> None:
    stand_in_line(backend)
    call = record(ONCE)
    backend.register(call)  # handed over: its start fills the window
    assert starts(backend, client, ONCE) == [f"{call.invocation_id}:1"]
    assert backend.recover_runner(RUNNER) == [call.invocation_id]
    # It never started: its start is gone, and the next claim admits it at once (it was
    # refused by its own start for a minute, or dropped when drop_when_blocked).
    assert starts(backend, client, ONCE) == []
    [claim] = backend.claim(OTHER, 1, LEASE, 0)
    assert (claim.invocation_id, claim.attempt) == (call.invocation_id, 1)
    assert starts(backend, client, ONCE) == [f"{call.invocation_id}:1"]


def test_cancelling_an_unread_hand_over_gives_back_its_rate_start(
    backend: RedisBackend, client: redis.Redis
) -> None:
    stand_in_line(backend)
    call = record(ONCE)
    backend.register(call)
    assert backend.cancel(call.invocation_id) is CancelResult.REQUESTED
    assert starts(backend, client, ONCE) == []
    stand_in_line(backend)
    after = record(ONCE)
    backend.register(after)  # the window has room: handed over
    assert inbox(backend, client) == [after.invocation_id]


def test_scripts_run_by_sha_queue_calls_with_budgets(
    script_backend: RedisBackend, client: redis.Redis
) -> None:
    # register as a script of its own lacks the budget steps (see budget_steps in lib_core.lua):
    # a claim admits the call, as before hand-overs of budgeted calls existed.
    backend = script_backend
    backend._db.use_functions = False
    stand_in_line(backend)
    call = record(SHARED)
    backend.register(call)
    assert inbox(backend, client) == []
    assert client.lrange(key(backend, "queue"), 0, -1) == [call.invocation_id.encode()]
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    assert claim.invocation_id == call.invocation_id
    assert holders(backend, client, SHARED) == {call.invocation_id}
