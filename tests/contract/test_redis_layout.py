"""Redis only: what the layout keeps per invocation (one hash; a done list only when waited on)."""

from __future__ import annotations

import threading
import time

import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend
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
    stored = backend.get(record.invocation_id)
    assert stored is not None
    assert [(t.status, t.runner_id) for t in stored.history] == [
        (S.REGISTERED, None),
        (S.RUNNING, "r"),
        (S.SUCCESS, "r"),
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
