"""Redis commands per task on the two fixed server paths of a no-op. Prints figures.

bench/redis_cpu.py measures whole runs, whose mix of paths depends on how fast the caller
registers against how fast the workers finish (so on the machine's load). This drives one
backend by hand through one path only, so that the server's work per task is the same in every
run; under ``valgrind --tool=callgrind`` (as ``--binary``, through a wrapper script) the
server's instructions per task are then a load-independent figure (take the difference of two
``--tasks`` counts to drop the start-up):

- ``handover``: the runner waits in line; register hands each invocation to it (its BLPOP is an
  LPOP here), its finish_and_claim finds nothing and puts it back in line.
- ``queue``: a backlog is registered first, then drained by a chain of finish_and_claim.
- ``register``: registrations alone, with no runner waiting (the caller's side of ``queue``:
  what each call costs the server on the path of an end-to-end run's enqueue phase).
- ``limits``: the ``queue`` path for a task with two limits, as bench-compare's two-limit row:
  one shared (1,000 slots and a rate of 1,000,000/s, so its window holds a second of starts)
  and one keyed (2 slots per key, the calls cycling over 100 keys). Nothing ever waits: this
  is what admitting through two budgets and a rate window costs.
- ``limits_idle``: the ``handover`` path for a task with those two limits (bench-compare's
  two-limit row while its runners keep up): the runner waits in line; register hands the call
  over when every budget admits it, else queues it and leaves a wake-up token, and the runner
  claims it; its finish_and_claim finds nothing and puts it back in line.
- ``delayed``: the ``queue`` path for delayed calls (bench-compare's delayed row): each is
  registered 'scheduled' on the timed set, due once all are registered; then the claims move
  the due ones to the queue (at most 256 per claim) and drain them.
- ``hot``: the same with a KEYS task whose calls all share one key (limit 1), as two runners
  meet it: one claims the first call; the other's claim parks the backlog behind it and that
  runner waits in line; each finish of the first hands the key to the next waiter, which its
  own claim takes.

All but ``register`` read the results as the caller's read-ahead does (final_outcomes, 16 at a
time).

    .venv/bin/python bench/redis_paths.py PATH [--tasks 1000] [--binary BINARY]

with PATH one of handover, queue, register, limits, limits_idle, delayed and hot.
"""

from __future__ import annotations

import argparse
import time

import redis

from taskgate import App
from taskgate.backends.redis.backend import RedisBackend
from taskgate.record import Budget, ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind, Rate
from taskgate.testing import RedisServer

DONE = Outcome(OutcomeKind.SUCCESS, b"\x80\x05N.")
WARMUP = 300  # past the compact encodings of the indexes
READ_AHEAD = 16
LEASE = 30.0
LIMIT_KEYS = 100
SHARED = Budget("limit bench-shared", "bench-shared", 1000, Rate(1_000_000, 1.0))


def record(
    number: int,
    running_key: str | None = None,
    budgets: tuple[Budget, ...] = (),
    scheduled_for: float | None = None,
) -> InvocationRecord:
    return InvocationRecord(
        invocation_id=f"i{number:08d}x{time.time_ns()}",
        task_id="bench.keyed_no_op" if running_key else "bench.no_op",
        arguments=b"\x80\x05)}\x94.",
        plan=ConcurrencyPlan(None, running_key, 1, False, budgets),
        max_retries=0,
        scheduled_for=scheduled_for,
    )


def two_limits(number: int) -> tuple[Budget, ...]:
    keyed = Budget(f"limit bench-keyed#key={number % LIMIT_KEYS}", "bench-keyed", 2)
    return tuple(sorted((SHARED, keyed), key=lambda b: b.key))


def drain(backend: RedisBackend) -> None:
    """Claim and finish everything queued; the runner ends up in line."""
    claims = backend.claim("r", 1, LEASE, 0)
    while claims:
        _, claims = backend.finish_and_claim(
            claims[0].invocation_id, "r", 1, DONE, max_count=1, lease_seconds=LEASE
        )


def handover(backend: RedisBackend, client: redis.Redis, tasks: int) -> None:
    ids: list[str] = []
    for number in range(tasks):
        new = record(number)
        backend.register(new)
        ids.append(new.invocation_id)
        item = client.lpop(backend._prefix + "inbox:r")  # what the runner's BLPOP returns
        assert isinstance(item, bytes), "not handed over"
        handed = item.split(b"\x1f")[0].decode()
        backend.finish_and_claim(handed, "r", 1, DONE, max_count=1, lease_seconds=LEASE)
        if len(ids) == READ_AHEAD:
            backend.final_outcomes(ids)
            ids = []


def limits_idle(backend: RedisBackend, client: redis.Redis, tasks: int) -> None:
    ids: list[str] = []
    for number in range(tasks):
        new = record(number, budgets=two_limits(number))
        backend.register(new)
        ids.append(new.invocation_id)
        # What the runner's BLPOP returns: the call itself when register handed it over, else a
        # wake-up token, and the runner claims it.
        item = client.lpop(backend._prefix + "inbox:r")
        if isinstance(item, bytes):
            handed = item.split(b"\x1f")[0].decode()
        else:
            assert client.lpop(backend._prefix + "wake") is not None, "nobody woken"
            [claim] = backend._claim_step("r", 1, LEASE, 60.0, "")[0]
            handed = claim[0].decode()
        backend.finish_and_claim(handed, "r", 1, DONE, max_count=1, lease_seconds=LEASE)
        if len(ids) == READ_AHEAD:
            backend.final_outcomes(ids)
            ids = []


def queue(
    backend: RedisBackend, client: redis.Redis, tasks: int, with_limits: bool = False
) -> None:
    backend._leave_line("r", LEASE)
    records = [
        record(number, budgets=two_limits(number) if with_limits else ()) for number in range(tasks)
    ]
    for new in records:
        backend.register(new)
    drain(backend)
    for start in range(0, tasks, READ_AHEAD):
        backend.final_outcomes([r.invocation_id for r in records[start : start + READ_AHEAD]])


def hot(backend: RedisBackend, client: redis.Redis, tasks: int) -> None:
    backend._leave_line("r", LEASE)
    records = [record(number, "bench.keyed_no_op#key=0") for number in range(tasks)]
    for new in records:
        backend.register(new)
    claims = backend.claim("r", 1, LEASE, 0)
    # The other runner: its claims park the rest (a part each), then it waits in line.
    while True:
        other, _, *more = backend._run("claim", "r2", 1, LEASE, 3600, 60, "")
        assert not other
        if not more:
            break
    while claims:
        _, claims = backend.finish_and_claim(
            claims[0].invocation_id, "r", 1, DONE, max_count=1, lease_seconds=LEASE
        )
    backend._leave_line("r2", LEASE)
    for start in range(0, tasks, READ_AHEAD):
        backend.final_outcomes([r.invocation_id for r in records[start : start + READ_AHEAD]])


def register(backend: RedisBackend, client: redis.Redis, tasks: int) -> None:
    backend._leave_line("r", LEASE)
    for number in range(tasks):
        backend.register(record(number))


def limits(backend: RedisBackend, client: redis.Redis, tasks: int) -> None:
    queue(backend, client, tasks, with_limits=True)


def delayed(backend: RedisBackend, client: redis.Redis, tasks: int) -> None:
    backend._leave_line("r", LEASE)
    # Due a while after the last registration (under callgrind a call takes about a ms).
    due = time.time() + 5.0 + tasks * 0.01
    records = [record(number, scheduled_for=due) for number in range(tasks)]
    for new in records:
        backend.register(new)
    assert client.llen(backend._prefix + "queue") == 0, "registered past their time"
    time.sleep(max(0.0, due - time.time()) + 0.01)
    drain(backend)
    assert backend.get(records[-1].invocation_id).status.value == "success"  # type: ignore[union-attr]
    for start in range(0, tasks, READ_AHEAD):
        backend.final_outcomes([r.invocation_id for r in records[start : start + READ_AHEAD]])


PATHS = {
    "handover": handover,
    "queue": queue,
    "register": register,
    "limits": limits,
    "limits_idle": limits_idle,
    "delayed": delayed,
    "hot": hot,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("path", choices=tuple(PATHS))
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--binary", default=None, help="redis-server (default: taskgate.testing's)")
    args = parser.parse_args()
    with RedisServer(binary=args.binary) as server:
        client = redis.Redis.from_url(server.url)
        backend = App("taskgate-redis-paths", backend=server.url).backend
        assert isinstance(backend, RedisBackend)
        for number in range(WARMUP):
            backend.register(record(number))
        drain(backend)
        client.config_resetstat()
        PATHS[args.path](backend, client, args.tasks)
        stats = client.info("commandstats")
        scripts = sum(
            v["calls"] for k, v in stats.items() if k in ("cmdstat_fcall", "cmdstat_evalsha")
        )
        skip = ("fcall", "evalsha", "config|resetstat", "info", "function|load", "script|load")
        commands = sum(v["calls"] for k, v in stats.items() if k[8:] not in skip)
        print(
            f"{args.path}: {scripts / args.tasks:.2f} scripts and "
            f"{commands / args.tasks:.2f} commands (in scripts or not) per task"
        )
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
