"""Redis only: delayed invocations and retry delays on the ``timed`` zset (members ``d:<id>``
and ``i:<id>``), driven through the backend with hand-built records (see "Timed invocations"
in taskgate/backends/base.py and register.lua / move_due in lib_budgets.lua)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import redis

from taskgate import App
from taskgate.backends.redis.backend import MAX_BLOCK_SECONDS, RedisBackend
from taskgate.record import (
    Budget,
    Claim,
    ConcurrencyPlan,
    InvocationRecord,
    Outcome,
    OutcomeKind,
    Rate,
)
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer

NewRecord = Callable[..., InvocationRecord]
RUNNER = "runner-a"
LEASE = 30.0
WAIT = 15.0
# Far enough ahead that a registration and a claim made right after it always come before.
AHEAD = 0.5
DONE = Outcome(OutcomeKind.SUCCESS, b"ok")


@pytest.fixture
def backend(redis_server: RedisServer) -> RedisBackend:
    backend = App(f"timed-{time.time_ns()}", backend=redis_server.url).backend
    assert isinstance(backend, RedisBackend)
    return backend


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def key(backend: RedisBackend, name: str) -> str:
    return backend._prefix + name


def get(backend: RedisBackend, invocation_id: str) -> Any:
    record = backend.get(invocation_id)
    assert record is not None
    return record


def timed(backend: RedisBackend, client: redis.Redis) -> list[tuple[str, float]]:
    """The entries on 'timed', their scores (whole microseconds) as seconds."""
    entries = client.zrange(key(backend, "timed"), 0, -1, withscores=True)
    return [(member.decode(), score / 1_000_000) for member, score in entries]


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a state no event announces (another client's blocking call), bounded."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "state not reached"
        time.sleep(0.002)


def blocked_claimer(
    backend: RedisBackend, client: redis.Redis
) -> tuple[threading.Thread, list[Claim]]:
    """A thread blocked in ``claim`` for 5 s (in line, like an idle runner)."""
    claimed: list[Claim] = []
    claimer = threading.Thread(target=lambda: claimed.extend(backend.claim(RUNNER, 1, LEASE, 5.0)))
    claimer.start()
    wait_until(lambda: client.zcard(key(backend, "idle")) > 0)
    return claimer, claimed


def running_since(backend: RedisBackend, invocation_id: str) -> float:
    record = get(backend, invocation_id)
    assert record.status is S.RUNNING
    return float(record.history[-1].timestamp)


def test_a_delayed_record_waits_scheduled_on_timed_and_is_claimed_at_its_time(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    at = time.time() + AHEAD
    record = new_record(scheduled_for=at)
    assert backend.register(record).created
    stored = get(backend, record.invocation_id)
    assert stored.status is S.SCHEDULED and stored.scheduled_for == pytest.approx(at, abs=1e-6)
    assert [t.status for t in stored.history] == [S.SCHEDULED]
    assert timed(backend, client) == [(f"d:{record.invocation_id}", pytest.approx(at, abs=1e-6))]
    assert client.llen(key(backend, "queue")) == 0
    assert backend.stats().by_task_and_status == {("tests.task", S.SCHEDULED): 1}
    assert backend.blocked_by(record.invocation_id) is None
    # Not claimable before its time; the claimer learns how long to wait (server milliseconds).
    claims, due_ms = backend._run("claim", RUNNER, 1, LEASE, 60, 0)
    assert claims == [] and 0 < due_ms <= AHEAD * 1000
    # A blocked claim returns with it at its time, well before a blocking round's end.
    [claim] = backend.claim(RUNNER, 1, LEASE, 5.0)
    assert claim.invocation_id == record.invocation_id and claim.attempt == 1
    started = running_since(backend, record.invocation_id)
    assert at <= started < at + MAX_BLOCK_SECONDS / 2
    assert [t.status for t in get(backend, record.invocation_id).history] == [
        S.SCHEDULED,
        S.RUNNING,
    ]
    assert timed(backend, client) == []
    assert backend.stats().by_task_and_status == {("tests.task", S.RUNNING): 1}


def test_a_blocked_claimer_is_woken_to_wait_for_an_earlier_delayed_record(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    claimer, claimed = blocked_claimer(backend, client)
    at = time.time() + AHEAD
    record = new_record(scheduled_for=at)
    backend.register(record)
    # Never handed over to the runner in line: it waits on timed.
    assert get(backend, record.invocation_id).status is S.SCHEDULED
    assert client.llen(key(backend, f"inbox:{RUNNER}")) == 0
    claimer.join(WAIT)
    assert [c.invocation_id for c in claimed] == [record.invocation_id]
    # Woken by register, the claimer waited for the due time, not for its blocking round.
    started = running_since(backend, record.invocation_id)
    assert at <= started < at + MAX_BLOCK_SECONDS / 2


def test_a_scheduled_record_is_never_handed_over_and_wakes_a_runner_only_when_earliest(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    assert backend._run("claim", RUNNER, 1, LEASE, 60, 30.0) == [[], -1]  # in line
    first = new_record(scheduled_for=time.time() + 60)
    backend.register(first)
    assert client.llen(key(backend, f"inbox:{RUNNER}")) == 0
    assert client.llen(key(backend, "wake")) == 1
    later = new_record(scheduled_for=time.time() + 120)
    backend.register(later)
    assert client.llen(key(backend, "wake")) == 1  # not the earliest: nobody to wake
    assert client.llen(key(backend, "queue")) == 0
    # Plain work is still handed over.
    plain = new_record()
    backend.register(plain)
    assert get(backend, plain.invocation_id).status is S.RUNNING


def test_a_claim_taking_what_fell_due_wakes_another_runner_only_for_what_it_left(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    # A runner woken for work the claim that moved it takes would find nothing: one claim
    # script wasted per delayed call while runners wait for due times.
    assert backend._run("claim", "runner-b", 1, LEASE, 60, 30.0) == [[], -1]  # in line
    records = [new_record(scheduled_for=time.time() + 60) for _ in range(3)]
    backend.register_many(records)
    client.delete(key(backend, "wake"))  # the registration's wake-up (the earliest entry)
    timed_key = key(backend, "timed")

    client.zadd(timed_key, {f"d:{records[0].invocation_id}": 1})  # fell due
    claims, _ = backend._run("claim", RUNNER, 1, LEASE, 60, 0)
    assert [c[0].decode() for c in claims] == [records[0].invocation_id]
    assert client.llen(key(backend, "wake")) == 0

    client.zadd(timed_key, {f"d:{r.invocation_id}": 2 for r in records[1:]})  # both due
    claims, _ = backend._run("claim", RUNNER, 1, LEASE, 60, 0)
    assert [c[0].decode() for c in claims] == [records[1].invocation_id]
    assert client.llen(key(backend, "wake")) == 1  # for the one left in the queue
    assert client.lrange(key(backend, "queue"), 0, -1) == [records[2].invocation_id.encode()]


def test_a_delay_of_millennia_waits_without_overflowing_the_score(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    # Scores are whole microseconds: past 2^63 '%d' would overflow to a negative score, due at
    # once and sorted before the lanes' marker (which a claim would then take for an entry).
    far = new_record(scheduled_for=time.time() + 1e13)
    prioritized = new_record(priority=5)
    backend.register_many([far, prioritized])
    assert timed(backend, client) == [("l:", 0.0), (f"d:{far.invocation_id}", 9.0e9)]
    claimed = [c.invocation_id for c in backend.claim(RUNNER, 10, LEASE, 0)]
    assert claimed == [prioritized.invocation_id]
    assert get(backend, far.invocation_id).status is S.SCHEDULED
    assert get(backend, far.invocation_id).scheduled_for == pytest.approx(far.scheduled_for)


def test_an_entry_scored_in_seconds_by_a_layout_3_process_is_rescored_in_order(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    # During an upgrade a process of layout 3 may still score 'timed' in seconds: read as
    # microseconds that would be 1970, due at once, and it would sort before every other entry.
    later, due = (new_record(scheduled_for=time.time() + 60) for _ in range(2))
    backend.register_many([later, due])
    at = time.time() + 3600
    client.zadd(key(backend, "timed"), {f"d:{later.invocation_id}": at})  # as layout 3 did
    client.zadd(key(backend, "timed"), {f"d:{due.invocation_id}": 1_700_000_000_000_000})
    claimed = [c.invocation_id for c in backend.claim(RUNNER, 10, LEASE, 0)]
    assert claimed == [due.invocation_id]
    assert timed(backend, client) == [(f"d:{later.invocation_id}", pytest.approx(at, abs=1e-6))]
    assert get(backend, later.invocation_id).status is S.SCHEDULED


def test_a_scheduled_for_already_passed_registers_ready(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    at = time.time() - 1.0
    record = new_record(scheduled_for=at)
    backend.register(record)
    stored = get(backend, record.invocation_id)
    assert stored.status is S.REGISTERED and stored.scheduled_for == pytest.approx(at, abs=1e-6)
    assert timed(backend, client) == []
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    assert claim.invocation_id == record.invocation_id


def test_a_plain_record_stores_no_scheduled_for(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    record = new_record()
    backend.register(record)
    assert b"scheduled_for" not in client.hgetall(key(backend, "inv:" + record.invocation_id))
    assert get(backend, record.invocation_id).scheduled_for is None


def test_identical_calls_fold_into_a_scheduled_one_until_it_runs(
    backend: RedisBackend, new_record: NewRecord
) -> None:
    first = new_record(reg="k", scheduled_for=time.time() + AHEAD)
    # In one batch with a plain record, and in a later call.
    same_batch = new_record(reg="k")
    results = backend.register_many([first, same_batch])
    assert [(r.invocation_id, r.created) for r in results] == [
        (first.invocation_id, True),
        (first.invocation_id, False),
    ]
    later = backend.register(new_record(reg="k", scheduled_for=time.time() + 60))
    assert (later.invocation_id, later.created, later.existing_arguments) == (
        first.invocation_id,
        False,
        b"args",
    )
    [claim] = backend.claim(RUNNER, 1, LEASE, 5.0)
    assert claim.invocation_id == first.invocation_id
    # Running: the key is free again.
    assert backend.register(new_record(reg="k")).created


def test_a_retry_with_a_delay_waits_on_timed_holding_no_slot(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    record = new_record(reg="r", run="k", max_retries=2)
    backend.register(record)
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    other = new_record(run="k")
    backend.register(other)
    assert backend.claim("runner-b", 1, LEASE, 0) == []  # parked on the key
    assert backend.finish(
        claim.invocation_id, RUNNER, 1, Outcome(OutcomeKind.RETRY, b"e", retry_delay=AHEAD)
    )
    stored = get(backend, record.invocation_id)
    retried_at = float(stored.history[-1].timestamp)
    assert stored.status is S.RETRY and stored.num_retries == 1
    assert timed(backend, client) == [
        (f"d:{record.invocation_id}", pytest.approx(retried_at + AHEAD, abs=1e-5))
    ]
    # Its slot went to the parked one; its registration key is taken back.
    assert client.smembers(key(backend, "slots:k")) == {other.invocation_id.encode()}
    assert not backend.register(new_record(reg="r")).created
    [handed] = backend.claim("runner-b", 1, LEASE, 0)
    assert handed.invocation_id == other.invocation_id
    backend.finish(other.invocation_id, "runner-b", 1, DONE)
    # Not claimable before its delay; a blocked claim returns with it at its time.
    assert backend.claim(RUNNER, 1, LEASE, 0) == []
    [again] = backend.claim(RUNNER, 1, LEASE, 5.0)
    assert (again.invocation_id, again.attempt, again.num_retries) == (record.invocation_id, 2, 1)
    started = running_since(backend, record.invocation_id)
    assert retried_at + AHEAD <= started < retried_at + AHEAD + MAX_BLOCK_SECONDS / 2


def test_a_retry_delay_through_finish_and_claim_wakes_a_blocked_claimer(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    record = new_record()
    backend.register(record)
    [claim] = backend.claim("runner-b", 1, LEASE, 0)
    claimer, claimed = blocked_claimer(backend, client)
    done, claims = backend.finish_and_claim(
        claim.invocation_id,
        "runner-b",
        1,
        Outcome(OutcomeKind.RETRY, b"e", retry_delay=AHEAD),
        max_count=1,
        lease_seconds=LEASE,
    )
    assert done and claims == []
    retried_at = float(get(backend, record.invocation_id).history[-1].timestamp)
    claimer.join(WAIT)
    assert [c.invocation_id for c in claimed] == [record.invocation_id]
    # Whichever claimer took it, it did not run early.
    assert retried_at + AHEAD <= float(get(backend, record.invocation_id).history[-1].timestamp)


def test_a_due_scheduled_record_goes_to_the_tail_and_parks_like_a_registered_one(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    holder = new_record(run="k")
    backend.register(holder)
    backend.claim("runner-b", 1, LEASE, 0)
    at = time.time() + AHEAD
    delayed = new_record(run="k", scheduled_for=at)
    backend.register(delayed)
    plain = new_record()
    backend.register(plain)
    wait_until(lambda: time.time() > at + 0.01)
    # Due: moved behind what was queued already; its key is full, so it parks.
    [claim] = backend.claim(RUNNER, 5, LEASE, 0)
    assert claim.invocation_id == plain.invocation_id
    stored = get(backend, delayed.invocation_id)
    assert [t.status for t in stored.history] == [S.SCHEDULED, S.CONCURRENCY_CONTROLLED]
    stats = backend.stats().by_task_and_status
    assert (("tests.task", S.SCHEDULED) in stats) is False
    assert stats[("tests.task", S.CONCURRENCY_CONTROLLED)] == 1


def test_a_batch_mixing_budgets_and_delays_and_rate_and_invocation_entries_on_timed(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    api = Budget("limit api", "api", rate=Rate(1, 60.0))

    def limited_record(priority: int, **fields: Any) -> InvocationRecord:
        return replace(
            new_record(**fields), plan=ConcurrencyPlan(budgets=(api,)), priority=priority
        )

    at = time.time() + AHEAD
    plain = new_record()
    limited = [limited_record(i) for i in (0, 1)]
    delayed = limited_record(2, scheduled_for=at)
    backend.register_many([plain, *limited, delayed])
    stored = client.hgetall(key(backend, "inv:" + delayed.invocation_id))
    assert stored[b"s"] == b"scheduled" and stored[b"priority"] == b"2"
    assert stored[b"budgets"] and stored[b"seq"] == b"3"
    assert b"scheduled_for" not in client.hgetall(key(backend, "inv:" + plain.invocation_id))
    # The rate admits one (the higher priority is claimed first); the other waits on
    # 'b:limit api', next to the delayed 'i:' entry.
    claimed = [c.invocation_id for c in backend.claim(RUNNER, 10, LEASE, 0)]
    assert claimed == [limited[1].invocation_id, plain.invocation_id]
    assert [member for member, _ in timed(backend, client)] == [
        f"i:{delayed.invocation_id}",
        "b:limit api",
    ]
    # Due, the delayed one is claimed like a registered one: the rate refuses it, it waits on
    # the budget by its priority, ahead of the earlier waiter.
    wait_until(lambda: time.time() > at + 0.01)
    assert backend.claim(RUNNER, 10, LEASE, 0) == []
    assert client.zrange(key(backend, "bw:limit api"), 0, -1) == [
        delayed.invocation_id.encode(),
        limited[0].invocation_id.encode(),
    ]
    history = get(backend, delayed.invocation_id).history
    assert [t.status for t in history] == [S.SCHEDULED, S.CONCURRENCY_CONTROLLED]
    assert [member for member, _ in timed(backend, client)] == ["b:limit api"]


def test_purge_deletes_scheduled_records_and_their_timed_entries(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    record = new_record(reg="k", scheduled_for=time.time() + 60)
    backend.register(record)
    backend.purge()
    assert backend.get(record.invocation_id) is None
    assert timed(backend, client) == []
    assert backend.register(new_record(reg="k")).created


def commands(client: redis.Redis) -> dict[str, int]:
    return {k: v["calls"] for k, v in client.info("commandstats").items()}


def test_plain_records_and_retries_without_delay_pay_nothing_for_timed_invocations(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    record = new_record(reg="k", max_retries=1)
    client.config_resetstat()
    backend.register(record)
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    backend.finish(claim.invocation_id, RUNNER, 1, Outcome(OutcomeKind.RETRY, b"e"))
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    backend.finish(claim.invocation_id, RUNNER, 2, DONE)
    calls = commands(client)
    # The exact calls of this path before timed invocations existed (three scripts' worth).
    assert "cmdstat_zrank" not in calls
    assert calls["cmdstat_xadd"] == 1  # the task's index
    assert calls["cmdstat_zadd"] == 2 + 1  # two leases; expiry bucket
    assert calls["cmdstat_rpush"] == 3  # queued at registration and at the retry; expiry
    assert calls["cmdstat_zrange"] == 2  # move_due's one look per claim
    assert calls["cmdstat_time"] == 4  # one per claim/finish script; none in register
