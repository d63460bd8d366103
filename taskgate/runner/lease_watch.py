"""Killing a ProcessRunner worker that stopped renewing its leases, before those leases expire.

A worker whose heartbeat cannot run (a task holding the GIL in one long C call, a process
stopped by a debugger) keeps its claims until their leases expire; lease recovery then runs the
work again while the first body may still be running. The supervisor prevents that overlap:
each worker reports over a pipe whenever everything it holds is covered by a fresh lease, and
the supervisor kills it (SIGKILL: the body cannot be trusted to stop) once no such report came
for :data:`STALL_FRACTION` of the lease, before any of those leases can expire.

The protocol, one line per report (shorter than ``PIPE_BUF``, so each write is atomic):

- ``"<held> <age>"``: the worker held ``<held>`` claims, all renewed after the moment ``<age>``
  seconds before the write (the heartbeat's snapshot of its claims; a claim taken after that
  moment has a later lease of its own). Sent after each successful renewal, and at once when
  the snapshot is empty, whatever the renewal does: a worker that holds nothing risks nothing.
- ``"stop"``: the heartbeat stopped with nothing held; the worker is exiting.
- ``"int <kind> <attempt> <invocation_id>"``: the worker is interrupting the body of that run
  (``kind`` is ``timeout`` or ``cancel``); written before the exception is delivered.
- ``"done <attempt> <invocation_id>"``: that interrupted body has stopped.

An interrupted body still running ``interrupt_grace`` seconds (``shutdown_grace_seconds``) after
its ``int`` line (a body blocked in one long C call, such as ``time.sleep(600)``, never sees the
exception) gets its worker killed; the supervisor then reports those runs itself
(:attr:`LeaseWatch.interrupted`).

Only differences of each process's own monotonic clock cross the pipe, never a time.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable

from taskgate.errors import InvocationCancelledError

# Kill a silent worker after this fraction of the lease: the rest covers the kill itself.
STALL_FRACTION = 0.8
STOP = "stop"
TIMEOUT = "timeout"
CANCEL = "cancel"


class LeaseReporter:
    """The worker's end: tells the supervisor about renewals (never blocks, never raises)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        os.set_inheritable(fd, False)  # programs a task starts have no business with it
        # A supervisor that stopped reading must not block the heartbeat: a full pipe drops
        # reports, which errs on the side of killing.
        os.set_blocking(fd, False)

    def renewed(self, held: int, as_of: float) -> None:
        """All ``held`` claims were renewed after ``as_of`` (this process's monotonic clock)."""
        self._write(f"{held} {max(0.0, time.monotonic() - as_of):.6f}\n")

    def stopped(self, held: int) -> None:
        """The heartbeat stopped; with nothing ``held``, the supervisor stops watching."""
        if held == 0:
            self._write(f"{STOP}\n")

    def body_interrupted(
        self, invocation_id: str, attempt: int, error: type[BaseException]
    ) -> None:
        """The body of ``attempt`` of ``invocation_id`` is being interrupted with ``error``."""
        kind = CANCEL if issubclass(error, InvocationCancelledError) else TIMEOUT
        self._write(f"int {kind} {attempt} {invocation_id}\n")

    def body_stopped(self, invocation_id: str, attempt: int) -> None:
        """That interrupted body has stopped (its outcome is being reported)."""
        self._write(f"done {attempt} {invocation_id}\n")

    def _write(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone, or the pipe is full
            os.write(self._fd, line.encode())


class LeaseWatch:
    """The supervisor's end for one worker process: waits for its exit or its stall.

    Create it before the worker, pass :attr:`worker_fd` to the worker (``pass_fds``), call
    :meth:`close_worker_end` once the worker started, then :meth:`wait` on a watcher thread.
    Nothing polls: the thread blocks in ``select`` until a report, the exit, or the deadline.
    """

    def __init__(self, lease_seconds: float, interrupt_grace: float = float("inf")) -> None:
        self._read_fd, self.worker_fd = os.pipe()
        self._budget = STALL_FRACTION * lease_seconds
        self._deadline: float | None = None  # unarmed until the first report
        self._last_report = time.monotonic()
        self._grace = interrupt_grace
        self.interrupted: dict[tuple[str, int], tuple[str, float]] = {}
        """Interrupted bodies not known to have stopped: ``(id, attempt) -> (kind, kill at)``."""
        self.stuck = False
        """Whether :meth:`wait` returned True for an interrupted body past its grace."""

    def close_worker_end(self) -> None:
        """Close this process's copy of the worker's end (the worker has its own)."""
        os.close(self.worker_fd)

    @property
    def silent_for(self) -> float:
        """Seconds since the last report."""
        return time.monotonic() - self._last_report

    def wait(self, process: subprocess.Popen[bytes]) -> bool:
        """Block until ``process`` exits (False) or it stalls while holding leases (True)."""
        exit_fd, cleanup = _exit_fd(process)
        reports: list[int] = [self._read_fd]
        pending = b""
        try:
            if process.poll() is not None:  # reaped before its pidfd was opened
                return False
            while True:
                deadlines = [k for _, k in self.interrupted.values() if math.isfinite(k)]
                if self._deadline is not None:
                    deadlines.append(self._deadline)
                timeout = None
                if deadlines:
                    timeout = max(0.0, min(deadlines) - time.monotonic())
                ready, _, _ = select.select([exit_fd, *reports], [], [], timeout)
                if exit_fd in ready:
                    return False
                if not ready:
                    now = time.monotonic()
                    if self._deadline is not None and now >= self._deadline:
                        return True
                    if any(now >= kill_at for _, kill_at in self.interrupted.values()):
                        self.stuck = True
                        return True
                    continue
                data = os.read(self._read_fd, 4096)
                if not data:  # the worker closed its end (exiting): only its exit is left
                    reports.clear()
                pending = self._take(pending + data)
        finally:
            cleanup()
            os.close(self._read_fd)

    def _take(self, data: bytes) -> bytes:
        """Apply the complete lines of ``data``; returns the incomplete rest."""
        *lines, rest = data.split(b"\n")
        now = time.monotonic()
        for line in lines:
            if line == STOP.encode():
                self._deadline = None
                continue
            if line.startswith((b"int ", b"done ")):
                with contextlib.suppress(ValueError):  # not a report: see below
                    self._take_interrupt(line.decode(errors="replace"), now)
                continue
            try:
                _held, age = int(line.split()[0]), float(line.split()[1])
            except (ValueError, IndexError):
                continue  # not a report: only taskgate's worker writes to this pipe
            self._last_report = now
            self._deadline = now - age + self._budget
        return rest

    def _take_interrupt(self, line: str, now: float) -> None:
        if line.startswith("int "):
            _, kind, attempt, invocation_id = line.split(" ", 3)
            self.interrupted[(invocation_id, int(attempt))] = (kind, now + self._grace)
        else:
            _, attempt, invocation_id = line.split(" ", 2)
            self.interrupted.pop((invocation_id, int(attempt)), None)


def _exit_fd(process: subprocess.Popen[bytes]) -> tuple[int, Callable[[], None]]:
    """A descriptor that becomes readable when ``process`` exits, and how to release it.

    A pidfd where the platform has one; else a pipe closed by a thread that waits on the
    process. Either way the report pipe's end of file cannot be relied on: a task may fork a
    child that keeps the worker's end open after the worker died.
    """
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(process.pid)
        return pidfd, lambda: os.close(pidfd)
    exited_r, exited_w = os.pipe()

    def wait_then_close() -> None:
        process.wait()
        os.close(exited_w)

    threading.Thread(target=wait_then_close, name="taskgate-worker-exit", daemon=True).start()
    return exited_r, lambda: os.close(exited_r)
