"""Redis only: register hands a new invocation straight to a runner blocked waiting for work.

The runner's claim puts it in line (the ``idle`` set) and blocks on its inbox; register claims
the invocation for the longest-waiting runner in the same script and pushes it there. These
tests pin the edges: who is in line, what is never handed over, and that nothing handed over
is lost when a runner stops waiting or dies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from taskgate import App
from taskgate.backends.redis import backend as redis_backend
from taskgate.backends.redis import connection as redis_connection
from taskgate.backends.redis.backend import RedisBackend
from taskgate.record import Claim, InvocationRecord, Outcome, OutcomeKind
from taskgate.runner import thread as thread_runner
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer

NewRecord = Callable[..., InvocationRecord]
RUNNER = "runner-a"
OTHER = "runner-b"
LEASE = 30.0
WAIT = 15.0


@pytest.fixture
def backend(redis_server: RedisServer, make_redis_app: Callable[[], App]) -> RedisBackend:
    backend = make_redis_app().backend
    assert isinstance(backend, RedisBackend)
    return backend


@pytest.fixture
def make_redis_app(redis_server: RedisServer) -> Callable[[], App]:
    counter = iter(range(1_000_000))

    def make() -> App:
        return App(f"hand-over-{time.time_ns()}-{next(counter)}", backend=redis_server.url)

    return make


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def key(backend: RedisBackend, name: str) -> str:
    return backend._prefix + name


def in_line(backend: RedisBackend, client: redis.Redis) -> list[str]:
    return [m.decode().split("\x1f")[0] for m in client.zrange(key(backend, "idle"), 0, -1)]


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a state no event announces (another client's blocking call), bounded."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "state not reached"
        time.sleep(0.002)


def get(backend: RedisBackend, invocation_id: str) -> Any:
    record = backend.get(invocation_id)
    assert record is not None
    return record


def stand_in_line(backend: RedisBackend, runner: str = RUNNER) -> None:
    """What a runner's claim does when nothing is ready: get in line (then it would block)."""
    assert backend._run("claim", runner, 1, LEASE, 60, 30.0) == [[], -1]


def blocked_claimer(
    backend: RedisBackend, client: redis.Redis, runner: str = RUNNER
) -> tuple[threading.Thread, list[Claim]]:
    """A thread blocked in ``claim`` (in line, like an idle runner); its claims land in the list."""
    claimed: list[Claim] = []
    claimer = threading.Thread(target=lambda: claimed.extend(backend.claim(runner, 1, LEASE, WAIT)))
    claimer.start()
    wait_until(lambda: runner in in_line(backend, client))
    return claimer, claimed


def test_a_blocked_runner_gets_a_new_invocation_straight_from_register(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    claimer, claimed = blocked_claimer(backend, client)
    record = new_record()
    backend.register(record)
    # Claimed by register itself: running before the runner even wakes up, nothing queued.
    stored = get(backend, record.invocation_id)
    assert stored.status is S.RUNNING and stored.runner_id == RUNNER and stored.attempt == 1
    assert [(t.status, t.runner_id) for t in stored.history] == [
        (S.REGISTERED, None),
        (S.RUNNING, RUNNER),
    ]
    assert client.llen(key(backend, "queue")) == 0
    claimer.join(WAIT)
    assert [(c.invocation_id, c.attempt, c.arguments) for c in claimed] == [
        (record.invocation_id, 1, b"args")
    ]
    assert in_line(backend, client) == []
    assert backend.stats().by_task_and_status == {("tests.task", S.RUNNING): 1}
    assert backend.finish(record.invocation_id, RUNNER, 1, Outcome(OutcomeKind.SUCCESS, b"ok"))


def test_binary_arguments_survive_the_hand_over(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    claimer, claimed = blocked_claimer(backend, client)
    arguments = bytes(range(256)) * 2  # separators, NULs and all
    backend.register(new_record(arguments=arguments, max_retries=3))
    claimer.join(WAIT)
    assert [(c.arguments, c.max_retries, c.num_retries) for c in claimed] == [(arguments, 3, 0)]


def test_an_invocation_whose_key_has_a_free_slot_is_handed_over_with_the_slot(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    stand_in_line(backend, OTHER)
    first, second = new_record(run="k"), new_record(run="k")
    backend.register(first)
    assert get(backend, first.invocation_id).runner_id == RUNNER
    assert client.smembers(key(backend, "slots:k")) == {first.invocation_id.encode()}
    # The key is at its limit: queued (and parked by the claim), not handed over.
    backend.register(second)
    assert get(backend, second.invocation_id).status is S.REGISTERED
    assert in_line(backend, client) == [OTHER]
    assert backend.claim(OTHER, 1, LEASE, 0) == []
    assert get(backend, second.invocation_id).status is S.CONCURRENCY_CONTROLLED
    # The handed-over run frees the slot like any claim: the parked one is next.
    [handed] = backend.claim(RUNNER, 1, LEASE, 0)
    done, claims = backend.finish_and_claim(
        handed.invocation_id,
        RUNNER,
        1,
        Outcome(OutcomeKind.SUCCESS, b""),
        max_count=1,
        lease_seconds=LEASE,
    )
    assert done and [c.invocation_id for c in claims] == [second.invocation_id]


def test_a_keyed_invocation_is_not_handed_over_past_queued_work(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    holder = new_record(run="busy")
    backend.register(holder)  # nobody in line yet: queued
    assert [c.invocation_id for c in backend.claim(OTHER, 1, LEASE, 0)] == [holder.invocation_id]
    stand_in_line(backend)
    blocked = new_record(run="busy")
    backend.register(blocked)  # its key is at the limit: queued (a token for RUNNER)
    later = new_record(run="free")
    backend.register(later)  # a free slot, but queued work may be ahead of it: queued too
    assert get(backend, later.invocation_id).status is S.REGISTERED
    assert in_line(backend, client) == [RUNNER]
    assert [c.invocation_id for c in backend.claim(RUNNER, 5, LEASE, 0)] == [later.invocation_id]
    assert in_line(backend, client) == []  # a runner that claimed is out of line


def test_recover_runner_takes_back_what_was_handed_over_and_leaves_the_line(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    stand_in_line(backend, OTHER)
    record = new_record(run="k")
    backend.register(record)  # handed to RUNNER with the key's slot; RUNNER's process died
    assert backend.recover_runner(RUNNER) == [record.invocation_id]
    assert in_line(backend, client) == [OTHER]
    assert client.exists(key(backend, f"inbox:{RUNNER}")) == 0
    # First in line for its key again: the freed slot went straight back to it.
    assert client.smembers(key(backend, "slots:k")) == {record.invocation_id.encode()}
    assert [c.invocation_id for c in backend.claim(OTHER, 1, LEASE, 0)] == [record.invocation_id]


def test_a_registration_key_is_free_once_handed_over(
    backend: RedisBackend, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    first = new_record(reg="r")
    assert backend.register(first).created
    second = new_record(reg="r")
    # The first one is running already (R3): the next call registers a new invocation.
    assert backend.register(second).created
    assert get(backend, second.invocation_id).status is S.REGISTERED


def test_the_longest_waiting_runner_is_served_first_one_invocation_each(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend, RUNNER)
    stand_in_line(backend, OTHER)
    first, second, third = new_record(), new_record(), new_record()
    backend.register_many([first, second, third])
    assert get(backend, first.invocation_id).runner_id == RUNNER
    assert get(backend, second.invocation_id).runner_id == OTHER
    assert get(backend, third.invocation_id).status is S.REGISTERED  # nobody left in line
    assert [c.invocation_id for c in backend.claim(RUNNER, 5, LEASE, 0)] == [
        first.invocation_id,
        third.invocation_id,
    ]


def test_a_runner_that_stops_waiting_takes_what_was_handed_over_meanwhile(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    record = new_record()
    backend.register(record)  # pushed to the inbox while the runner was not blocked
    assert [c.invocation_id for c in backend._leave_line(RUNNER, LEASE)] == [record.invocation_id]
    assert in_line(backend, client) == []
    assert client.llen(key(backend, f"inbox:{RUNNER}")) == 0


def test_finish_alone_leaves_the_inbox_to_the_claimer(
    backend: RedisBackend, new_record: NewRecord
) -> None:
    running = new_record()
    backend.register(running)
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    stand_in_line(backend)
    handed = new_record()
    backend.register(handed)
    assert backend.finish(
        claim.invocation_id, RUNNER, claim.attempt, Outcome(OutcomeKind.SUCCESS, b"")
    )
    assert [c.invocation_id for c in backend.claim(RUNNER, 1, LEASE, 0)] == [handed.invocation_id]


def test_an_expired_place_in_line_is_not_served(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    client.zadd(key(backend, "idle"), {f"{RUNNER}\x1f{LEASE}": 1.0})  # long gone
    record = new_record()
    backend.register(record)
    assert get(backend, record.invocation_id).status is S.REGISTERED
    backend.recover()
    assert in_line(backend, client) == []


def test_an_expired_place_ahead_in_line_is_dropped_and_the_next_runner_served(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    client.zadd(key(backend, "idle"), {f"{OTHER}\x1f{LEASE}": 1.0})  # long gone, first in line
    stand_in_line(backend, RUNNER)
    record = new_record()
    backend.register(record)
    assert get(backend, record.invocation_id).runner_id == RUNNER
    assert in_line(backend, client) == []


def test_a_runner_of_other_queues_first_in_line_keeps_its_place(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    # The longest waiting runner serves only queue "mail": a default-queue invocation goes to
    # the next one, and the first stays in line, in both sets.
    assert backend._run("claim", OTHER, 1, LEASE, 60, 30.0, "mail") == [[], -1]
    stand_in_line(backend, RUNNER)
    record = new_record()
    backend.register(record)
    assert get(backend, record.invocation_id).runner_id == RUNNER
    assert in_line(backend, client) == [OTHER]
    assert client.zcard(key(backend, "idleq")) == 1


def test_work_handed_to_a_runner_that_died_is_taken_back_and_fenced(
    backend: RedisBackend, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    record = new_record()
    backend.register(record)  # handed to RUNNER, which dies before reading its inbox
    assert backend.recover(now=time.time() + 10 * LEASE) == [record.invocation_id]
    # Its lease ended unread: undone, not recovered (it never started: no recovery counted).
    stored = get(backend, record.invocation_id)
    assert (stored.status, stored.num_recoveries) == (S.REGISTERED, 0)
    [claim] = backend.claim(OTHER, 1, LEASE, 0)
    assert (claim.invocation_id, claim.attempt) == (record.invocation_id, 1)
    # Had it come back, the dead runner would find nothing of its own in the inbox.
    assert backend.claim(RUNNER, 1, LEASE, 0) == []


def test_purge_clears_the_inboxes_and_keeps_the_line(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    stand_in_line(backend, OTHER)
    backend.register(new_record())  # handed to RUNNER, which leaves the line
    backend.purge()
    # OTHER still waits in BLPOP: the next invocation goes straight to it (issue 11 item 14).
    assert client.keys(backend._prefix + "*") == [key(backend, "idle").encode()]
    record = new_record()
    backend.register(record)
    assert get(backend, record.invocation_id).runner_id == OTHER
    assert [c.invocation_id for c in backend.claim(OTHER, 1, LEASE, 0)] == [record.invocation_id]


def test_wake_up_tokens_only_when_a_runner_waits(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    holder, waiter = new_record(run="k"), new_record(run="k")
    backend.register(holder)  # nobody in line: queued, and no token to lie around
    assert client.llen(key(backend, "wake")) == 0
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    backend.register(waiter)
    assert backend.claim(RUNNER, 1, LEASE, 0) == []  # parked behind the holder
    claimer, claimed = blocked_claimer(backend, client, OTHER)
    # The holder's finish hands its slot to the waiter and queues it: a token wakes OTHER.
    assert backend.finish(claim.invocation_id, RUNNER, 1, Outcome(OutcomeKind.SUCCESS, b""))
    claimer.join(WAIT)
    assert [c.invocation_id for c in claimed] == [waiter.invocation_id]


def running_holder_and_waiter(
    backend: RedisBackend, new_record: NewRecord
) -> tuple[Claim, InvocationRecord]:
    """Two calls of key "k" (limit 1): RUNNER's claim of the first, and the second, parked."""
    holder, waiter = new_record(run="k"), new_record(run="k")
    backend.register_many([holder, waiter])
    [claim] = backend.claim(RUNNER, 1, LEASE, 0)
    assert backend.claim(RUNNER, 1, LEASE, 0) == []  # parked behind the holder
    return claim, waiter


def finish_holder(
    backend: RedisBackend,
    claim: Claim,
    *,
    max_count: int = 1,
    queues: frozenset[str] | None = None,
) -> tuple[bool, list[Claim]]:
    """RUNNER's finish_and_claim of ``claim`` (attempt 1, a success)."""
    return backend.finish_and_claim(
        claim.invocation_id,
        RUNNER,
        1,
        Outcome(OutcomeKind.SUCCESS, b""),
        max_count=max_count,
        lease_seconds=LEASE,
        queues=queues,
    )


def test_a_finish_that_claims_the_waiter_it_freed_wakes_nobody(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    # The slot goes to the parked waiter, which the same finish_and_claim takes: waking OTHER
    # for it would only make OTHER find nothing (a hot key's backlog drained one by one).
    claim, waiter = running_holder_and_waiter(backend, new_record)
    stand_in_line(backend, OTHER)
    done, claims = finish_holder(backend, claim)
    assert done and [c.invocation_id for c in claims] == [waiter.invocation_id]
    assert client.llen(key(backend, "wake")) == 0
    assert in_line(backend, client) == [OTHER]


def test_a_finish_whose_claim_leaves_the_freed_waiter_wakes_a_runner(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    # The finishing runner serves only queue "mail": the waiter it freed (queue "default")
    # stays queued, and a runner that may take it is woken.
    claim, waiter = running_holder_and_waiter(backend, new_record)
    stand_in_line(backend, OTHER)
    done, claims = finish_holder(backend, claim, queues=frozenset({"mail"}))
    assert done and claims == []
    assert client.llen(key(backend, "wake")) == 1
    assert [c.invocation_id for c in backend.claim(OTHER, 1, LEASE, 0)] == [waiter.invocation_id]


@pytest.mark.parametrize(("max_count", "queues"), [(1, None), (2, frozenset({"mail"}))])
def test_a_finish_whose_claim_takes_only_handed_work_wakes_a_runner_for_the_freed_waiter(
    backend: RedisBackend,
    client: redis.Redis,
    new_record: NewRecord,
    max_count: int,
    queues: frozenset[str] | None,
) -> None:
    # RUNNER was handed an invocation while in line; its finish_and_claim takes that one from
    # its inbox and the waiter its finish freed stays queued (max_count reached by the handed
    # one, or the runner serves only "mail"): the runner waiting in line must be woken for it.
    claim, waiter = running_holder_and_waiter(backend, new_record)
    # RUNNER first in line (it stays in line after a claim that found nothing), OTHER after it.
    served = ",".join(sorted(queues)) if queues else ""
    assert backend._run("claim", RUNNER, max_count, LEASE, 60, 5.0, served) == [[], -1]
    assert backend._run("claim", OTHER, 1, LEASE, 60, 30.0, "") == [[], -1]
    handed = new_record(queue="mail") if queues else new_record()
    backend.register(handed)
    assert get(backend, handed.invocation_id).runner_id == RUNNER
    done, claims = finish_holder(backend, claim, max_count=max_count, queues=queues)
    assert done and [c.invocation_id for c in claims] == [handed.invocation_id]
    assert client.llen(key(backend, "wake")) == 1
    assert [c.invocation_id for c in backend.claim(OTHER, 1, LEASE, 0)] == [waiter.invocation_id]


# --- hand-overs to a runner that died in line (issue 11, item 4) -------------------------------
# A live runner pops its inbox within milliseconds; one left unread past a grace (2 s) is taken
# back, as if it had never been handed over: the real run is attempt 1 and the history shows no
# run on the dead runner.


def after_the_grace() -> float:
    """A ``now`` for recover() past the hand-over grace, well inside the lease."""
    return time.time() + 5.0


def test_an_idle_runner_takes_back_what_a_dead_runner_was_handed(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)  # RUNNER waits, then dies: nothing ever reads its inbox
    record = new_record()
    backend.register(record)
    assert get(backend, record.invocation_id).runner_id == RUNNER
    # OTHER waits for work: its next look after the grace claims the invocation (the lease is
    # far off and nothing else recovers: this claim returns it only by taking it back).
    [claim] = backend.claim(OTHER, 1, LEASE, WAIT)
    assert (claim.invocation_id, claim.attempt) == (record.invocation_id, 1)
    stored = get(backend, record.invocation_id)
    assert [(t.status, t.runner_id) for t in stored.history] == [
        (S.REGISTERED, None),
        (S.RUNNING, OTHER),
    ]
    assert client.llen(key(backend, f"inbox:{RUNNER}")) == 0
    assert client.zcard(key(backend, "inboxes")) == 0
    assert backend.stats().by_task_and_status == {("tests.task", S.RUNNING): 1}
    # Had it come back, the dead runner would find nothing of its own in the inbox.
    assert backend.claim(RUNNER, 1, LEASE, 0) == []
    assert backend.finish(record.invocation_id, OTHER, 1, Outcome(OutcomeKind.SUCCESS, b"ok"))


def test_a_hand_over_taken_back_is_as_registered_with_its_slot_and_key(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    record = new_record(reg="r", run="k", max_retries=2)
    backend.register(record)  # handed with the key's slot; its registration key is free (R3)
    assert backend.recover(now=after_the_grace()) == []  # not a lease recovery
    stored = get(backend, record.invocation_id)
    assert (stored.status, stored.attempt, stored.runner_id, stored.lease_expires_at) == (
        S.REGISTERED,
        0,
        None,
        None,
    )
    assert (stored.num_recoveries, stored.num_retries) == (0, 0)
    assert [t.status for t in stored.history] == [S.REGISTERED]
    assert client.zcard(key(backend, "leases")) == 0
    assert in_line(backend, client) == []  # the dead runner is out of the line
    # First in line for its key again, and its registration key is held again.
    assert client.smembers(key(backend, "slots:k")) == {record.invocation_id.encode()}
    folded = backend.register(new_record(reg="r", run="k"))
    assert (folded.invocation_id, folded.created) == (record.invocation_id, False)
    assert backend.stats().by_task_and_status == {("tests.task", S.REGISTERED): 1}
    [claim] = backend.claim(OTHER, 1, LEASE, 0)
    assert (claim.invocation_id, claim.attempt, claim.max_retries) == (record.invocation_id, 1, 2)


def test_a_hand_over_read_by_its_runner_is_never_taken_back(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    claimer, claimed = blocked_claimer(backend, client)
    record = new_record()
    backend.register(record)
    claimer.join(WAIT)
    assert [c.invocation_id for c in claimed] == [record.invocation_id]
    backend.recover(now=after_the_grace())
    stored = get(backend, record.invocation_id)
    assert (stored.status, stored.runner_id, stored.attempt) == (S.RUNNING, RUNNER, 1)
    assert client.zcard(key(backend, "inboxes")) == 0  # the read inbox's date is dropped too
    assert backend.finish(record.invocation_id, RUNNER, 1, Outcome(OutcomeKind.SUCCESS, b"ok"))


def test_a_hand_over_is_left_to_its_runner_for_the_grace(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    record = new_record()
    backend.register(record)
    score = client.zscore(key(backend, "inboxes"), RUNNER)
    assert score is not None
    handed_at = score / 1e6  # scored in microseconds
    backend.recover(now=handed_at + 1.9)  # the runner may be about to pop it
    assert get(backend, record.invocation_id).runner_id == RUNNER
    backend.recover(now=handed_at + 2.1)
    assert get(backend, record.invocation_id).status is S.REGISTERED


def test_recover_runner_forgets_the_inbox_date(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    backend.register(new_record())
    assert client.zcard(key(backend, "inboxes")) == 1
    backend.recover_runner(RUNNER)
    assert client.zcard(key(backend, "inboxes")) == 0


def test_an_idle_runner_gets_the_first_invocation_after_a_purge_at_once(
    make_redis_app: Callable[[], App],
    client: redis.Redis,
    run_runner: Callable[[Any], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blocking waits far longer than the result wait below: the runner must be handed the
    # invocation (or woken), not find it when its wait ends (issue 11, item 14).
    monkeypatch.setattr(thread_runner, "CLAIM_TIMEOUT_SECONDS", 30.0)
    monkeypatch.setattr(redis_backend, "MAX_BLOCK_SECONDS", 30.0)
    monkeypatch.setattr(redis_connection, "SOCKET_TIMEOUT_SECONDS", 60.0)
    app = make_redis_app()
    backend = app.backend
    assert isinstance(backend, RedisBackend)

    @app.task
    def double(x: int) -> int:
        return 2 * x

    with run_runner(app.runner):
        assert double(1).get_result(WAIT) == 2
        wait_until(lambda: in_line(backend, client) != [])
        app.purge()
        assert double(2).get_result(5.0) == 4


def test_recover_runner_undoes_an_unread_hand_over_rather_than_recovering_it(
    backend: RedisBackend, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    record = new_record()
    backend.register(record)  # handed to RUNNER, whose process died before reading it
    assert backend.recover_runner(RUNNER) == [record.invocation_id]
    stored = get(backend, record.invocation_id)
    assert (stored.status, stored.attempt, stored.num_recoveries) == (S.REGISTERED, 0, 0)
    assert [t.status for t in stored.history] == [S.REGISTERED]  # no run that never started


def test_a_heartbeat_takes_back_an_unread_hand_over_after_the_grace(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    stand_in_line(backend)
    record = new_record()
    backend.register(record)  # handed to RUNNER, which never reads it
    # Date the hand-over back past the grace, as if RUNNER had left it unread for 3 s.
    client.zadd(key(backend, "inboxes"), {RUNNER: int((time.time() - 3) * 1e6)})  # microseconds
    backend.renew(OTHER, [], LEASE)  # any runner's heartbeat
    assert get(backend, record.invocation_id).status is S.REGISTERED
    assert [c.invocation_id for c in backend.claim(OTHER, 1, LEASE, 0)] == [record.invocation_id]


def test_a_hand_over_whose_lease_ends_unread_is_taken_out_of_the_inbox_and_undone(
    backend: RedisBackend, client: redis.Redis, new_record: NewRecord
) -> None:
    """A lease shorter than the grace ends before the hand-over counts as unread: the recovery
    takes the item out of the inbox (its runner, alive but late, must never run it beside the
    next attempt, nor after the invocation ended) and undoes the hand-over, as it never ran."""
    short_lease = 0.5
    assert backend._run("claim", RUNNER, 1, short_lease, 60, 30.0) == [[], -1]  # in line
    record = new_record(run="k")
    backend.register(record)  # handed to RUNNER, holding the slot of "k"
    score = client.zscore(key(backend, "inboxes"), RUNNER)
    assert score is not None and get(backend, record.invocation_id).status is S.RUNNING
    assert backend.recover(now=score / 1e6 + 1.0) == [record.invocation_id]  # lease over, grace not
    assert client.llen(key(backend, "inbox:" + RUNNER)) == 0
    stored = get(backend, record.invocation_id)
    assert (stored.status, stored.attempt, stored.num_recoveries) == (S.REGISTERED, 0, 0)
    assert [t.status for t in stored.history] == [S.REGISTERED]  # no run that never started
    # The slot went back with it: another runner claims it as its first attempt.
    [claim] = backend.claim(OTHER, 1, LEASE, 0)
    assert (claim.invocation_id, claim.attempt) == (record.invocation_id, 1)
    assert backend.finish(record.invocation_id, OTHER, 1, Outcome(OutcomeKind.SUCCESS, b"ok"))
