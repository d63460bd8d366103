"""Interrupting running bodies (runner.interrupts, runner.watchdog): at most once, only while
active, never after leave(); the watchdog fires at the deadline."""

from __future__ import annotations

import threading
import time

import pytest

from taskgate.errors import InvocationCancelledError, TaskTimeoutError
from taskgate.runner.interrupts import RunningBodies, deliverable
from taskgate.runner.watchdog import Watchdog

WAIT = 15.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def body_interrupted(
        self, invocation_id: str, attempt: int, error: type[BaseException]
    ) -> None:
        self.events.append((error.__name__, invocation_id, attempt))

    def body_stopped(self, invocation_id: str, attempt: int) -> None:
        self.events.append(("stopped", invocation_id, attempt))


def _spin_until_interrupted() -> BaseException:
    try:
        while True:
            time.sleep(0.001)
    except BaseException as exc:
        return exc


def test_a_body_is_interrupted_once_and_the_listener_hears_both_ends() -> None:
    recorder = Recorder()
    bodies = RunningBodies(recorder)
    body = bodies.thread_body("inv", 2)
    bodies.enter(body)
    threading.Timer(0.01, bodies.interrupt, ("inv", InvocationCancelledError)).start()
    exc = _spin_until_interrupted()
    assert isinstance(exc, InvocationCancelledError)
    assert bodies.interrupt("inv", TaskTimeoutError)  # running, but interrupted already
    bodies.leave(body)
    bodies.leave(body)  # idempotent
    assert body.delivered is InvocationCancelledError
    assert recorder.events == [
        ("InvocationCancelledError", "inv", 2),
        ("stopped", "inv", 2),
    ]


def test_a_request_before_the_body_starts_is_delivered_when_it_enters() -> None:
    bodies = RunningBodies()
    assert bodies.interrupt("inv", InvocationCancelledError) is False
    body = bodies.thread_body("inv", 1)
    with pytest.raises(InvocationCancelledError):
        bodies.enter(body)
        while True:
            time.sleep(0.001)
    bodies.leave(body)


def test_nothing_is_delivered_after_leave() -> None:
    bodies = RunningBodies()
    body = bodies.thread_body("inv", 1)
    bodies.enter(body)
    bodies.leave(body)
    assert bodies.interrupt_body(body, TaskTimeoutError) is False
    time.sleep(0.01)  # would raise here if anything had been delivered


def test_once_leave_returned_nothing_fires_whenever_the_interrupt_came() -> None:
    """Interrupts racing with the end of a body, 300 times: wherever the exception fires
    before leave() returns, it is caught there; after it, nothing ever fires."""
    bodies = RunningBodies()
    for i in range(300):
        body = bodies.thread_body(f"inv-{i}", 1)
        racer = threading.Thread(target=bodies.interrupt_body, args=(body, TaskTimeoutError))
        try:
            try:
                bodies.enter(body)
                racer.start()
                for _ in range(i % 50):
                    pass
            finally:
                left = False
                while not left:
                    try:
                        bodies.leave(body)
                        left = True
                    except TaskTimeoutError:
                        pass
        except TaskTimeoutError:
            pass
        racer.join()
        for _ in range(200):  # many checks of the eval breaker: none may raise
            sum(range(3))


def test_deliverable_types_need_no_arguments_and_match_their_base() -> None:
    made = deliverable(InvocationCancelledError)
    assert issubclass(made, InvocationCancelledError)
    assert deliverable(InvocationCancelledError) is made
    made()  # what CPython does with an asynchronous exception


def test_the_watchdog_interrupts_at_the_deadline_and_skips_ended_bodies() -> None:
    bodies = RunningBodies()
    watchdog = Watchdog(bodies)
    watchdog.start()
    try:
        ended = bodies.thread_body("ended", 1)
        bodies.enter(ended)
        watchdog.arm(ended, 0.01)
        bodies.leave(ended)
        body = bodies.thread_body("inv", 1)
        bodies.enter(body)
        started = time.monotonic()
        watchdog.arm(body, 0.1)
        exc = _spin_until_interrupted()
        assert isinstance(exc, TaskTimeoutError)
        assert 0.09 <= time.monotonic() - started < WAIT
        bodies.leave(body)
        assert ended.delivered is None
    finally:
        watchdog.stop()


def test_the_watchdog_heap_is_compacted() -> None:
    bodies = RunningBodies()
    watchdog = Watchdog(bodies)
    watchdog.start()
    try:
        for i in range(1000):
            body = bodies.thread_body(f"inv-{i}", 1)
            bodies.enter(body)
            watchdog.arm(body, 3600)
            bodies.leave(body)
        assert len(watchdog._heap) < 200
    finally:
        watchdog.stop()


def test_an_interrupt_during_a_shield_is_raised_when_it_ends() -> None:
    bodies = RunningBodies()
    body = bodies.thread_body("inv", 1)
    bodies.enter(body)
    inside = False
    with pytest.raises(TaskTimeoutError), bodies.shield():
        assert bodies.interrupt_body(body, TaskTimeoutError)
        for _ in range(1000):  # nothing fires inside the shield
            sum(range(3))
        inside = True
    assert inside
    bodies.leave(body)
    assert body.has_fired and not body.deferred


def test_an_interrupt_sent_just_before_a_shield_is_raised_at_its_start() -> None:
    bodies = RunningBodies()
    body = bodies.thread_body("inv", 1)
    bodies.enter(body)
    with bodies._lock:  # as if sent by another thread a moment before the shield began
        body.delivered = TaskTimeoutError
    entered = False
    with pytest.raises(TaskTimeoutError), bodies.shield():
        entered = True
    assert not entered
    bodies.leave(body)


def test_a_request_for_a_body_that_never_comes_is_dropped_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cancel read just after its body ended is kept for a body that never comes: kept
    requests older than PENDING_SECONDS are swept, so late requests cannot pile up."""
    from taskgate.runner import interrupts

    clock = [1000.0]
    monkeypatch.setattr(interrupts.time, "monotonic", lambda: clock[0])
    bodies = RunningBodies()
    assert bodies.interrupt("late", InvocationCancelledError) is False
    clock[0] += interrupts.PENDING_SECONDS + 1
    for index in range(interrupts.PENDING_SWEEP_AT):
        bodies.interrupt(f"other-{index}", InvocationCancelledError)
    assert "late" not in bodies._pending
    assert len(bodies._pending) == interrupts.PENDING_SWEEP_AT
