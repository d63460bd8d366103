"""What every runner shares: identity, the stop protocol and signal handling."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from taskgate import tracing

if TYPE_CHECKING:
    from taskgate.app import App

logger = logging.getLogger(__name__)

# A worker process that cannot start (bad app path, bad settings) exits with this code
# (EX_CONFIG), so its supervisor stops instead of restarting it forever.
EXIT_CONFIG = 78
# A worker process that stopped on a backend error retrying cannot fix (refused credentials, a
# replaced store) exits with this code (EX_NOPERM), so its supervisor stops too.
EXIT_BACKEND_FATAL = 77


def new_runner_id() -> str:
    """A runner id unique across hosts: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Runner(ABC):
    """Executes invocations of one app until told to stop.

    ``run()`` blocks; ``stop_runner_loop()`` may be called from any thread (or arrives as
    SIGINT/SIGTERM when ``run()`` is on the main thread). Stopping stops claiming at once, lets
    running tasks finish within ``shutdown_grace_seconds`` and hands the rest back to the queue.
    A second stop request (a second signal, or ``force=True``) stops at once and leaves the rest
    to lease recovery.
    """

    stop_signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    """Signals that stop the runner when :meth:`run` is on the main thread."""

    force_signals: tuple[signal.Signals, ...] = ()
    """Among :attr:`stop_signals`, those that force the stop even the first time (a supervisor's
    "stop now": a second SIGTERM sent right after the first may merge with it)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.runner_id: str = new_runner_id()
        self._stop_requested = threading.Event()
        self._force_stop = threading.Event()
        self._running = threading.Event()
        # The runner's own thread sleeps on this socket pair; stop requests and signals poke it.
        self._poke_reader, self._poke_writer = socket.socketpair()
        self._poke_reader.setblocking(False)
        self._poke_writer.setblocking(False)
        self._signals_received: list[int] = []
        self._signals_handled = 0
        self.role: str | None = None
        """What the start line calls this runner; its class name unless set (worker processes)."""
        self.left_running: int | None = None
        """Invocations the last run left ``RUNNING`` (to lease recovery) by a forced stop: 0
        after a graceful stop; None while running, or when this runner cannot tell."""

    @property
    def stop_was_forced(self) -> bool:
        """Whether the last (or current) run was told to stop at once, skipping the grace."""
        return self._force_stop.is_set()

    @property
    def is_running(self) -> bool:
        """True between the start and the end of :meth:`run`."""
        return self._running.is_set()

    def run(self) -> None:
        """Execute invocations until stopped; returns once the runner has wound down.

        Raises:
            RuntimeError: this runner is already running.
            ConfigError: the runner cannot work with the configured backend.
            BackendError: a backend error that retrying cannot fix (refused credentials, a
                replaced store) stopped the runner; raised once it has wound down.
        """
        if self._running.is_set():
            raise RuntimeError(f"runner {self.runner_id} is already running")
        self._stop_requested.clear()
        self._force_stop.clear()
        self._signals_received.clear()
        self._signals_handled = 0
        self.left_running = None
        # Decided per start: an app module (or a worker process) may set up OpenTelemetry
        # after taskgate was imported.
        tracing.refresh()
        self._running.set()
        logger.info(
            "runner %s starting (%s, backend %s)",
            self.runner_id,
            self.role or type(self).__name__,
            self.app.conf.backend_display,
        )
        try:
            with self._stop_on_signals():
                self._run()
        finally:
            self._running.clear()
            logger.info("runner %s stopped", self.runner_id)

    def stop_runner_loop(self, *, force: bool = False) -> None:
        """Ask :meth:`run` to wind down; returns at once, from any thread.

        Args:
            force: Stop at once, without the grace period: invocations still running are left
                to lease recovery (what a second SIGINT/SIGTERM does).
        """
        self._request_stop(force)
        self._wake()

    def _request_stop(self, force: bool) -> None:
        if force:
            self._force_stop.set()
        self._stop_requested.set()

    @abstractmethod
    def _run(self) -> None:
        """The runner's loop; returns after a stop request has been honoured.

        Runs on the thread that called :meth:`run`; it must wait in :meth:`_sleep_until_poked`
        (or call :meth:`_handle_signals` at least every few tenths of a second), since that is
        where signals are acted upon.
        """

    def _wake(self) -> None:
        """Interrupt blocking waits so a stop request is seen at once (extend, keep the poke)."""
        self._poke()

    def _poke(self) -> None:
        """Wake :meth:`_sleep_until_poked`. Takes no lock: safe in a signal handler."""
        # A full buffer means earlier pokes are pending: the sleeper wakes anyway.
        with contextlib.suppress(OSError):
            self._poke_writer.send(b"x")

    def _sleep_until_poked(self, timeout: float | None = None) -> None:
        """Block the runner's own thread until poked (or ``timeout``), then act on signals."""
        ready, _, _ = select.select([self._poke_reader], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                self._poke_reader.recv(4096)
        self._handle_signals()

    def _handle_signals(self) -> None:
        """Act on signals counted by the handler: the first stops, a second forces the stop."""
        while self._signals_handled < len(self._signals_received):
            signum = self._signals_received[self._signals_handled]
            self._signals_handled += 1
            again = self._stop_requested.is_set()
            force = again or signum in self.force_signals
            if force:
                logger.warning(
                    "runner %s received %s%s: stopping now; tasks still running are left "
                    "to lease recovery (within lease_seconds=%s s)",
                    self.runner_id,
                    signal.Signals(signum).name,
                    " again" if again else "",
                    self.app.conf.lease_seconds,
                )
            else:
                logger.info(
                    "runner %s received %s: stopping; waiting up to %s s "
                    "(shutdown_grace_seconds) for running tasks, then handing the rest back; "
                    "press Ctrl-C again (or send a second signal) to stop at once",
                    self.runner_id,
                    signal.Signals(signum).name,
                    self.app.conf.shutdown_grace_seconds,
                )
            self.stop_runner_loop(force=force)

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = self.stop_signals
        previous = {sig: signal.getsignal(sig) for sig in signals}

        def handle(signum: int, _frame: FrameType | None) -> None:
            # A handler runs between two bytecodes of the main thread, maybe inside another
            # handler or while that thread holds a lock (an Event's, a connection pool's, the
            # logging module's): it only records the signal and pokes the runner's loop.
            self._signals_received.append(signum)
            self._poke()

        for sig in signals:
            signal.signal(sig, handle)
        # The kernel may deliver a process-directed signal to any thread: under load, often one
        # other than the main thread (the main thread has a signal pending already, or another
        # thread is on a CPU). CPython then runs the Python handler on the main thread only once
        # that thread runs bytecode again, which one asleep in select() without a timeout
        # never does: the signal would be lost until some other poke. The wakeup fd is written
        # by CPython's C-level handler, on whichever thread took the signal, so the sleeper
        # wakes and the handler runs (a byte per signal; the socket is non-blocking, as
        # set_wakeup_fd requires, and a full buffer means a wake-up is pending anyway).
        previous_fd = signal.set_wakeup_fd(self._poke_writer.fileno(), warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
