"""The state of :class:`~taskgate.backends.memory.MemoryBackend` and the steps its operations
share.

Every method here runs with the backend's lock held (the operations of memory.py take it), so
a sequence of these steps is one atomic step of the contract (backends/base.py). Waiting
structures live in memory_queues.py (ready queues, running keys) and memory_budgets.py (budgets
and the timed structure).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from taskgate.backends.base import BackendOptions, log_stale_report
from taskgate.backends.memory_budgets import MemoryBudgets
from taskgate.backends.memory_queues import ReadyQueues, RunningKeys
from taskgate.record import Claim, InvocationRecord, OutcomeKind, RunnerInfo, Transition
from taskgate.status import InvocationStatus, can_transition

logger = logging.getLogger(__name__)


class _S:
    """The statuses as plain class attributes: the hot paths read them, and an Enum member
    costs ~70 ns a lookup on CPython 3.11 (a plain class attribute, ~15)."""

    SCHEDULED = InvocationStatus.SCHEDULED
    REGISTERED = InvocationStatus.REGISTERED
    CONCURRENCY_CONTROLLED = InvocationStatus.CONCURRENCY_CONTROLLED
    CONCURRENCY_CONTROLLED_FINAL = InvocationStatus.CONCURRENCY_CONTROLLED_FINAL
    RUNNING = InvocationStatus.RUNNING
    RETRY = InvocationStatus.RETRY
    SUCCESS = InvocationStatus.SUCCESS
    FAILED = InvocationStatus.FAILED
    CANCELLED = InvocationStatus.CANCELLED


class _K:
    """The outcome kinds as plain class attributes (see :class:`_S`)."""

    SUCCESS = OutcomeKind.SUCCESS
    RETRY = OutcomeKind.RETRY
    FAILED = OutcomeKind.FAILED
    CANCELLED = OutcomeKind.CANCELLED


class MemoryState:
    """The dictionaries and queues of one memory backend, and the lock-held steps on them."""

    options: BackendOptions

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._cancel_asked = threading.Condition(self._lock)
        self._wake_generation = 0
        self._filtered_claimers = 0  # blocked claims naming queues: a wake-up goes to all
        self._records: dict[str, InvocationRecord] = {}
        self._registration_keys: dict[str, str] = {}
        self._keys = RunningKeys()
        self._ready = ReadyQueues()
        self._cancel_requests: dict[str, list[str]] = {}
        self._ticks: dict[str, float] = {}
        self._running: dict[str, None] = {}
        self._expiry: deque[tuple[float, str]] = deque()
        self._final_events: dict[str, threading.Event] = {}
        self._runners: dict[str, float] = {}
        self._runner_infos: dict[str, tuple[float, RunnerInfo]] = {}  # id -> (expiry, info)
        self._budgets = MemoryBudgets()

    # --- steps shared by the operations (lock held) --------------------------------------------

    def _claim_ready(
        self, runner_id: str, max_count: int, lease_seconds: float, queues: frozenset[str] | None
    ) -> list[Claim]:
        claims: list[Claim] = []
        now = time.time()
        if self._budgets.has_timed():
            woken, due = self._budgets.process_due(now)
            self._wake(woken)
            for invocation_id in due:  # status unchanged: a claim makes them RUNNING
                if (due_record := self._records.get(invocation_id)) is not None:
                    self._push_ready(due_record)
        while len(claims) < max_count:
            taken = self._ready.pop(queues)
            if taken is None:
                break
            record = self._records.get(taken)
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
        if self._keys.take(key, record.plan.running_limit, record.invocation_id):
            return True
        if record.plan.drop_when_blocked:
            self._release_registration_key(record)
            self._finalize(record, _S.CONCURRENCY_CONTROLLED_FINAL, now, None)
        else:
            self._transition(record, _S.CONCURRENCY_CONTROLLED, now, None)
            self._keys.park(key, record.invocation_id, record.priority)
        return False

    def _release_slot(self, record: InvocationRecord) -> None:
        """Free the record's slot and hand freed slots to the first parked waiters, in order."""
        key = record.plan.running_key
        if key is None:
            if record.plan.budgets:
                self._wake(self._budgets.release(record, time.time()))
            return
        # Woken waiters go first in line: they have waited longest.
        self._wake(self._keys.release(key, record.plan.running_limit, record.invocation_id))

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
        """Move woken waiters to the front of their ready queues, longest waiting first."""
        if woken:
            records = self._records
            self._ready.push_first(
                (i, records[i].queue, records[i].priority) for i in woken if i in records
            )
            self._notify(len(woken))

    def _push_ready(self, record: InvocationRecord) -> None:
        self._ready.push(record.invocation_id, record.queue, record.priority)
        self._notify(1)

    def _notify(self, count: int) -> None:
        if self._filtered_claimers:
            self._work_ready.notify_all()
        else:
            self._work_ready.notify(count)

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
            self._wake([record.invocation_id])
            return
        self._keys.park(key, record.invocation_id, record.priority, first=True)
        self._release_slot(record)

    def _end_cancelled(self, record: InvocationRecord, now: float, runner: str | None) -> None:
        """A cancel-requested record leaves RUNNING (finish, hand-back or recovery)."""
        self._leave_running(record)
        self._finalize(record, _S.CANCELLED, now, runner)
        self._release_slot(record)
        logger.info(
            "invocation %s of task %s cancelled",
            record.invocation_id,
            record.task_id,
            extra={"invocation_id": record.invocation_id, "task_id": record.task_id},
        )

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
        requests = (
            self._cancel_requests.get(record.runner_id or "") if self._cancel_requests else None
        )
        if requests and record.invocation_id in requests:  # unread: its run is over anyway
            requests.remove(record.invocation_id)
            if not requests:
                del self._cancel_requests[record.runner_id or ""]
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
