"""Reading results ahead: one backend read answers the next result reads of this process.

A caller that fans out many calls and then reads each result in turn would pay one backend
round trip per result. When the result it asks for is already final, the results of the calls
it made next very likely are too: :class:`ResultReadAhead` reads them in the same round trip,
and their handles answer from what was read. At the frontier (results not final yet) reading
ahead would only add reads, so it switches itself off there and probes again now and then.

Final records never change (a purge may delete them, and a handle that read its outcome keeps
it), so answering from a read made a moment earlier returns exactly what a fresh read would.
Only outcomes are read ahead: ``status``, ``history`` and the rest of a handle stay fresh reads.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskgate.backends import Backend
    from taskgate.invocation import Invocation
    from taskgate.record import FinalOutcome

MIN_BATCH = 16
MAX_BATCH = 256
# While switched off, one result read in this many probes whether reading ahead pays again.
PROBE_EVERY = 32
# Entries of dropped handles are swept when the table reaches this size, or twice the size it
# had after the last sweep (so sweeping stays O(1) per call).
SWEEP_AT_LEAST = 1024


class ResultReadAhead:
    """The outstanding invocation handles of one app in this process, oldest first.

    A handle is outstanding from its call until its outcome is known here; the handles are held
    weakly, so a call whose result nobody reads costs nothing once its handle is dropped.
    Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Plain weak references, oldest call first: a WeakValueDictionary's callbacks would cost
        # more per call than everything else this class does. Dead ones are skipped and swept.
        self._handles: dict[str, weakref.ref[Invocation[Any]]] = {}
        self._sweep_at = SWEEP_AT_LEAST
        self._batch = MIN_BATCH  # 0: switched off
        self._reads_while_off = 0

    def track(self, handle: Invocation[Any]) -> None:
        """Count ``handle`` among the outstanding ones (called once per call)."""
        with self._lock:
            self._handles[handle.invocation_id] = weakref.ref(handle)
            if len(self._handles) >= self._sweep_at:
                self._handles = {i: ref for i, ref in self._handles.items() if ref() is not None}
                self._sweep_at = max(SWEEP_AT_LEAST, 2 * len(self._handles))

    def forget(self, invocation_id: str) -> None:
        """The outcome of ``invocation_id`` is known: it is no longer outstanding."""
        with self._lock:
            self._handles.pop(invocation_id, None)

    def read(self, handle: Invocation[Any], backend: Backend) -> FinalOutcome | None:
        """``handle``'s final outcome, read together with the next outstanding handles' ones.

        Returns None when ``handle`` is not final yet, or when reading ahead is off or there is
        nothing to read ahead of (the caller then waits as usual). Outcomes found for other
        handles are handed to them (:meth:`Invocation._known_final`).
        """
        batch = self._batch
        if batch == 0:
            self._reads_while_off += 1
            if self._reads_while_off % PROBE_EVERY:
                return None
            batch = MIN_BATCH
        ahead = self._outstanding(batch, besides=handle.invocation_id)
        if not ahead:
            return None
        found = backend.final_outcomes([handle.invocation_id, *ahead])
        mine = found.pop(handle.invocation_id, None)
        with self._lock:
            if mine is not None:
                self._handles.pop(handle.invocation_id, None)
            for invocation_id, outcome in found.items():
                ref = self._handles.pop(invocation_id, None)
                other = ref() if ref is not None else None
                if other is not None:
                    other._known_final(outcome)
        # Grow while everything read was final; off at the frontier; back to small otherwise.
        if mine is None:
            self._batch = 0
        elif len(found) == len(ahead):
            self._batch = min(MAX_BATCH, batch * 2)
        else:
            self._batch = MIN_BATCH
        return mine

    def _outstanding(self, count: int, *, besides: str) -> list[str]:
        """The ids of up to ``count`` live outstanding handles, oldest first (dropping the dead
        ones met on the way)."""
        ids: list[str] = []
        dead: list[str] = []
        with self._lock:
            for invocation_id, ref in self._handles.items():
                if ref() is None:
                    dead.append(invocation_id)
                elif invocation_id != besides:
                    ids.append(invocation_id)
                    if len(ids) == count:
                        break
            for invocation_id in dead:
                del self._handles[invocation_id]
        return ids
