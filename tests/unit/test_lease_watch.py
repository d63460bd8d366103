"""The pipe protocol between a ProcessRunner worker and its supervisor (runner.lease_watch)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import cast

import pytest

from taskgate.backends.base import Backend
from taskgate.errors import BackendUnavailableError, InvocationCancelledError, TaskTimeoutError
from taskgate.runner.heartbeat import Heartbeat
from taskgate.runner.lease_watch import STALL_FRACTION, LeaseReporter, LeaseWatch

LEASE = 0.25


@pytest.fixture
def watch() -> Iterator[LeaseWatch]:
    created = LeaseWatch(LEASE)
    yield created
    with contextlib.suppress(OSError):  # the parent's copy of the worker's end
        os.close(created.worker_fd)


def _child(watch: LeaseWatch) -> subprocess.Popen[bytes]:
    """A process holding the worker's end of the pipe; it exits when its stdin closes."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=(watch.worker_fd,),
    )


def _end(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    child.wait()


def test_a_worker_that_never_reported_is_only_waited_for(watch: LeaseWatch) -> None:
    child = _child(watch)
    _end(child)
    assert watch.wait(child) is False


@pytest.mark.parametrize("pidfd", [True, False])
def test_a_worker_that_stops_reporting_while_holding_work_stalls(
    watch: LeaseWatch, pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pidfd:  # the fallback: a thread that waits on the process closes a pipe
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    child = _child(watch)
    LeaseReporter(watch.worker_fd).renewed(1, time.monotonic())
    try:
        assert watch.wait(child) is True  # the child is alive: only the deadline ends this
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_the_deadline_counts_from_the_renewal_not_from_the_report() -> None:
    watch = LeaseWatch(10.0)
    try:
        watch._take(b"2 7.5\n")
        assert watch._deadline is not None
        assert watch._deadline - time.monotonic() == pytest.approx(
            STALL_FRACTION * 10.0 - 7.5, abs=0.1
        )
    finally:
        os.close(watch.worker_fd)


def test_stop_disarms_and_partial_lines_wait_for_their_end() -> None:
    watch = LeaseWatch(10.0)
    try:
        assert watch._take(b"1 0.0\nsto") == b"sto"
        assert watch._deadline is not None
        assert watch._take(b"sto" + b"p\n") == b""
        assert watch._deadline is None
        watch._take(b"garbage\n")  # ignored, not fatal
        assert watch._deadline is None
    finally:
        os.close(watch.worker_fd)


def test_the_reporter_says_stop_only_when_nothing_is_held() -> None:
    read_fd, write_fd = os.pipe()
    reporter = LeaseReporter(write_fd)
    reporter.stopped(2)
    reporter.stopped(0)
    os.close(write_fd)
    assert os.read(read_fd, 4096) == b"stop\n"
    os.close(read_fd)


def test_the_reporter_never_blocks_on_a_full_pipe() -> None:
    read_fd, write_fd = os.pipe()
    reporter = LeaseReporter(write_fd)
    for _ in range(20_000):  # far more than a pipe buffer holds; nobody reads
        reporter.renewed(1, time.monotonic())
    os.close(write_fd)
    os.close(read_fd)
    reporter.renewed(1, time.monotonic())  # a closed end is no error either


class _Backend:
    """Just what the heartbeat calls; ``down`` makes renewals fail."""

    def __init__(self, down: bool) -> None:
        self.down = down

    def renew(self, runner_id: str, claims: list[tuple[str, int]], lease: float) -> list[str]:
        if self.down:
            raise BackendUnavailableError("down")
        return []

    def recover_leases(self) -> list[str]:
        return []

    def expire_for(self, seconds: float) -> bool:
        return True

    class options:  # stands in for BackendOptions
        result_ttl_seconds = 60.0


class _Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def renewed(self, held: int, as_of: float) -> None:
        self.events.append(("renewed", held))

    def stopped(self, held: int) -> None:
        self.events.append(("stopped", held))


@pytest.mark.parametrize("down", [False, True])
@pytest.mark.parametrize("held", [0, 2])
def test_the_heartbeat_reports_fresh_leases_only(down: bool, held: int) -> None:
    listener = _Listener()
    claims = [(f"inv-{n}", 1) for n in range(held)]
    heartbeat = Heartbeat(
        cast(Backend, _Backend(down)), "r", 30.0, lambda: claims, lambda lost: lost, listener
    )
    heartbeat._guarded(heartbeat._beat)
    heartbeat.stop()  # never started: only tells the listener
    # Holding nothing is safe whatever the backend says; held claims count once renewed.
    expected = [] if held and down else [("renewed", held)]
    assert listener.events == [*expected, ("stopped", held)]


def test_an_interrupted_body_that_does_not_stop_gets_its_worker_killed() -> None:
    watch = LeaseWatch(60.0, interrupt_grace=0.1)
    child = _child(watch)
    reporter = LeaseReporter(watch.worker_fd)
    reporter.renewed(1, time.monotonic())
    reporter.body_interrupted("inv-1", 3, TaskTimeoutError)
    reporter.body_interrupted("inv-2", 1, InvocationCancelledError)
    reporter.body_stopped("inv-2", 1)
    try:
        assert watch.wait(child) is True
        assert watch.stuck
        assert set(watch.interrupted) == {("inv-1", 3)}
        assert watch.interrupted[("inv-1", 3)][0] == "timeout"
    finally:
        _end(child)
        with contextlib.suppress(OSError):
            os.close(watch.worker_fd)


def test_an_interrupted_body_that_stops_is_only_waited_for() -> None:
    watch = LeaseWatch(60.0, interrupt_grace=0.2)
    child = _child(watch)
    reporter = LeaseReporter(watch.worker_fd)
    reporter.body_interrupted("inv-1", 1, InvocationCancelledError)
    reporter.body_stopped("inv-1", 1)
    reporter.stopped(0)
    os.close(watch.worker_fd)
    _end(child)
    assert watch.wait(child) is False
    assert watch.interrupted == {} and not watch.stuck
