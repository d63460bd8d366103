"""Plain data exchanged between the core and the backends.

The core decides policy once, at call time, and writes it onto the :class:`InvocationRecord`
(registration key, running key, limit, what to do when blocked). Backends only execute that data
atomically; they never look at task options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from taskgate.status import InvocationStatus


class Transition(NamedTuple):
    """One entry of an invocation's history."""

    status: InvocationStatus
    timestamp: float
    runner_id: str | None


@dataclass(frozen=True, slots=True)
class ConcurrencyPlan:
    """What concurrency control needs to know about one invocation, computed by the core.

    Attributes:
        registration_key: While the invocation has not started running, another call with this
            key is folded into it. ``None`` disables registration control.
        running_key: At most ``running_limit`` invocations with this key run at once. ``None``
            disables running control.
        running_limit: Size of the running key's semaphore (>= 1).
        drop_when_blocked: When the running key is full, drop the invocation
            (``CONCURRENCY_CONTROLLED_FINAL``) instead of parking it until a slot frees.
    """

    registration_key: str | None = None
    running_key: str | None = None
    running_limit: int = 1
    drop_when_blocked: bool = False


@dataclass(slots=True)
class InvocationRecord:
    """An invocation as stored by a backend.

    ``attempt`` is the fencing token: it grows every time the invocation is claimed, and a
    ``finish`` or ``renew`` that names an older attempt changes nothing.
    """

    invocation_id: str
    task_id: str
    arguments: bytes
    plan: ConcurrencyPlan
    max_retries: int = 0
    status: InvocationStatus = InvocationStatus.REGISTERED
    attempt: int = 0
    num_retries: int = 0
    num_recoveries: int = 0
    runner_id: str | None = None
    lease_expires_at: float | None = None
    created_at: float = 0.0
    result: bytes | None = None
    error: bytes | None = None
    history: list[Transition] = field(default_factory=list)


class OutcomeKind(StrEnum):
    """How one run of an invocation ended, as decided by the runner."""

    SUCCESS = "success"
    FAILED = "failed"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one run, handed to ``Backend.finish``.

    ``payload`` is the serialized return value for SUCCESS, the serialized exception for FAILED
    and RETRY.
    """

    kind: OutcomeKind
    payload: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """An invocation handed to a runner by ``Backend.claim``; the runner now owns it."""

    invocation_id: str
    task_id: str
    arguments: bytes
    attempt: int
    num_retries: int
    max_retries: int


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """What ``Backend.register`` did.

    Attributes:
        invocation_id: The new invocation's id, or the id of the waiting one it was folded into.
        created: False when the call was folded into a waiting invocation.
        existing_arguments: For a folded call, the serialized arguments of the waiting
            invocation (so the core can compare them); ``None`` when created.
    """

    invocation_id: str
    created: bool
    existing_arguments: bytes | None = None


class BlockedBy(NamedTuple):
    """Why a parked invocation waits: its running scope key and who holds the slots."""

    scope_key: str
    holders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BackendStats:
    """Counts for ``taskgate status``: invocations by task and status, parked ones per key."""

    by_task_and_status: dict[tuple[str, InvocationStatus], int]
    parked_by_key: dict[str, int]
    runners: dict[str, float]
