"""The in-process backend: every operation runs under one lock.

Use it for tests and single-process programs; runner processes cannot share it. Runners block
on a condition variable tied to the same lock, and result waiters on a per-invocation event, so
nothing polls.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence

from taskgate.backends.base import Backend, BackendOptions, log_stale_report
from taskgate.backends.memory_budgets import MemoryBudgets
from taskgate.record import (
    BackendStats,
    BlockedBy,
    BudgetUsage,
    Claim,
    InvocationRecord,
    LimitOverride,
    Outcome,
    OutcomeKind,
    RegisterResult,
    Transition,
)
from taskgate.status import InvocationStatus, can_transition

logger = logging.getLogger(__name__)

_S = InvocationStatus


class MemoryBackend(Backend):
    """Dictionaries and deques guarded by one lock; see :class:`Backend` for the contract."""

    supports_processes = False
    reads_cost_round_trips = False

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._wake_generation = 0
        self._records: dict[str, InvocationRecord] = {}
        self._registration_keys: dict[str, str] = {}
        self._slots: dict[str, set[str]] = {}
        self._parked: dict[str, deque[str]] = {}
        self._ready: deque[str] = deque()
        self._running: dict[str, None] = {}
        self._expiry: deque[tuple[float, str]] = deque()
        self._final_events: dict[str, threading.Event] = {}
        self._runners: dict[str, float] = {}
        self._budgets = MemoryBudgets()

    # --- the atomic contract -------------------------------------------------------------------

    def register(self, record: InvocationRecord) -> RegisterResult:
        with self._lock:
            return self._register(record)

    def register_many(self, records: Sequence[InvocationRecord]) -> list[RegisterResult]:
        with self._lock:
            return [self._register(record) for record in records]

    def _register(self, record: InvocationRecord) -> RegisterResult:
        key = record.plan.registration_key
        holder = self._registration_keys.get(key) if key else None
        if holder is not None:
            return RegisterResult(holder, False, self._records[holder].arguments)
        now = time.time()
        scheduled = record.scheduled_for is not None and record.scheduled_for > now
        status = _S.SCHEDULED if scheduled else _S.REGISTERED
        record.status = status
        record.history.append(Transition(status, now, None))
        self._records[record.invocation_id] = record
        if record.plan.budgets:
            self._budgets.register(record)
        if key:
            self._registration_keys[key] = record.invocation_id
        if scheduled:
            assert record.scheduled_for is not None
            self._schedule(record.invocation_id, record.scheduled_for)
        else:
            self._ready.append(record.invocation_id)
            self._work_ready.notify()
        return RegisterResult(record.invocation_id, True)

    def claim(
        self,
        runner_id: str,
        max_count: int,
        lease_seconds: float,
        timeout: float,
        *,
        wait_first: bool = False,  # looking is cheap here: always look first
    ) -> list[Claim]:
        deadline = time.monotonic() + timeout
        with self._lock:
            generation = self._wake_generation
            while generation == self._wake_generation:
                claims = self._claim_ready(runner_id, max_count, lease_seconds)
                remaining = deadline - time.monotonic()
                if claims or remaining <= 0:
                    return claims
                if self._budgets.has_timed():
                    remaining = self._until_due(remaining)
                self._work_ready.wait(remaining)
            return []

    def finish(self, invocation_id: str, runner_id: str, attempt: int, outcome: Outcome) -> bool:
        with self._lock:
            record = self._owned(invocation_id, runner_id, attempt)
            if record is None:
                return False
            now = time.time()
            self._leave_running(record)
            if outcome.kind is OutcomeKind.RETRY:
                record.num_retries += 1
                record.error = outcome.payload
                self._transition(record, _S.RETRY, now, runner_id)
                self._take_registration_key(record)
                if outcome.retry_delay > 0:
                    self._schedule(invocation_id, now + outcome.retry_delay)
                else:
                    self._ready.append(invocation_id)
                    self._work_ready.notify()
            elif outcome.kind is OutcomeKind.SUCCESS:
                record.result = outcome.payload
                self._finalize(record, _S.SUCCESS, now, runner_id)
            else:
                record.error = outcome.payload
                self._finalize(record, _S.FAILED, now, runner_id)
            self._release_slot(record)
        return True

    def release(self, invocation_id: str, runner_id: str, attempt: int) -> bool:
        with self._lock:
            record = self._owned(invocation_id, runner_id, attempt)
            if record is None:
                return False
            self._requeue_first(record, time.time(), runner_id)
        return True

    def renew(
        self, runner_id: str, claims: Sequence[tuple[str, int]], lease_seconds: float
    ) -> list[str]:
        lost = []
        with self._lock:
            expires_at = time.time() + lease_seconds
            self._runners[runner_id] = expires_at
            for invocation_id, attempt in claims:
                record = self._owned(invocation_id, runner_id, attempt, quiet=True)
                if record is None:
                    lost.append(invocation_id)
                else:
                    record.lease_expires_at = expires_at
        return lost

    def recover_leases(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        recovered = []
        with self._lock:
            for invocation_id in list(self._running):
                record = self._records[invocation_id]
                if record.lease_expires_at is None or record.lease_expires_at > now:
                    continue
                recovered.append(invocation_id)
                self._recover_one(record, now)
            self._runners = {r: t for r, t in self._runners.items() if t > now}
        return recovered

    def expire_finals(self, batch: int, now: float | None = None) -> int:
        now = time.time() if now is None else now
        deleted = 0
        with self._lock:
            while deleted < batch and self._expiry and self._expiry[0][0] <= now:
                _, invocation_id = self._expiry.popleft()
                record = self._records.get(invocation_id)
                if record is not None and record.status.is_final:
                    del self._records[invocation_id]
                    if record.plan.budgets:
                        self._budgets.forget(invocation_id)
                    deleted += 1
        return deleted

    def recover_runner(self, runner_id: str) -> list[str]:
        now = time.time()
        recovered = []
        with self._lock:
            for invocation_id in list(self._running):
                record = self._records[invocation_id]
                if record.runner_id == runner_id:
                    recovered.append(invocation_id)
                    self._recover_one(record, now)
            self._runners.pop(runner_id, None)
        return recovered

    def _recover_one(self, record: InvocationRecord, now: float) -> None:
        """Requeue a running invocation first in line, or fail it past ``max_recoveries``."""
        if record.num_recoveries >= self.options.max_recoveries:
            self._leave_running(record)
            record.error = self.options.lost_error
            self._finalize(record, _S.FAILED, now, None)
            self._release_slot(record)
        else:
            record.num_recoveries += 1
            self._requeue_first(record, now, None)

    # --- reads and admin -----------------------------------------------------------------------

    def get(self, invocation_id: str) -> InvocationRecord | None:
        with self._lock:
            record = self._records.get(invocation_id)
            return _snapshot(record) if record else None

    def wait_final(self, invocation_id: str, timeout: float | None) -> InvocationRecord | None:
        with self._lock:
            record = self._records.get(invocation_id)
            if record is None or record.status.is_final:
                return _snapshot(record) if record else None
            event = self._final_events.setdefault(invocation_id, threading.Event())
        event.wait(timeout)
        return self.get(invocation_id)

    def blocked_by(self, invocation_id: str) -> BlockedBy | None:
        with self._lock:
            record = self._records.get(invocation_id)
            if record is None or record.status is not _S.CONCURRENCY_CONTROLLED:
                return None
            if record.plan.budgets:
                return self._budgets.blocked_by(invocation_id, time.time())
            key = record.plan.running_key
            assert key is not None, "a parked invocation always has a running key"
            holders = tuple(h for h in self._slots.get(key, ()) if h != invocation_id)
            return BlockedBy(key, holders)

    def list_invocations(
        self, task_id: str | None, status: InvocationStatus | None, limit: int
    ) -> list[InvocationRecord]:
        found: list[InvocationRecord] = []
        with self._lock:
            for record in reversed(self._records.values()):
                if len(found) >= limit:
                    break
                if (task_id is None or record.task_id == task_id) and (
                    status is None or record.status is status
                ):
                    found.append(_snapshot(record))
        return found

    def find_ids(self, prefix: str, limit: int) -> list[str]:
        with self._lock:
            found = [i for i in self._records if i.startswith(prefix)]
        return sorted(found)[:limit]

    def stats(self) -> BackendStats:
        with self._lock:
            now = time.time()
            counts = Counter((r.task_id, r.status) for r in self._records.values())
            parked = Counter({key: len(q) for key, q in self._parked.items() if q})
            parked.update(self._budgets.parked_counts())
            runners = {r: t for r, t in self._runners.items() if t > now}
        return BackendStats(dict(counts), dict(parked), runners)

    def purge(self) -> None:
        with self._lock:
            events = list(self._final_events.values())
            for container in (
                self._records,
                self._registration_keys,
                self._slots,
                self._parked,
                self._running,
                self._final_events,
                self._runners,
            ):
                container.clear()
            self._ready.clear()
            self._expiry.clear()
            self._budgets.clear()
        for event in events:  # waiters wake and find their invocation gone
            event.set()

    # --- limits --------------------------------------------------------------------------------

    def set_limit_override(self, name: str, override: LimitOverride) -> None:
        with self._lock:
            self._wake(self._budgets.set_override(name, override, time.time()))

    def reset_limit_override(self, name: str) -> None:
        with self._lock:
            self._wake(self._budgets.set_override(name, None, time.time()))

    def limit_overrides(self) -> dict[str, LimitOverride]:
        with self._lock:
            return dict(self._budgets.overrides)

    def budget_usage(self, limit: str | None = None) -> list[BudgetUsage]:
        with self._lock:
            return self._budgets.usage(limit, self._records, time.time())

    def wake_claimers(self) -> None:
        with self._lock:
            self._wake_generation += 1
            self._work_ready.notify_all()

    # --- steps shared by the operations above (lock held) --------------------------------------

    def _claim_ready(self, runner_id: str, max_count: int, lease_seconds: float) -> list[Claim]:
        claims: list[Claim] = []
        now = time.time()
        if self._budgets.has_timed():
            woken, due = self._budgets.process_due(now)
            self._wake(woken)
            self._ready.extend(due)  # status unchanged: the claim below makes them RUNNING
        while self._ready and len(claims) < max_count:
            record = self._records.get(self._ready.popleft())
            if record is None or not self._take_slot(record, now):
                continue
            registration_key = record.plan.registration_key
            if registration_key and self._registration_keys.get(registration_key) == (
                record.invocation_id
            ):
                del self._registration_keys[registration_key]
            record.attempt += 1
            record.runner_id = runner_id
            record.lease_expires_at = now + lease_seconds
            self._transition(record, _S.RUNNING, now, runner_id)
            self._running[record.invocation_id] = None
            claims.append(
                Claim(
                    record.invocation_id,
                    record.task_id,
                    record.arguments,
                    record.attempt,
                    record.num_retries,
                    record.max_retries,
                )
            )
        return claims

    def _take_slot(self, record: InvocationRecord, now: float) -> bool:
        """Take (or keep a handed-over) running slot; park or drop the record when full."""
        key = record.plan.running_key
        if key is None:
            return not record.plan.budgets or self._admit_budgets(record, now)
        holders = self._slots.setdefault(key, set())
        if record.invocation_id in holders:
            return True
        if len(holders) < record.plan.running_limit:
            holders.add(record.invocation_id)
            return True
        if record.plan.drop_when_blocked:
            self._release_registration_key(record)
            self._finalize(record, _S.CONCURRENCY_CONTROLLED_FINAL, now, None)
        else:
            self._transition(record, _S.CONCURRENCY_CONTROLLED, now, None)
            self._parked.setdefault(key, deque()).append(record.invocation_id)
        return False

    def _release_slot(self, record: InvocationRecord) -> None:
        """Free the record's slot and hand freed slots to the first parked waiters, in order."""
        key = record.plan.running_key
        if key is None:
            if record.plan.budgets:
                self._wake(self._budgets.release(record, time.time()))
            return
        holders = self._slots.get(key, set())
        holders.discard(record.invocation_id)
        waiters = self._parked.get(key)
        promoted = []
        while waiters and len(holders) < record.plan.running_limit:
            waiter = waiters.popleft()
            holders.add(waiter)
            promoted.append(waiter)
        # Woken waiters go to the front of the ready queue: they have waited longest.
        self._ready.extendleft(reversed(promoted))
        if waiters is not None and not waiters:
            del self._parked[key]
        if not holders:
            self._slots.pop(key, None)
        for _ in promoted:
            self._work_ready.notify()

    def _admit_budgets(self, record: InvocationRecord, now: float) -> bool:
        """Admit ``record`` on every budget at once, or park it on (or drop it at) the first
        budget that refuses it, taking nothing."""
        refused, by_rate = self._budgets.admit(record, now)
        if refused is None:
            return True
        if record.plan.drop_when_blocked:
            self._release_registration_key(record)
            self._finalize(record, _S.CONCURRENCY_CONTROLLED_FINAL, now, None)
            return False
        if record.status is not _S.CONCURRENCY_CONTROLLED:  # a woken waiter keeps its entry
            self._transition(record, _S.CONCURRENCY_CONTROLLED, now, None)
        self._wake(self._budgets.park(record, refused, by_rate, now))
        return False

    def _wake(self, woken: list[str]) -> None:
        """Move woken waiters to the front of the ready queue, longest waiting first."""
        if woken:
            self._ready.extendleft(reversed(woken))
            for _ in woken:
                self._work_ready.notify()

    def _schedule(self, invocation_id: str, due: float) -> None:
        """Keep an invocation on the timed structure until ``due``; a blocked claimer that
        waits past the new earliest time wakes to wait for it instead."""
        if self._budgets.schedule(invocation_id, due):
            self._work_ready.notify()

    def _until_due(self, remaining: float) -> float:
        """``remaining`` shortened to the next entry of the timed structure."""
        due = self._budgets.next_due()
        return remaining if due is None else max(0.0, min(remaining, due - time.time()))

    def _requeue_first(self, record: InvocationRecord, now: float, runner_id: str | None) -> None:
        """Put a running record back first in line for its key and in the ready queue."""
        self._leave_running(record)
        self._transition(record, _S.REGISTERED, now, runner_id)
        self._take_registration_key(record)
        key = record.plan.running_key
        if key is None:
            if record.plan.budgets:  # freed slots go to waiters, but this record goes first
                self._wake(self._budgets.release(record, now))
            self._ready.appendleft(record.invocation_id)
            self._work_ready.notify()
            return
        self._parked.setdefault(key, deque()).appendleft(record.invocation_id)
        self._release_slot(record)

    def _owned(
        self, invocation_id: str, runner_id: str, attempt: int, *, quiet: bool = False
    ) -> InvocationRecord | None:
        record = self._records.get(invocation_id)
        if (
            record is not None
            and record.status is _S.RUNNING
            and record.runner_id == runner_id
            and record.attempt == attempt
        ):
            return record
        if not quiet:
            log_stale_report(invocation_id, runner_id, attempt)
        return None

    def _leave_running(self, record: InvocationRecord) -> None:
        self._running.pop(record.invocation_id, None)
        record.runner_id = None
        record.lease_expires_at = None

    def _take_registration_key(self, record: InvocationRecord) -> None:
        key = record.plan.registration_key
        if key and key not in self._registration_keys:
            self._registration_keys[key] = record.invocation_id

    def _release_registration_key(self, record: InvocationRecord) -> None:
        key = record.plan.registration_key
        if key and self._registration_keys.get(key) == record.invocation_id:
            del self._registration_keys[key]

    def _transition(
        self, record: InvocationRecord, status: InvocationStatus, now: float, runner: str | None
    ) -> None:
        assert can_transition(record.status, status), f"{record.status} -> {status}"
        record.status = status
        record.history.append(Transition(status, now, runner))

    def _finalize(
        self, record: InvocationRecord, status: InvocationStatus, now: float, runner: str | None
    ) -> None:
        self._transition(record, status, now, runner)
        self._expiry.append((now + self.options.result_ttl_seconds, record.invocation_id))
        event = self._final_events.pop(record.invocation_id, None)
        if event is not None:
            event.set()


def _snapshot(record: InvocationRecord) -> InvocationRecord:
    return dataclasses.replace(record, history=list(record.history))
