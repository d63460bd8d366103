"""The ready queues and the running keys of :class:`~taskgate.backends.memory.MemoryBackend`.

Plain data structures without a lock of their own: the backend calls them with its lock held,
so each method is part of one atomic step of the contract (backends/base.py, "Queues and
priorities"). Both keep their invocations in priority lanes: one deque per priority, taken
highest priority first; an entry put first in line goes to the head of its own lane, so it goes
before the others of its priority but never before a higher priority. Removal (a cancel) is
O(length of one lane), which only a cancel pays.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable


class Lanes:
    """Ids in priority lanes: highest priority first, then lane order."""

    __slots__ = ("_lanes", "_priority", "size")

    def __init__(self) -> None:
        self._lanes: dict[int, deque[str]] = {}
        self._priority: dict[str, int] = {}
        self.size = 0

    def push(self, invocation_id: str, priority: int, *, first: bool = False) -> None:
        """Add ``invocation_id`` at the tail of its lane (``first``: at its head)."""
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = deque()
        if first:
            lane.appendleft(invocation_id)
        else:
            lane.append(invocation_id)
        self._priority[invocation_id] = priority
        self.size += 1

    def head(self) -> tuple[int, str] | None:
        """``(priority, id)`` of the entry :meth:`pop` would take, or None when empty."""
        if not self._lanes:
            return None
        priority = max(self._lanes)
        return priority, self._lanes[priority][0]

    def pop(self) -> str:
        """Take the head entry (the caller checked that there is one)."""
        priority = max(self._lanes)
        lane = self._lanes[priority]
        invocation_id = lane.popleft()
        if not lane:
            del self._lanes[priority]
        del self._priority[invocation_id]
        self.size -= 1
        return invocation_id

    def remove(self, invocation_id: str) -> bool:
        """Take ``invocation_id`` out wherever it is; False when it is not here."""
        priority = self._priority.pop(invocation_id, None)
        if priority is None:
            return False
        lane = self._lanes[priority]
        lane.remove(invocation_id)
        if not lane:
            del self._lanes[priority]
        self.size -= 1
        return True

    def __contains__(self, invocation_id: object) -> bool:
        return invocation_id in self._priority


PLAIN_QUEUE = "default"
"""The queue of a call without a queue option; with priority 0, the plain lane."""


class ReadyQueues:
    """The ready invocations of every queue, each queue in priority lanes.

    Across queues the highest priority at a head goes first, ties in the order the entries
    became ready (an entry put first in line counts as older than every other).

    The plain case costs what one deque did: while every ready entry is of queue "default" at
    priority 0, they are kept in one deque (``_plain``, head first) without lanes or ready
    order; the first entry of another queue or priority moves them into the lanes (in the same
    order, older than anything that comes after), and once the lanes are empty the plain deque
    is used again.
    """

    def __init__(self) -> None:
        self._plain: deque[str] = deque()  # used only while _queues is empty
        self._queues: dict[str, Lanes] = {}
        self._where: dict[str, str] = {}
        self._order: dict[str, int] = {}  # when it became ready: ties across queues
        self._tail = itertools.count()
        self._head = itertools.count(-1, -1)

    def push(self, invocation_id: str, queue: str, priority: int) -> None:
        """Append a newly ready invocation to its queue (tail of its priority)."""
        if not self._queues and not priority and queue == PLAIN_QUEUE:
            # _add_plain in line: the path of every call without options.
            if invocation_id in self._where:
                self.remove(invocation_id)
            self._where[invocation_id] = PLAIN_QUEUE
            self._plain.append(invocation_id)
        else:
            self._add(invocation_id, queue, priority, first=False)

    def push_first(self, entries: Iterable[tuple[str, str, int]]) -> None:
        """Put ``(id, queue, priority)`` entries first in line, the first entry ahead of the
        next (woken waiters longest waiting first; handed-back and recovered work)."""
        for invocation_id, queue, priority in reversed(list(entries)):
            if not self._queues and not priority and queue == PLAIN_QUEUE:
                self._add_plain(invocation_id, first=True)
            else:
                self._add(invocation_id, queue, priority, first=True)

    def _add_plain(self, invocation_id: str, *, first: bool) -> None:
        """Add to the plain deque (the lanes are empty; see the class docstring)."""
        if invocation_id in self._where:  # never twice: the newer place wins
            self.remove(invocation_id)
        self._where[invocation_id] = PLAIN_QUEUE
        if first:
            self._plain.appendleft(invocation_id)
        else:
            self._plain.append(invocation_id)

    def _add(self, invocation_id: str, queue: str, priority: int, *, first: bool) -> None:
        if invocation_id in self._where:  # never twice: the newer place wins
            self.remove(invocation_id)
        if self._plain:
            self._leave_plain()
        lanes = self._queues.get(queue)
        if lanes is None:
            lanes = self._queues[queue] = Lanes()
        lanes.push(invocation_id, priority, first=first)
        self._where[invocation_id] = queue
        self._order[invocation_id] = next(self._head) if first else next(self._tail)

    def _leave_plain(self) -> None:
        """Move the plain deque into the lanes (which are empty): same order, and older than
        every entry added later at a tail (a later first-in-line entry is older still)."""
        lanes = self._queues[PLAIN_QUEUE] = Lanes()
        order = self._order
        tail = self._tail
        for invocation_id in self._plain:
            lanes.push(invocation_id, 0)
            order[invocation_id] = next(tail)
        self._plain.clear()

    def pop(self, queues: frozenset[str] | None) -> str | None:
        """Take the next invocation of ``queues`` (None: of every queue), or None."""
        if not self._queues:
            plain = self._plain
            if not plain or (queues is not None and PLAIN_QUEUE not in queues):
                return None
            invocation_id = plain.popleft()
            del self._where[invocation_id]
            return invocation_id
        best: Lanes | None = None
        if queues is None and len(self._queues) == 1:
            best = next(iter(self._queues.values()))
        else:
            best_key = None
            for name, lanes in self._queues.items():
                if queues is not None and name not in queues:
                    continue
                head = lanes.head()
                assert head is not None, "empty queues are deleted"
                key = (-head[0], self._order[head[1]])
                if best_key is None or key < best_key:
                    best, best_key = lanes, key
        if best is None:
            return None
        invocation_id = best.pop()
        self._forget(invocation_id, best)
        return invocation_id

    def remove(self, invocation_id: str) -> bool:
        """Take ``invocation_id`` out of its queue (a cancel); False when it is not ready."""
        queue = self._where.get(invocation_id)
        if queue is None:
            return False
        if not self._queues:
            self._plain.remove(invocation_id)
            del self._where[invocation_id]
            return True
        lanes = self._queues[queue]
        lanes.remove(invocation_id)
        self._forget(invocation_id, lanes)
        return True

    def _forget(self, invocation_id: str, lanes: Lanes) -> None:
        queue = self._where.pop(invocation_id)
        del self._order[invocation_id]
        if not lanes.size:
            del self._queues[queue]

    def depth(self) -> dict[str, int]:
        """Ready invocations per queue (queues without any left out)."""
        if not self._queues:
            return {PLAIN_QUEUE: len(self._plain)} if self._plain else {}
        return {name: lanes.size for name, lanes in self._queues.items()}

    def __bool__(self) -> bool:
        return bool(self._queues) or bool(self._plain)

    def clear(self) -> None:
        """Forget everything (purge)."""
        self._plain.clear()
        self._queues.clear()
        self._where.clear()
        self._order.clear()


class RunningKeys:
    """Each running key's slot holders and its parked waiters (priority, then park order)."""

    def __init__(self) -> None:
        self.slots: dict[str, set[str]] = {}
        self._parked: dict[str, Lanes] = {}
        self._parked_on: dict[str, str] = {}

    def take(self, key: str, limit: int, invocation_id: str) -> bool:
        """Take a slot of ``key`` (or keep one handed over); False when all are held."""
        holders = self.slots.setdefault(key, set())
        if invocation_id in holders:
            return True
        if len(holders) < limit:
            holders.add(invocation_id)
            return True
        if not holders:
            del self.slots[key]
        return False

    def park(self, key: str, invocation_id: str, priority: int, *, first: bool = False) -> None:
        """Make ``invocation_id`` wait for a slot of ``key`` (``first``: ahead of its
        priority, a handed-back or recovered invocation)."""
        lanes = self._parked.get(key)
        if lanes is None:
            lanes = self._parked[key] = Lanes()
        lanes.push(invocation_id, priority, first=first)
        self._parked_on[invocation_id] = key

    def release(self, key: str, limit: int, invocation_id: str) -> list[str]:
        """Free ``invocation_id``'s slot of ``key`` (if it holds one) and hand every free slot
        to the next parked waiter; returns those waiters, in order."""
        holders = self.slots.get(key, set())
        holders.discard(invocation_id)
        lanes = self._parked.get(key)
        promoted = []
        while lanes is not None and lanes.size and len(holders) < limit:
            waiter = lanes.pop()
            del self._parked_on[waiter]
            holders.add(waiter)
            promoted.append(waiter)
        if lanes is not None and not lanes.size:
            del self._parked[key]
        if holders:
            self.slots[key] = holders
        else:
            self.slots.pop(key, None)
        return promoted

    def holds(self, key: str, invocation_id: str) -> bool:
        """Whether ``invocation_id`` holds (or was handed) a slot of ``key``."""
        return invocation_id in self.slots.get(key, ())

    def unpark(self, invocation_id: str) -> bool:
        """Take a parked waiter out of its key's line (a cancel); False when not parked."""
        key = self._parked_on.pop(invocation_id, None)
        if key is None:
            return False
        lanes = self._parked[key]
        lanes.remove(invocation_id)
        if not lanes.size:
            del self._parked[key]
        return True

    def parked_counts(self) -> dict[str, int]:
        """How many invocations wait on each running key."""
        return {key: lanes.size for key, lanes in self._parked.items() if lanes.size}

    def clear(self) -> None:
        """Forget everything (purge)."""
        self.slots.clear()
        self._parked.clear()
        self._parked_on.clear()
