"""Redis only: what the layout keeps per invocation (one hash; a done list only when waited on)."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend, _script_source
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
    source = _script_source("register").split("-- register:")[0]
    assert client.eval(source + "\nreturn time_text(tonumber(ARGV[1]))", 1, "p:", seconds) == text


def test_times_come_from_the_server_clock_to_the_microsecond(redis_server: RedisServer) -> None:
    backend, client, record = setup(redis_server)
    [claim] = backend.claim("r", 1, LEASE, 0)
    seconds, micros = client.time()
    fields = client.hgetall(backend._prefix + "inv:" + record.invocation_id)
    lease_expires_at = fields[b"lease_expires_at"]
    assert TIME_TEXT.match(lease_expires_at)
    assert abs(float(lease_expires_at) - (seconds + micros / 1e6 + LEASE)) < WAIT
    running = fields[b"history"].split(b"\n")[-1]
    assert json.loads(running)[0] == "running"
    # Both texts are whole microseconds of one server time: exactly LEASE apart, no rounding.
    [started] = re.findall(rb",(\d+\.\d{6}),", running)
    assert in_micros(lease_expires_at) - in_micros(started) == LEASE * 1_000_000
    # The lease and the hand-over line are sorted by those same times.
    assert client.zscore(backend._prefix + "leases", claim.invocation_id) == float(lease_expires_at)
    # Nothing queued: the claim script puts "r" in line, waiting for 5 s.
    assert backend._run("claim", "r", 1, LEASE, 60, 5.0) == [[], -1]
    [(member, until)] = client.zrange(backend._prefix + "idle", 0, -1, withscores=True)
    assert member.startswith(b"r\x1f") and until > seconds
