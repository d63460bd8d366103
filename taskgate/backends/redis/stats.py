"""``RedisBackend.stats()`` and the queue arguments of claims: what the Redis layout says about
queues (lanes, parked waiters, periodic ticks; see ``scripts/lib_core.lua``).

The stats are several reads, not one atomic step: counts for an operator, not for decisions.
"""

from __future__ import annotations

from typing import cast

from taskgate.backends.redis.connection import RedisConnector
from taskgate.backends.redis.replies import as_text, count_field, field_pairs
from taskgate.record import BackendStats
from taskgate.status import InvocationStatus

DEFAULT_QUEUE = "default"


def queues_arg(queues: frozenset[str] | None) -> str:
    """The ``queues`` argument of claim scripts: names joined by commas, '' for every queue
    (queue names never hold commas: the core validates them), and ',' for none (an empty set:
    no name is empty, so the scripts find no queue in it and claim nothing)."""
    if queues is None:
        return ""
    return ",".join(sorted(queues)) if queues else ","


def wake_keys(prefix: str, queues: frozenset[str] | None) -> list[str]:
    """The wake-up lists an idle claimer blocks on: 'wake' when it serves every queue, else
    one ``wake:<queue>`` per queue it serves (a token there is for work it can take)."""
    if queues is None:
        return [prefix + "wake"]
    return [prefix + "wake:" + queue for queue in sorted(queues)]


def read_stats(db: RedisConnector, prefix: str) -> BackendStats:
    """Counts by task and status, parked invocations per key (running keys and budgets), live
    runners, ready invocations per queue and the last tick of each periodic task."""
    client = db.client
    counts = field_pairs(db.command("HGETALL", prefix + "counts"))
    parked_keys = [as_text(k) for k in db.command("SMEMBERS", prefix + "parked_keys")]
    lanes = [as_text(m) for m in db.command("ZRANGE", prefix + "lanes", 0, -1)]
    with db.translated():
        pipe = client.pipeline(transaction=False)
        for key in parked_keys:
            pipe.llen(prefix + "parked:" + key)
            pipe.zcard(prefix + "pz:" + key)
        pipe.llen(prefix + "queue")
        for member in lanes:
            pipe.llen(prefix + "lane:" + member)
        lengths = pipe.execute()
    seconds, micros = db.command("TIME")
    now = int(seconds) + int(micros) / 1_000_000
    with db.translated():
        runners = cast(
            "list[tuple[bytes, float]]",
            client.zrangebyscore(prefix + "runners", f"({now}", "+inf", withscores=True),
        )
    by_task_and_status: dict[tuple[str, InvocationStatus], int] = {}
    for field, value in counts.items():
        task, status = count_field(field)
        if int(value) > 0:
            by_task_and_status[(task, InvocationStatus(status))] = int(value)
    parked: dict[str, int] = {}
    for i, key in enumerate(parked_keys):
        if n := int(lengths[2 * i]) + int(lengths[2 * i + 1]):
            parked[key] = n
    waiting = db.run("budget_waiting")
    for key, n in zip(waiting[::2], waiting[1::2], strict=True):
        if n:
            parked[as_text(key)] = parked.get(as_text(key), 0) + int(n)
    depth: dict[str, int] = {}
    plain = int(lengths[2 * len(parked_keys)])
    if plain:
        depth[DEFAULT_QUEUE] = plain
    for member, n in zip(lanes, lengths[2 * len(parked_keys) + 1 :], strict=True):
        queue = member.partition("\x1f")[2]
        if n:
            depth[queue] = depth.get(queue, 0) + int(n)
    ticks = field_pairs(db.command("HGETALL", prefix + "ticks"))
    return BackendStats(
        by_task_and_status,
        parked,
        {as_text(r): t for r, t in runners},
        depth,
        {as_text(task): float(tick) for task, tick in ticks.items()},
    )
