"""Exponential back-off for waits that cannot block on a notification."""

from __future__ import annotations


class Backoff:
    """Delays that start at ``initial`` and double up to ``maximum``; ``reset`` starts over.

    Used where no wake-up exists (another process's commit to SQLite, a store coming back), so
    the first checks come quickly while work flows and an idle wait costs little.
    """

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._current = initial

    def next(self) -> float:
        """The delay to wait now; the following one is twice as long, up to the maximum."""
        delay = self._current
        self._current = min(self.maximum, self._current * 2)
        return delay

    def reset(self) -> None:
        """Start again from the initial delay (call it when the awaited thing happened)."""
        self._current = self.initial
