"""The Redis backend: the contract of :class:`Backend` for runners on many hosts.

Each contract operation is one Lua script (``scripts/*.lua``, run on the steps of
``lib_core.lua`` and, where needed, the others: see ``lua.py``; the key layout is documented in
``lib_core.lua``), loaded once: as a function library on Redis 7, else called by SHA. All keys
of an app share the hash tag ``{app_id}``, so every script touches one cluster slot. Time inside
scripts is the Redis server's clock, so leases do not depend on the hosts' clocks agreeing.

Nothing polls: an idle claimer gets in line and blocks in ``BLPOP`` on its own inbox (register
hands it new invocations there, already claimed), the app's wake-up list and a list of its own
(which :meth:`wake_claimers` pushes to). A result waiter marks the record and blocks in
``BLMOVE`` on the invocation's ``done`` list, which the script that makes it final pushes to.
A caller reading results in turn mostly needs neither: see :mod:`taskgate.readahead`.

Queues and priorities: the plain pair (queue "default", priority 0) keeps the one ``queue``
list; any other pair has a list of its own, listed in a zset of non-empty lanes that a claim
looks at once. A runner serving only some queues is handed over only work of those, and blocks
on one wake-up list per queue it serves instead of the app's, so it never eats a wake-up meant
for work it cannot take. A cancel request is pushed to a list per runner, which
:meth:`wait_cancel_requests` blocks on (``BLPOP``, on the calling thread's own connection).

Hot keys: a claim that meets invocations of full keys parks at most a few dozen per script and
says so; the backend then claims again at once. No script holds the server for a hot key's
whole backlog, and the work queued behind it needs no wake-up.

Connections, scripts and error translation live in :mod:`.connection`; turning replies into
records and records into script arguments in :mod:`.replies` and :mod:`.records`; the reads
(records, listings, pages, stats, runners, limits) in :mod:`.reporting`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from taskgate.backends.base import Backend, BackendOptions, log_stale_report
from taskgate.backends.redis.connection import RedisConnector
from taskgate.backends.redis.records import decode_record, encode_override
from taskgate.backends.redis.replies import (
    as_text,
    field_pairs,
    parse_claims,
    parse_handed_claim,
    parse_register_result,
    register_args,
    register_stride,
)
from taskgate.backends.redis.reporting import RedisReads
from taskgate.backends.redis.stats import queues_arg, wake_keys
from taskgate.errors import BackendError
from taskgate.logfields import log_fields
from taskgate.record import (
    CancelResult,
    Claim,
    InvocationRecord,
    LimitOverride,
    Outcome,
    RegisterResult,
    RunnerInfo,
)

logger = logging.getLogger(__name__)


# Blocking commands wait at most this long per call, well inside the socket timeout, so a dead
# connection is noticed and a stop request is seen.
MAX_BLOCK_SECONDS = 2.0
RECOVER_BATCH = 500
# Records registered per script call: a batch holds the server for well under a millisecond.
REGISTER_BATCH = 200
# How long past the end of its blocking wait a waiting runner stays in line for hand-overs
# (its claim call leaves the line at once when it returns; this bounds a dead runner's stay).
IDLE_MARGIN_SECONDS = 1.0
# Redis ends a blocked command's timeout at its next timer tick: up to 1/hz late (100 ms at the
# default hz 10). A claim waiting for a timed entry therefore blocks in Redis until this long
# before the entry is due, and waits out the rest on its own clock (a timer, not a poll).
SERVER_TIMER_SLACK_SECONDS = 0.1
# Cancel requests read per call after the first (one runner rarely has more at once).
CANCELS_BATCH = 100


class RedisBackend(RedisReads, Backend):
    """Invocations as hashes, the queue and parked invocations as lists, slots as sets."""

    def __init__(self, url: str, options: BackendOptions) -> None:
        super().__init__(options)
        self.url = url
        self._prefix = f"taskgate:{{{options.app_id}}}:"
        # This object's own wake-up list: wake_claimers() interrupts only this process's claims.
        self._local_wake_key = self._new_local_wake_key()
        self._wake_generation = 0
        self._local = threading.local()  # per thread: when the next timed wake-up is due
        self._db = RedisConnector(url, self._prefix, on_fork=self._forked)
        self._client = self._db.client
        self._run = self._db.run
        self._command = self._db.command
        self._translated = self._db.translated

    def _new_local_wake_key(self) -> str:
        return f"{self._prefix}wake:{uuid.uuid4().hex}"

    def _forked(self) -> None:
        """In a forked child: a wake-up list of its own, so parent and child never steal each
        other's wake-ups."""
        self._local_wake_key = self._new_local_wake_key()

    # --- the atomic contract -------------------------------------------------------------------

    def register(self, record: InvocationRecord) -> RegisterResult:
        stride = register_stride((record,))
        reply = self._run("register", stride, *register_args(record, stride))
        return parse_register_result(record, reply[0])

    def register_many(self, records: Sequence[InvocationRecord]) -> list[RegisterResult]:
        results: list[RegisterResult] = []
        for start in range(0, len(records), REGISTER_BATCH):
            batch = records[start : start + REGISTER_BATCH]
            stride = register_stride(batch)
            args = [value for record in batch for value in register_args(record, stride)]
            replies = self._run("register", stride, *args)
            results.extend(
                parse_register_result(record, reply)
                for record, reply in zip(batch, replies, strict=True)
            )
        return results

    def claim(
        self,
        runner_id: str,
        max_count: int,
        lease_seconds: float,
        timeout: float,
        *,
        wait_first: bool = False,
        queues: frozenset[str] | None = None,
    ) -> list[Claim]:
        # While blocked, the runner is in line for hand-overs: register claims a new invocation
        # for it and pushes it to the runner's inbox, which this BLPOP watches first.
        deadline = time.monotonic() + timeout
        self._db.check_fork()  # the wake-up key below is per process
        generation = self._wake_generation
        lease = float(lease_seconds)  # the same text in every script: part of the idle entry
        inbox = self._prefix + "inbox:" + runner_id
        served = queues_arg(queues)
        # A runner serving only some queues waits on their own wake-up lists (lib_core.lua).
        wakes = wake_keys(self._prefix, queues)
        look = not wait_first
        while generation == self._wake_generation:
            if look:
                claims, due_ms, more = self._claim_step(
                    runner_id, max_count, lease, timeout + IDLE_MARGIN_SECONDS, served
                )
                if claims:
                    return parse_claims(claims)
                self._note_due(due_ms)
                if more:  # it stopped early (a backlog parked in parts): look again at once
                    continue
            look = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # A timed wake-up (a rate admitting its waiters, a delayed invocation) is due
            # before: look again then.
            due_at: float | None = getattr(self._local, "due_at", None)
            if due_at is not None and due_at - time.monotonic() < remaining:
                remaining = due_at - time.monotonic() - SERVER_TIMER_SLACK_SECONDS
                if remaining <= 0:  # due within Redis's timer slack: sharper on this clock
                    self._local.due_at = None
                    time.sleep(max(0.0, due_at - time.monotonic()))
                    continue
            popped = self._command("BLPOP", inbox, self._local_wake_key, *wakes, _block(remaining))
            if popped is not None and as_text(popped[0]) == inbox:
                return [parse_handed_claim(popped[1])]
        return self._leave_line(runner_id, lease, served)

    def _claim_step(
        self, runner_id: str, max_count: int, lease: float, idle_seconds: float, served: str
    ) -> tuple[list[list[Any]], int, bool]:
        """One claim script (see claim.lua): the raw claims, the milliseconds until the earliest
        timed wake-up, and whether it stopped early (more may be ready: claim again at once)."""
        claims, due_ms, *more = self._run(
            "claim",
            runner_id,
            max_count,
            lease,
            self.options.result_ttl_seconds,
            idle_seconds,
            served,
        )
        return claims, due_ms, bool(more)

    def _note_due(self, due_ms: int) -> None:
        """Remember (per thread) when the earliest timed wake-up a script replied is due."""
        self._local.due_at = None if due_ms < 0 else time.monotonic() + due_ms / 1000

    def _leave_line(self, runner_id: str, lease: float, served: str = "") -> list[Claim]:
        """Take ``runner_id`` out of the line for hand-overs; returns what it was handed meanwhile
        (claimed for it already: the runner runs those like any claim)."""
        reply = self._run("unidle", runner_id, lease, served, self.options.result_ttl_seconds)
        return parse_claims(reply)

    def finish(self, invocation_id: str, runner_id: str, attempt: int, outcome: Outcome) -> bool:
        done, _ = self.finish_and_claim(
            invocation_id, runner_id, attempt, outcome, max_count=0, lease_seconds=0.0
        )
        return done

    def finish_and_claim(
        self,
        invocation_id: str,
        runner_id: str,
        attempt: int,
        outcome: Outcome,
        *,
        max_count: int,
        lease_seconds: float,
        queues: frozenset[str] | None = None,
    ) -> tuple[bool, list[Claim]]:
        done, claims, due_ms, *stopped_early = self._run(
            "finish_and_claim",
            invocation_id,
            runner_id,
            attempt,
            outcome.kind.value,
            outcome.payload,
            self.options.result_ttl_seconds,
            max_count,
            float(lease_seconds),
            # Nothing to claim: in line for hand-overs until the runner's claim() takes over.
            MAX_BLOCK_SECONDS + IDLE_MARGIN_SECONDS if max_count > 0 else 0,
            # A retry that waits goes on the timed structure instead of the queue.
            repr(outcome.retry_delay) if outcome.retry_delay > 0 else "",
            queues_arg(queues),
        )
        if not done:
            log_stale_report(invocation_id, runner_id, attempt)
        # The claim stopped early with nothing for this runner (it parked a hot key's backlog
        # in part): claim on until one claims something or finds the queue done with, so the
        # runner never waits for a wake-up while ready work is left (nobody pushed one).
        more = bool(stopped_early)
        while more and not claims:
            claims, due_ms, more = self._claim_step(
                runner_id,
                max_count,
                float(lease_seconds),
                MAX_BLOCK_SECONDS + IDLE_MARGIN_SECONDS,
                queues_arg(queues),
            )
        if max_count > 0:
            self._note_due(due_ms)
        return bool(done), parse_claims(claims)

    def release(self, invocation_id: str, runner_id: str, attempt: int) -> bool:
        done = self._run(
            "release", invocation_id, runner_id, attempt, self.options.result_ttl_seconds
        )
        if not done:
            log_stale_report(invocation_id, runner_id, attempt)
        return bool(done)

    def cancel(self, invocation_id: str) -> CancelResult:
        reply = self._run("cancel", invocation_id, self.options.result_ttl_seconds)
        result = CancelResult(as_text(reply))
        logger.info(
            "cancel of invocation %s: %s",
            invocation_id,
            result.value,
            extra=log_fields(invocation_id),
        )
        return result

    def wait_cancel_requests(self, runner_id: str, timeout: float) -> list[str]:
        # On this thread's own connection, as claims block on theirs.
        key = self._prefix + "cancels:" + runner_id
        self._db.check_fork()  # the wake-up key below is per process
        stop_key = self._local_wake_key + ":cancels"  # wake_claimers ends the wait (a stop)
        popped = self._command("BLPOP", key, stop_key, _block(timeout))
        if popped is None or as_text(popped[0]) == stop_key:
            return []
        more = self._command("LPOP", key, CANCELS_BATCH) or []
        return [as_text(popped[1]), *(as_text(item) for item in more)]

    def register_tick(self, record: InvocationRecord, tick: float) -> RegisterResult | None:
        stride = register_stride((record,))
        args = register_args(record, stride)
        reply = self._run("register_tick", record.task_id, repr(float(tick)), stride, *args)
        if not reply:
            return None
        return parse_register_result(record, reply[0])

    def renew(
        self, runner_id: str, claims: Sequence[tuple[str, int]], lease_seconds: float
    ) -> list[str]:
        pairs = [value for claim in claims for value in claim]
        return [as_text(item) for item in self._run("renew", runner_id, lease_seconds, *pairs)]

    def recover_leases(self, now: float | None = None) -> list[str]:
        reply = self._run(
            "recover",
            "" if now is None else repr(now),
            self.options.max_recoveries,
            self.options.lost_error,
            self.options.result_ttl_seconds,
            RECOVER_BATCH,
        )
        return [as_text(item) for item in reply]

    def expire_finals(self, batch: int, now: float | None = None) -> int:
        return int(self._run("expire", "" if now is None else repr(now), batch))

    def recover_runner(self, runner_id: str) -> list[str]:
        reply = self._run(
            "recover_runner",
            runner_id,
            self.options.max_recoveries,
            self.options.lost_error,
            self.options.result_ttl_seconds,
        )
        return [as_text(item) for item in reply]

    # --- reads and admin -----------------------------------------------------------------------

    def wait_final(self, invocation_id: str, timeout: float | None) -> InvocationRecord | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        done_key = self._prefix + "done:" + invocation_id
        while True:
            fields = field_pairs(self._run("watch", invocation_id))
            if not fields:
                return None
            record = decode_record(invocation_id, fields, history=False)
            remaining = MAX_BLOCK_SECONDS if deadline is None else deadline - time.monotonic()
            if record.status.is_final or remaining <= 0:
                return record
            # Moving the token to the same list leaves it there for every other waiter.
            self._command("BLMOVE", done_key, done_key, "LEFT", "RIGHT", _block(remaining))

    def announce_runner(self, info: RunnerInfo, ttl_seconds: float) -> None:
        self._run("announce", info.runner_id, info.to_json(), repr(float(ttl_seconds)))

    def forget_runner(self, runner_id: str) -> None:
        super().forget_runner(runner_id)  # out of the live runners
        self._run("announce", runner_id, "", "0")

    def set_limit_override(self, name: str, override: LimitOverride) -> None:
        self._run("set_limit_override", name, encode_override(override))

    def reset_limit_override(self, name: str) -> None:
        self._run("reset_limit_override", name)

    def purge(self) -> None:
        self._run("purge")

    def wake_claimers(self) -> None:
        self._db.check_fork()
        self._wake_generation += 1
        with contextlib.suppress(BackendError), self._translated():
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(self._local_wake_key, "1")
            pipe.expire(self._local_wake_key, 10)
            pipe.rpush(self._local_wake_key + ":cancels", "1")
            pipe.expire(self._local_wake_key + ":cancels", 10)
            pipe.execute()

    def close(self) -> None:
        self._db.close()


def _block(remaining: float) -> float:
    """A blocking command's timeout for ``remaining`` seconds of wait.

    Redis truncates these timeouts to whole milliseconds, and 0 means "block forever". It
    parses "0.001" as a long double a hair under 0.001, which truncates to 0 too: never send
    less than two milliseconds.
    """
    return max(0.002, min(remaining, MAX_BLOCK_SECONDS))
