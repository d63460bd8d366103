"""Invocation statuses and the state machine that links them, as a table."""

from __future__ import annotations

from enum import StrEnum


class InvocationStatus(StrEnum):
    """Where an invocation is in its life.

    ``SCHEDULED``, ``REGISTERED``, ``CONCURRENCY_CONTROLLED`` and ``RETRY`` have not started
    running (a registration key is held by them); ``RUNNING`` holds a running slot;
    ``SUCCESS``, ``FAILED``, ``CONCURRENCY_CONTROLLED_FINAL`` and ``CANCELLED`` are final.
    """

    SCHEDULED = "scheduled"
    REGISTERED = "registered"
    CONCURRENCY_CONTROLLED = "concurrency_controlled"
    CONCURRENCY_CONTROLLED_FINAL = "concurrency_controlled_final"
    RUNNING = "running"
    RETRY = "retry"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True once the invocation will never change again."""
        return self in FINAL_STATUSES

    @property
    def is_waiting(self) -> bool:
        """True while the invocation has not started running (it may hold a registration key)."""
        return self in WAITING_STATUSES


FINAL_STATUSES = frozenset(
    {
        InvocationStatus.SUCCESS,
        InvocationStatus.FAILED,
        InvocationStatus.CONCURRENCY_CONTROLLED_FINAL,
        InvocationStatus.CANCELLED,
    }
)

WAITING_STATUSES = frozenset(
    {
        InvocationStatus.SCHEDULED,
        InvocationStatus.REGISTERED,
        InvocationStatus.CONCURRENCY_CONTROLLED,
        InvocationStatus.RETRY,
    }
)

_S = InvocationStatus

# Every transition a backend may make. A parked invocation woken by a freed slot goes straight to
# RUNNING when claimed; a running one that is handed back (graceful stop) or recovered after its
# runner died goes back to REGISTERED; a dead runner's work fails once its recoveries run out.
# Any waiting or running invocation can be cancelled (a running one once its body stopped).
ALLOWED_TRANSITIONS: dict[InvocationStatus, frozenset[InvocationStatus]] = {
    # A delayed call waits SCHEDULED until its time, then is claimed like a registered one.
    _S.SCHEDULED: frozenset(
        {_S.RUNNING, _S.CONCURRENCY_CONTROLLED, _S.CONCURRENCY_CONTROLLED_FINAL, _S.CANCELLED}
    ),
    _S.REGISTERED: frozenset(
        {_S.RUNNING, _S.CONCURRENCY_CONTROLLED, _S.CONCURRENCY_CONTROLLED_FINAL, _S.CANCELLED}
    ),
    _S.RETRY: frozenset(
        {_S.RUNNING, _S.CONCURRENCY_CONTROLLED, _S.CONCURRENCY_CONTROLLED_FINAL, _S.CANCELLED}
    ),
    _S.CONCURRENCY_CONTROLLED: frozenset({_S.RUNNING, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.SUCCESS, _S.FAILED, _S.RETRY, _S.REGISTERED, _S.CANCELLED}),
    _S.SUCCESS: frozenset(),
    _S.FAILED: frozenset(),
    _S.CONCURRENCY_CONTROLLED_FINAL: frozenset(),
    _S.CANCELLED: frozenset(),
}


def can_transition(current: InvocationStatus, new: InvocationStatus) -> bool:
    """Whether the state machine allows ``current`` -> ``new``."""
    return new in ALLOWED_TRANSITIONS[current]
