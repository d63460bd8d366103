"""Redis only: a claim parks a hot key's backlog a bounded part at a time.

A claim that meets invocations whose key is full parks them (``CONCURRENCY_CONTROLLED``) and goes
on down the ready queue. One script that parked a whole backlog would hold the server for all of
it (seconds at 100,000 queued), so a claim stops once it parked ``CLAIM_PARK_MAX`` and says more
may be ready; the backend then claims again at once. These tests pin that nothing changes for the
caller: the backlog drains completely and in order, work queued behind it is claimed by the same
backend call (no wake-up is needed, so none can be lost), and a claimer is in line for hand-overs
only once the queue is done with. On every redis-server found (the function library of Redis 7,
scripts by SHA on 6.2).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from importlib import resources

import pytest
import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend
from taskgate.record import ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer, redis_server_binaries

LEASE = 30.0
TTL = 60
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")
HOT = "tests.hot#key=1"


def claim_park_max() -> int:
    """CLAIM_PARK_MAX as lib.lua sets it (the tests follow it if it changes)."""
    text = resources.files("taskgate.backends.redis").joinpath("scripts", "lib.lua").read_text()
    found = re.search(r"^local CLAIM_PARK_MAX = (\d+)$", text, re.MULTILINE)
    assert found is not None
    return int(found.group(1))


BOUND = claim_park_max()


@pytest.fixture(scope="module", params=redis_server_binaries())
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    with RedisServer(binary=request.param) as started:
        yield started


@pytest.fixture
def backend(server: RedisServer) -> Iterator[RedisBackend]:
    made = App(f"claim-bound-{time.time_ns()}", backend=server.url).backend
    assert isinstance(made, RedisBackend)
    yield made
    made.close()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(server.url)
    yield made
    made.close()


def register(backend: RedisBackend, number: int, running_key: str | None = HOT) -> str:
    invocation_id = f"inv-{number:05d}-{time.time_ns()}"
    backend.register(
        InvocationRecord(
            invocation_id=invocation_id,
            task_id="tests.hot" if running_key else "tests.plain",
            arguments=b"args",
            plan=ConcurrencyPlan(None, running_key, 1, False),
            max_retries=0,
        )
    )
    return invocation_id


def status(backend: RedisBackend, invocation_id: str) -> S:
    record = backend.get(invocation_id)
    assert record is not None
    return record.status


def in_line(backend: RedisBackend, client: redis.Redis) -> list[str]:
    members = client.zrange(backend._prefix + "idle", 0, -1)
    return [member.decode().split("\x1f")[0] for member in members]


def test_one_claim_parks_at_most_the_bound_and_says_more_may_be_ready(
    backend: RedisBackend, client: redis.Redis
) -> None:
    ids = [register(backend, number) for number in range(2 * BOUND + 3)]
    [first] = backend.claim("a", 1, LEASE, 0)
    assert first.invocation_id == ids[0]
    # The raw script: a part of the backlog parked, the rest still queued, "more" set, and the
    # claimer not in line for hand-overs (it looks again at once).
    assert backend._run("claim", "b", 1, LEASE, TTL, 30.0, "") == [[], -1, 1]
    assert [status(backend, i) for i in ids[1 : BOUND + 2]] == [
        *[S.CONCURRENCY_CONTROLLED] * BOUND,
        S.REGISTERED,
    ]
    assert client.llen(backend._prefix + "queue") == len(ids) - 1 - BOUND
    assert in_line(backend, client) == []
    assert backend._run("claim", "b", 1, LEASE, TTL, 30.0, "") == [[], -1, 1]
    # The last part: the queue is done with, so the claimer gets in line as before.
    assert backend._run("claim", "b", 1, LEASE, TTL, 30.0, "") == [[], -1]
    assert in_line(backend, client) == ["b"]
    assert all(status(backend, i) is S.CONCURRENCY_CONTROLLED for i in ids[1:])


def test_a_backlog_larger_than_the_bound_drains_completely_in_order(
    backend: RedisBackend,
) -> None:
    ids = [register(backend, number) for number in range(3 * BOUND + 5)]
    [claim] = backend.claim("a", 1, LEASE, 0)
    # The other runner's claim parks the whole backlog, a part per script, and finds nothing.
    assert backend.claim("b", 1, LEASE, 0) == []
    started = [claim.invocation_id]
    while True:
        running = [i for i in ids if status(backend, i) is S.RUNNING]
        assert running == [claim.invocation_id]  # U1: one at a time
        _, claims = backend.finish_and_claim(
            claim.invocation_id, "a", claim.attempt, DONE, max_count=1, lease_seconds=LEASE
        )
        if not claims:
            break
        [claim] = claims
        started.append(claim.invocation_id)
    assert started == ids  # first come first served, none lost
    assert all(status(backend, i) is S.SUCCESS for i in ids)


def test_a_claim_reaches_work_queued_behind_a_parked_backlog(backend: RedisBackend) -> None:
    backlog = [register(backend, number) for number in range(2 * BOUND + 1)]
    behind = register(backend, 99_999, running_key=None)
    [holder] = backend.claim("a", 1, LEASE, 0)
    assert holder.invocation_id == backlog[0]
    # One backend call, no wake-up: it parks the backlog in parts and claims what is behind.
    [claim] = backend.claim("b", 1, LEASE, 0)
    assert claim.invocation_id == behind
    assert all(status(backend, i) is S.CONCURRENCY_CONTROLLED for i in backlog[1:])


def test_finish_and_claim_reaches_work_queued_behind_a_parked_backlog(
    backend: RedisBackend, client: redis.Redis
) -> None:
    other = register(backend, 0, running_key=None)
    [running] = backend.claim("b", 1, LEASE, 0)
    assert running.invocation_id == other
    backlog = [register(backend, number) for number in range(1, 2 * BOUND + 2)]
    behind = register(backend, 99_999, running_key=None)
    [holder] = backend.claim("a", 1, LEASE, 0)
    assert holder.invocation_id == backlog[0]
    # Its script stops after a part with nothing for "b"; the same call claims on. Returning
    # nothing instead would leave "b" waiting for a wake-up that nobody pushes.
    done, claims = backend.finish_and_claim(
        other, "b", running.attempt, DONE, max_count=1, lease_seconds=LEASE
    )
    assert done
    assert [c.invocation_id for c in claims] == [behind]
    assert in_line(backend, client) == []
    # The backlog still drains in order behind its holder.
    _, [next_one] = backend.finish_and_claim(
        holder.invocation_id, "a", holder.attempt, DONE, max_count=1, lease_seconds=LEASE
    )
    assert next_one.invocation_id == backlog[1]


def test_finish_and_claim_with_nothing_left_gets_in_line(
    backend: RedisBackend, client: redis.Redis
) -> None:
    other = register(backend, 0, running_key=None)
    [running] = backend.claim("b", 1, LEASE, 0)
    backlog = [register(backend, number) for number in range(1, 2 * BOUND + 2)]
    backend.claim("a", 1, LEASE, 0)
    done, claims = backend.finish_and_claim(
        other, "b", running.attempt, DONE, max_count=1, lease_seconds=LEASE
    )
    assert done and claims == []
    # Everything parked, and "b" in line for hand-overs (as when the queue was empty).
    assert in_line(backend, client) == ["b"]
    assert all(status(backend, i) is S.CONCURRENCY_CONTROLLED for i in backlog[1:])


def due_move_max() -> int:
    """DUE_MOVE_MAX as lib_budgets.lua sets it."""
    scripts = resources.files("taskgate.backends.redis").joinpath("scripts")
    text = scripts.joinpath("lib_budgets.lua").read_text()
    found = re.search(r"^local DUE_MOVE_MAX = (\d+)$", text, re.MULTILINE)
    assert found is not None
    return int(found.group(1))


def test_delayed_calls_falling_due_at_once_are_moved_a_bounded_part_per_claim(
    backend: RedisBackend, client: redis.Redis
) -> None:
    bound = due_move_max()
    ids = []
    for number in range(2 * bound + 5):
        invocation_id = f"late-{number:05d}"
        backend.register(
            InvocationRecord(
                invocation_id=invocation_id,
                task_id="tests.plain",
                arguments=b"args",
                plan=ConcurrencyPlan(None, None, 1, False),
                max_retries=0,
                scheduled_for=time.time() + 3600,
            )
        )
        ids.append(invocation_id)
    assert all(status(backend, i) is S.SCHEDULED for i in ids)
    # All of them fall due at once (their hour is over), as after a runner-less hour.
    timed = backend._prefix + "timed"
    client.zadd(timed, {f"d:{i}": 1_700_000_000_000_000 for i in ids})  # 2023, in µs
    # One script moves a part, claims from it, says more may be ready and that the rest is due
    # now (1 ms), so the claimer neither waits nor gets in line.
    claims, due_ms, more = backend._run("claim", "a", 1, LEASE, TTL, 30.0, "")
    assert (len(claims), due_ms, more) == (1, 1, 1)
    assert client.zcard(timed) == len(ids) - bound
    assert client.llen(backend._prefix + "queue") == bound - 1
    assert in_line(backend, client) == []
    # Claims take every one of them, in order, none left behind on 'timed'.
    started = [claims[0][0].decode()]
    while found := backend.claim("a", 1, LEASE, 0):
        started.extend(claim.invocation_id for claim in found)
    assert started == ids
    assert client.zcard(timed) == 0
