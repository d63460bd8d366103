"""One log line when the backend goes away, one when it is back: not one per retry."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from taskgate.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

# While the backend stays unreachable, a reminder is logged this often.
REMIND_EVERY_SECONDS = 60.0


class Outage:
    """Whether a runner's backend is reachable, shared by its claim loop, reports and heartbeat.

    The first failure is logged at WARNING, then one reminder per ``remind_every`` seconds at
    most, and the first success after that at WARNING with how long the outage lasted. Every
    retry in between is logged at DEBUG only.

    :meth:`succeeded` runs after every backend call of the hot path: while the backend is
    reachable it reads one attribute and takes no lock.
    """

    def __init__(
        self,
        runner_id: str,
        remind_every: float = REMIND_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runner_id = runner_id
        self.remind_every = remind_every
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last_line = 0.0

    @property
    def ongoing(self) -> bool:
        """True between a failure and the next success."""
        return self._since is not None

    def failed(self, exc: BackendUnavailableError, doing: str) -> None:
        """Count a failed call (``doing`` says what for: "claim", "report", "heartbeat")."""
        with self._lock:
            now = self._clock()
            if self._since is None:
                self._since = self._last_line = now
                logger.warning(
                    "runner %s: backend unreachable: %s; retrying with back-off",
                    self.runner_id,
                    exc,
                )
            elif now - self._last_line >= self.remind_every:
                self._last_line = now
                logger.warning(
                    "runner %s: backend still unreachable after %.0f s: %s",
                    self.runner_id,
                    now - self._since,
                    exc,
                )
            else:
                logger.debug("runner %s: %s failed again: %s", self.runner_id, doing, exc)

    def succeeded(self) -> None:
        """Count a successful call: ends an ongoing outage, logging how long it lasted."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:  # another thread saw the backend back first
                return
            lasted, self._since = self._clock() - self._since, None
        logger.warning("runner %s: backend reachable again after %.1f s", self.runner_id, lasted)
