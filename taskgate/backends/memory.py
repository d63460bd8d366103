"""The in-process backend: every operation runs under one lock.

Use it for tests and single-process programs; runner processes cannot share it. Runners block
on a condition variable tied to the same lock (cancel watchers on another), and result waiters
on a per-invocation event, so nothing polls. The state and the steps the operations share are in
memory_state.py; the ready queues and running keys in memory_queues.py; budgets and the timed
structure in memory_budgets.py.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import threading
import time
from collections import Counter
from collections.abc import Sequence

from taskgate.backends import paging
from taskgate.backends.base import Backend, BackendOptions
from taskgate.backends.described import read_descriptions
from taskgate.backends.memory_state import _K, _S, MemoryState
from taskgate.logfields import log_fields
from taskgate.record import (
    BackendStats,
    BlockedBy,
    BudgetUsage,
    CancelResult,
    Claim,
    InvocationPage,
    InvocationRecord,
    LimitOverride,
    Outcome,
    RegisterResult,
    RunnerInfo,
    Transition,
)
from taskgate.status import InvocationStatus

logger = logging.getLogger(__name__)


class MemoryBackend(MemoryState, Backend):
    """Dictionaries and deques guarded by one lock; see :class:`Backend` for the contract."""

    supports_processes = False
    reads_cost_round_trips = False

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._init_state()

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
        self._order[record.invocation_id] = self._registered
        self._registered += 1
        if record.plan.budgets:
            self._budgets.register(record)
        if key:
            self._registration_keys[key] = record.invocation_id
        if scheduled:
            assert record.scheduled_for is not None
            self._schedule(record.invocation_id, record.scheduled_for)
        else:  # _push_ready, inlined: the path of every call
            self._ready.push(record.invocation_id, record.queue, record.priority)
            if self._filtered_claimers:
                self._work_ready.notify_all()
            else:
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
        queues: frozenset[str] | None = None,
    ) -> list[Claim]:
        deadline = time.monotonic() + timeout
        with self._lock:
            generation = self._wake_generation
            while generation == self._wake_generation:
                claims = self._claim_ready(runner_id, max_count, lease_seconds, queues)
                remaining = deadline - time.monotonic()
                if claims or remaining <= 0:
                    return claims
                if self._budgets.has_timed():
                    remaining = self._until_due(remaining)
                # A claimer of some queues only must not eat a wake-up meant for another queue:
                # while one waits, every wake-up goes to all (see _notify).
                self._filtered_claimers += queues is not None
                try:
                    self._work_ready.wait(remaining)
                finally:
                    self._filtered_claimers -= queues is not None
            return []

    def finish(self, invocation_id: str, runner_id: str, attempt: int, outcome: Outcome) -> bool:
        with self._lock:
            record = self._owned(invocation_id, runner_id, attempt)
            if record is None:
                return False
            now = time.time()
            if record.cancel_requested or outcome.kind is _K.CANCELLED:
                # Whatever the body reported, a cancel requested while it ran wins.
                if outcome.kind is not _K.SUCCESS:
                    record.error = outcome.payload
                self._end_cancelled(record, now, runner_id)
                return True
            self._leave_running(record)
            if outcome.kind is _K.RETRY:
                record.num_retries += 1
                record.error = outcome.payload
                self._transition(record, _S.RETRY, now, runner_id)
                self._take_registration_key(record)
                if outcome.retry_delay > 0:
                    self._schedule(invocation_id, now + outcome.retry_delay)
                else:
                    self._push_ready(record)
            elif outcome.kind is _K.SUCCESS:
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
            if record.cancel_requested:
                self._end_cancelled(record, time.time(), runner_id)
            else:
                self._requeue_first(record, time.time(), runner_id)
        return True

    def cancel(self, invocation_id: str) -> CancelResult:
        with self._lock:
            record = self._records.get(invocation_id)
            if record is None:
                return CancelResult.MISSING
            if record.status.is_final or record.cancel_requested:
                return CancelResult.FINAL
            if record.status is _S.RUNNING:
                assert record.runner_id is not None, "a running invocation has a runner"
                record.cancel_requested = True
                self._cancel_requests.setdefault(record.runner_id, []).append(invocation_id)
                self._cancel_asked.notify_all()
                return CancelResult.REQUESTED
            # Waiting: leave every place it can wait in; capacity handed to it goes on.
            now = time.time()
            self._ready.remove(invocation_id)
            self._keys.unpark(invocation_id)
            self._release_registration_key(record)
            self._wake(self._budgets.cancel(invocation_id, now))
            self._finalize(record, _S.CANCELLED, now, None)
            key = record.plan.running_key
            if key is not None and self._keys.holds(key, invocation_id):
                self._release_slot(record)  # a woken waiter: its slot goes to the next one
            logger.info(
                "invocation %s of task %s cancelled while waiting",
                invocation_id,
                record.task_id,
                extra=log_fields(invocation_id, record.task_id, record.attempt),
            )
            return CancelResult.CANCELLED

    def wait_cancel_requests(self, runner_id: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._lock:
            generation = self._wake_generation  # a stop (wake_claimers) ends this wait too
            while not (requested := self._cancel_requests.pop(runner_id, None)):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or generation != self._wake_generation:
                    return []
                self._cancel_asked.wait(remaining)
            return requested

    def register_tick(self, record: InvocationRecord, tick: float) -> RegisterResult | None:
        with self._lock:
            last = self._ticks.get(record.task_id)
            if last is not None and last >= tick:
                return None
            self._ticks[record.task_id] = tick
            return self._register(record)

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
                    del self._order[invocation_id]
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
            self._runner_infos.pop(runner_id, None)
        return recovered

    def _recover_one(self, record: InvocationRecord, now: float) -> None:
        """Requeue a running invocation first in line, or fail it past ``max_recoveries``
        (a cancel was requested: it ends ``CANCELLED``)."""
        if record.cancel_requested:
            self._end_cancelled(record, now, None)
        elif record.num_recoveries >= self.options.max_recoveries:
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
            holders = tuple(h for h in self._keys.slots.get(key, ()) if h != invocation_id)
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

    def page_invocations(
        self,
        *,
        task_id: str | None = None,
        status: InvocationStatus | None = None,
        id_prefix: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> InvocationPage:
        # No index here: the records in registration order, walked newest first (paging.py).
        # The cursor is the registration number of the last record examined.
        has_prefix = paging.prefix_filter(id_prefix)

        def matches(record: InvocationRecord) -> bool:
            return (
                (task_id is None or record.task_id == task_id)
                and (status is None or record.status is status)
                and has_prefix(record.invocation_id)
            )

        before = paging.SEQUENCE_END
        if cursor is not None:
            before = paging.read_cursor(cursor, paging.sequence)
        with self._lock:
            order = self._order
            # Records are only ever appended to the dict or deleted, so its order is
            # registration order; a number, unlike the cursor's record, survives its expiry.
            older = (r for r in reversed(self._records.values()) if order[r.invocation_id] < before)
            found, last, scanned_all = paging.walk(older, matches, max(1, limit), paging.scan_max())
            records = [_snapshot(record, history=False) for record in found]
            next_cursor = None if last is None else str(order[last.invocation_id])
        return InvocationPage(records, next_cursor, scanned_all)

    def announce_runner(self, info: RunnerInfo, ttl_seconds: float) -> None:
        with self._lock:
            # Stored as JSON, as the other backends store it: a copy (the runner's dicts are
            # not shared with readers), read back as they read it.
            self._runner_infos[info.runner_id] = (time.time() + ttl_seconds, info.to_json())

    def runner_infos(self) -> list[RunnerInfo]:
        with self._lock:
            now = time.time()
            for runner_id in [r for r, (t, _) in self._runner_infos.items() if t <= now]:
                del self._runner_infos[runner_id]
            stored = [text for _, (_, text) in sorted(self._runner_infos.items())]
        return read_descriptions(stored)  # malformed ones skipped and logged

    def forget_runner(self, runner_id: str) -> None:
        with self._lock:
            self._runners.pop(runner_id, None)
            self._runner_infos.pop(runner_id, None)

    def stats(self) -> BackendStats:
        with self._lock:
            now = time.time()
            counts = Counter((r.task_id, r.status) for r in self._records.values())
            parked = Counter(self._keys.parked_counts())
            parked.update(self._budgets.parked_counts())
            runners = {r: t for r, t in self._runners.items() if t > now}
            depth, ticks = self._ready.depth(), dict(self._ticks)
        return BackendStats(dict(counts), dict(parked), runners, depth, ticks)

    def purge(self) -> None:
        with self._lock:
            events = list(self._final_events.values())
            for container in (
                self._records,
                self._order,
                self._registration_keys,
                self._running,
                self._final_events,
                self._runners,
                self._cancel_requests,
                self._ticks,
                self._runner_infos,
            ):
                container.clear()
            self._keys.clear()
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
            self._cancel_asked.notify_all()


# Every field in __init__'s order, read in one C call: dataclasses.replace() copies field by
# field in Python and costs four times as much, on the path of every result wait.
_FIELD_VALUES = operator.attrgetter(*(f.name for f in dataclasses.fields(InvocationRecord)))
assert all(f.init for f in dataclasses.fields(InvocationRecord)), "positional copy needs them"


def _snapshot(record: InvocationRecord, *, history: bool = True) -> InvocationRecord:
    """A copy the caller may keep: later changes to ``record`` do not show in it (without
    its history when ``history`` is False: pages of invocations)."""
    copy = InvocationRecord(*_FIELD_VALUES(record))
    copy.history = list(record.history) if history else []
    return copy
