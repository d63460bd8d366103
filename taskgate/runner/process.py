"""ProcessRunner: worker processes, each importing the app by its module path.

The parent only supervises: it starts ``processes`` workers (``python -m taskgate.runner.worker``,
fresh interpreters that import just the app's module, so nothing is inherited by fork and the
parent's main script is not re-run; the settings travel on their stdin, never on their command
line), restarts any that dies, and on stop sends each a SIGTERM (a graceful stop) and waits; a
second stop request sends SIGUSR1 (stop at once, leases recover the rest). One thread
per worker blocks until the worker exits or stops renewing its leases (then it kills the worker
before those leases expire, see :mod:`taskgate.runner.lease_watch`) and wakes the supervisor,
which otherwise sleeps on a socket: nothing polls. A worker whose parent dies stops by itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from taskgate.backoff import Backoff
from taskgate.errors import BackendError, ConfigError, TaskgateError
from taskgate.locate import SPAWNED_MAIN, locate_app
from taskgate.logfields import log_fields
from taskgate.logformat import LOG_FORMAT_ENV, format_in_use
from taskgate.runner.base import EXIT_BACKEND_FATAL, EXIT_CONFIG, Runner
from taskgate.runner.handshake import LOG_LEVEL_ENV, WorkerConfig
from taskgate.runner.killed_bodies import report_killed
from taskgate.runner.lease_watch import LeaseWatch

if TYPE_CHECKING:
    from taskgate.app import App

logger = logging.getLogger(__name__)

DEFAULT_THREADS_PER_PROCESS = 1
# Extra time, beyond the grace period, for a worker to hand back its work and exit.
EXIT_MARGIN_SECONDS = 5.0


class ProcessRunner(Runner):
    """Runs ``processes`` worker processes of ``threads`` threads each (defaults: CPUs, 1).

    Args:
        app: The app; workers import it again by ``app_spec``.
        app_spec: ``module:attr`` of the app; found among imported modules when omitted.

    Raises:
        ConfigError: the backend cannot be shared by processes (``memory://``), or the app is
            not importable by module path.
    """

    def __init__(self, app: App, app_spec: str | None = None) -> None:
        super().__init__(app)
        if not app.backend.supports_processes:
            raise ConfigError(
                f"ProcessRunner cannot use the {app.conf.backend_display} backend: its data lives "
                "in one process's memory, which worker processes cannot share. Use ThreadRunner, "
                "or a backend that processes share (sqlite:///path.db or redis://host:port/db)"
            )
        self.app_spec = app_spec or locate_app(app)
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        self._worker_ids: dict[int, str] = {}  # slot -> runner id of the worker running there
        # slot -> what its watcher saw when the worker exited: interrupted runs not stopped
        self._exited: dict[int, dict[tuple[str, int], tuple[str, float]]] = {}
        self._started = 0

    @property
    def processes(self) -> int:
        """Worker processes (setting ``processes``), read when the runner starts."""
        return self.app.conf.processes

    @property
    def threads(self) -> int:
        """Threads per worker process (setting ``threads``, default 1)."""
        return self.app.conf.threads or DEFAULT_THREADS_PER_PROCESS

    def _run(self) -> None:
        try:
            for slot in range(self.processes):
                self._start_worker(slot)
            self._supervise()
        finally:
            self._stop_workers()
            # A worker killed for a stuck interrupted body while the runner was stopping: its
            # runs are reported as a timeout or cancel, not left to lease recovery (a re-run).
            for slot, interrupted in list(self._exited.items()):
                if interrupted and slot in self._worker_ids:
                    self._take_back(slot)

    def _command(self) -> list[str]:
        """The worker's command line: nothing secret (any local user can read it)."""
        command = [sys.executable, "-m", "taskgate.runner.worker", self.app_spec, self.app.app_id]
        if self.app_spec.startswith(f"{SPAWNED_MAIN}:"):
            command.append(os.path.abspath(sys.modules["__main__"].__file__ or ""))
        return command

    def _config(self, slot: int, report_fd: int) -> WorkerConfig:
        """What the worker reads on its stdin: the settings (with the backend's password)."""
        settings = dataclasses.asdict(self.app.conf)
        settings.update(
            backend=self.app.conf.backend_url, runner_cls="ThreadRunner", threads=self.threads
        )
        return WorkerConfig(
            settings, self._worker_ids[slot], slot, self.runner_id, report_fd, list(sys.argv)
        )

    def _start_worker(self, slot: int) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), *sys.path]))}
        env.setdefault(LOG_LEVEL_ENV, logging.getLevelName(_effective_level()))
        log_format = format_in_use()  # the supervisor's, when a program chose it (the CLI)
        if log_format is not None:
            env[LOG_FORMAT_ENV] = log_format
        self._started += 1
        self._worker_ids[slot] = f"{self.runner_id}-w{self._started}"
        watch = LeaseWatch(self.app.conf.lease_seconds, self.app.conf.shutdown_grace_seconds)
        try:
            process = subprocess.Popen(
                self._command(), stdin=subprocess.PIPE, env=env, pass_fds=(watch.worker_fd,)
            )
        finally:
            watch.close_worker_end()
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: its watcher will see
            process.stdin.write(self._config(slot, watch.worker_fd).to_line())
            process.stdin.flush()
        self._workers[slot] = process
        threading.Thread(
            target=self._watch,
            args=(slot, process, watch),
            name=f"taskgate-watch-{slot}",
            daemon=True,
        ).start()
        logger.info(
            "runner %s started worker process %s (pid %s, %s thread(s))",
            self.runner_id,
            slot,
            process.pid,
            self.threads,
        )

    def _watch(self, slot: int, process: subprocess.Popen[bytes], watch: LeaseWatch) -> None:
        """Wait for the worker to exit; kill it first if it stops renewing its leases, or if an
        interrupted body of it does not stop within the grace period."""
        kill = watch.wait(process)
        if kill and watch.stuck:
            logger.error(
                "runner %s killing worker process %s (pid %s) with SIGKILL: a body interrupted "
                "by a timeout or a cancel request (%s) did not stop within %s s "
                "(shutdown_grace_seconds); its run is reported once the process is gone",
                self.runner_id,
                slot,
                process.pid,
                ", ".join(f"{i} ({kind})" for (i, _), (kind, _) in watch.interrupted.items()),
                self.app.conf.shutdown_grace_seconds,
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        elif kill:  # a stall: it renewed no lease for too long
            logger.error(
                "runner %s killing worker process %s (pid %s) with SIGKILL: it renewed no lease "
                "for %.1f s (lease %s s) and may be running work, a task holding the GIL or a "
                "frozen process; its work is taken back before the leases expire, so a new "
                "attempt never overlaps a body still running there",
                self.runner_id,
                slot,
                process.pid,
                watch.silent_for,
                self.app.conf.lease_seconds,
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()  # SIGKILL: a body that stopped the heartbeat cannot be asked
        process.wait()
        self._exited[slot] = dict(watch.interrupted)
        self._poke()

    def _supervise(self) -> None:
        """Sleep until a stop request or a worker's exit; restart the dead with back-off."""
        backoff = Backoff(0.1, 5.0)
        while not self._stop_requested.is_set():
            self._sleep_until_poked()
            for slot, process in list(self._workers.items()):
                if process.poll() is None or self._stop_requested.is_set():
                    continue
                if slot not in self._exited:  # its watcher pokes once it has looked
                    continue
                if process.returncode == EXIT_CONFIG:
                    raise ConfigError(
                        f"worker process {slot} of app {self.app_spec!r} could not start or open "
                        "its store (its log above says why); fix the app path, the settings or "
                        "the backend and start again"
                    )
                if process.returncode == EXIT_BACKEND_FATAL:
                    raise BackendError(
                        f"worker process {slot} stopped on a backend error that retrying cannot "
                        "fix, such as refused credentials (its log above says which); fix it "
                        "and start again"
                    )
                recovered = self._take_back(slot)
                delay = backoff.next()
                logger.error(
                    "runner %s: worker process %s (pid %s) died with exit code %s; %s; "
                    "restarting it in %.1f s",
                    self.runner_id,
                    slot,
                    process.pid,
                    process.returncode,
                    "leases will recover its work"
                    if recovered is None
                    else f"took back the {len(recovered)} invocation(s) it was running",
                    delay,
                )
                if self._stop_requested.wait(delay):
                    return
                self._start_worker(slot)

    def _take_back(self, slot: int) -> list[str] | None:
        """Recover what the dead worker of ``slot`` was running now, not when its leases expire.

        Its process has exited, so its death is certain (what ``recover_runner`` asks for).
        Returns the ids taken back, or None when the backend failed (leases will recover them).
        """
        worker_id = self._worker_ids.pop(slot)
        interrupted = self._exited.pop(slot, {})
        try:
            # First the runs it was killed for (or died during): reported as it would have.
            finished = report_killed(self.app, worker_id, interrupted) if interrupted else []
            recovered = self.app.backend.recover_runner(worker_id)
        except TaskgateError as exc:
            logger.warning(
                "runner %s could not take back the work of dead worker %s (%s); lease recovery "
                "will",
                self.runner_id,
                worker_id,
                exc,
            )
            return None
        for invocation_id in recovered:
            logger.warning(
                "runner %s took back invocation %s from dead worker %s",
                self.runner_id,
                invocation_id,
                worker_id,
                extra=log_fields(invocation_id, None, None, worker_id),
            )
        return finished + recovered

    def _stop_workers(self) -> None:
        """SIGTERM every worker, then wait; a forced stop sends SIGUSR1 (stop at once: a second
        SIGTERM could merge with a first one the worker has not acted on yet)."""
        alive = [p for p in self._workers.values() if p.poll() is None]
        logger.info("runner %s stopping %s worker process(es)", self.runner_id, len(alive))
        for process in alive:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + self.app.conf.shutdown_grace_seconds + EXIT_MARGIN_SECONDS
        forced = False
        for process in alive:
            while process.poll() is None and time.monotonic() < deadline:
                if self._force_stop.is_set() and not forced:
                    forced = True
                    for other in alive:
                        _signal(other, signal.SIGUSR1)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.1)
                self._handle_signals()  # a second signal forces the stop
            if process.poll() is None:
                logger.error(
                    "runner %s killing worker process %s that did not stop; leases will "
                    "recover its work",
                    self.runner_id,
                    process.pid,
                )
                process.kill()
                process.wait()
        for process in self._workers.values():
            if process.stdin is not None:
                process.stdin.close()
        self._workers.clear()


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it just exited
        process.send_signal(sig)


def _effective_level() -> int:
    return logging.getLogger("taskgate").getEffectiveLevel()
