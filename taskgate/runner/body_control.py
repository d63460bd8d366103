"""What a ThreadRunner adds around each body: interrupts for timeouts and cancel requests.

One object per run of the runner, bundling the registry of running bodies
(:mod:`taskgate.runner.interrupts`), the timeout watchdog (:mod:`taskgate.runner.watchdog`)
and the cancel watcher (:mod:`taskgate.runner.cancel_watch`), so the runner's loop only calls
:meth:`BodyControl.execute` instead of :func:`execute`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskgate.record import Claim, Outcome
from taskgate.runner.cancel_watch import CancelWatch
from taskgate.runner.executor import execute
from taskgate.runner.interrupts import InterruptListener, RunningBodies
from taskgate.runner.watchdog import Watchdog

if TYPE_CHECKING:
    from taskgate.app import App


class BodyControl:
    """Interrupts the runner's bodies on timeouts and cancel requests (start, then stop)."""

    def __init__(self, app: App, runner_id: str, listener: InterruptListener | None) -> None:
        self._app = app
        self._runner_id = runner_id
        self.bodies = RunningBodies(listener)
        self._watchdog = Watchdog(self.bodies, name=f"taskgate-watchdog-{runner_id}")
        self._cancels = CancelWatch(app.backend, runner_id, self.bodies)

    def start(self) -> None:
        """Start the watchdog and the cancel watcher (threads: never from a body's thread)."""
        self._watchdog.start()
        self._cancels.start()

    def stop(self) -> None:
        """Stop interrupting: the cancel watcher and the watchdog end (joined)."""
        self._cancels.stop()
        self._watchdog.stop()

    def execute(self, claim: Claim) -> Outcome:
        """Run ``claim`` here (see :func:`execute`), interruptible while its body runs."""
        try:
            return execute(
                self._app,
                claim,
                bodies=self.bodies,
                watchdog=self._watchdog,
                runner_id=self._runner_id,
            )
        finally:
            # A cancel request that came for this claim after its body ended (or before a body
            # that never started) must not wait for a body forever.
            self.bodies.forget(claim.invocation_id)
