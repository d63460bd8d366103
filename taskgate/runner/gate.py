"""The claim gate: one claimer per runner at a time, its extra claims handed to idle workers."""

from __future__ import annotations

import threading
from collections import deque

from taskgate.record import Claim


class ClaimGate:
    """Coordinates a runner's worker threads so that only one of them claims at a time.

    The worker holding the gate asks the backend for one invocation for itself and one for each
    worker waiting at the gate; :meth:`open` hands the extras to those workers. The store sees
    one claimer per runner instead of a herd, and a batch costs one backend call.

    A gate serves one run of a runner: :meth:`close` ends it for good, so a worker thread left
    over from a stopped run can never take work from the next one.
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._condition = threading.Condition()
        self._taken = False
        self._waiting = 0
        self._handed_out: deque[Claim] = deque()

    def wait_turn(self, leave: threading.Event | None = None) -> Claim | int | None:
        """Block until this worker has something to do.

        Returns a claim handed out by another worker; or, when this worker now holds the gate,
        how many invocations to claim; or None once the runner is stopping, or once ``leave``
        is set (a stand-in whose wait ended; :meth:`wake_all` makes it look).
        """
        with self._condition:
            while not self._stopping.is_set():
                if self._handed_out:  # first: a claim handed out is never left behind
                    return self._handed_out.popleft()
                if leave is not None and leave.is_set():
                    return None
                if not self._taken:
                    self._taken = True
                    return self._waiting + 1
                self._waiting += 1
                self._condition.wait()
                self._waiting -= 1
            return None

    def try_turn(self) -> int | None:
        """Take the gate without waiting, if it is free and no claim waits to be handed out.

        Returns how many invocations to claim, or None (the caller then waits its turn).
        """
        with self._condition:
            if self._taken or self._handed_out or self._stopping.is_set():
                return None
            self._taken = True
            return self._waiting + 1

    def open(self, claims: list[Claim]) -> Claim | None:
        """Release the gate with what was claimed; returns the caller's own claim, if any.

        Claims won in the instant the gate closed stay here: the runner hands them back.
        """
        with self._condition:
            self._taken = False
            if self._stopping.is_set():
                self._handed_out.extend(claims)
                claims = []
            else:
                self._handed_out.extend(claims[1:])
            # Wake one waiting worker per extra claim, and one more to take the gate.
            self._condition.notify(len(claims))
            return claims[0] if claims else None

    def wake_all(self) -> None:
        """Make every waiting worker look again (a stand-in told to leave)."""
        with self._condition:
            self._condition.notify_all()

    def close(self) -> None:
        """Stop handing out turns and wake every waiting worker (they return None)."""
        with self._condition:
            self._stopping.set()
            self._condition.notify_all()
