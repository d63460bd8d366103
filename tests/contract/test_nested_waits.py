"""Waiting inside a task (API.md section 9): a body waiting for another invocation's result
never starves its runner; a stand-in runs other work meanwhile, on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from taskgate import App, ConcurrencyControlType
from taskgate.context import WAIT_SLICE_SECONDS
from taskgate.errors import InvocationCancelledError, TaskTimeoutError
from taskgate.runner import ThreadRunner
from tests.conftest import WAIT, running


def test_a_parent_waiting_on_its_child_completes_with_one_thread(
    make_app: Callable[..., App],
) -> None:
    app = make_app(threads=1)

    @app.task
    def child(x: int) -> int:
        return x * 2

    @app.task
    def parent(x: int) -> int:
        return child(x).get_result(WAIT) + 1

    with running(app.runner):
        assert parent(20).get_result(WAIT) == 41


def test_a_chain_of_three_nested_levels_completes_with_one_thread(
    make_app: Callable[..., App],
) -> None:
    app = make_app(threads=1)

    @app.task
    def level(depth: int) -> list[int]:
        if depth == 3:
            return [depth]
        return [depth, *level(depth + 1).result]

    with running(app.runner):
        assert level(1).get_result(WAIT) == [1, 2, 3]


def test_a_parent_waiting_on_a_group_completes_with_one_thread(
    make_app: Callable[..., App],
) -> None:
    app = make_app(threads=1)

    @app.task
    def square(x: int) -> int:
        return x * x

    @app.task
    def total(n: int) -> int:
        return sum(square.parallelize([(i,) for i in range(n)]).results)

    with running(app.runner):
        assert total(5).get_result(WAIT) == 30


def test_stand_ins_are_bounded_by_the_thread_count(make_app: Callable[..., App]) -> None:
    """4 parents on 2 threads each wait for a child: at most 2 bodies that do not wait run
    at once, so at most 2 stand-ins work at once, and every parent completes."""
    app = make_app(threads=2)
    lock = threading.Lock()
    busy = 0
    peak = 0

    @app.task
    def child(x: int) -> int:
        nonlocal busy, peak
        with lock:
            busy += 1
            peak = max(peak, busy)
        try:
            return x
        finally:
            with lock:
                busy -= 1

    @app.task
    def parent(x: int) -> int:
        return child(x).get_result(WAIT)

    runner = ThreadRunner(app)
    with running(runner):
        parents = [parent(i) for i in range(6)]
        assert [p.get_result(WAIT) for p in parents] == list(range(6))
        standins = runner._standins
        assert standins is not None
        assert standins.peak_active <= 2
        assert standins.started >= 1
    assert peak <= 2


def test_the_waiting_parent_keeps_its_slot(make_app: Callable[..., App]) -> None:
    """The parent holds its running slot while it waits: a second parent of the task (limit
    1) never runs in the stand-in meanwhile, though the children do."""
    app = make_app(threads=1)
    lock = threading.Lock()
    parents_running = 0
    peak = 0

    @app.task
    def child(x: int) -> int:
        return x

    @app.task(running_concurrency=ConcurrencyControlType.TASK)
    def parent(x: int) -> int:
        nonlocal parents_running, peak
        with lock:
            parents_running += 1
            peak = max(peak, parents_running)
        try:
            return child(x).get_result(WAIT)
        finally:
            with lock:
                parents_running -= 1

    with running(app.runner):
        # Several parents in turn: a wait that begins while the last stand-in is still
        # leaving gets a stand-in once that one has gone.
        parents = [parent(i) for i in range(8)]
        assert [p.get_result(WAIT) for p in parents] == list(range(8))
    assert peak == 1


def test_a_waiting_parent_still_times_out(make_app: Callable[..., App]) -> None:
    """A body blocked in a wait sees its timeout within a wait slice (about a second)."""
    app = make_app(threads=1)

    @app.task
    def later() -> int:
        return 1

    @app.task(timeout=0.3)
    def parent() -> int:
        return later.with_options(delay=3600)().result

    with running(app.runner):
        started = time.monotonic()
        with pytest.raises(TaskTimeoutError):
            parent().get_result(WAIT)
        assert time.monotonic() - started < 0.3 + WAIT_SLICE_SECONDS + 2.0


def test_a_waiting_parent_can_be_cancelled(make_app: Callable[..., App]) -> None:
    app = make_app(threads=1)
    waiting = threading.Event()

    @app.task
    def later() -> int:
        return 1

    @app.task
    def parent() -> int:
        child = later.with_options(delay=3600)()
        waiting.set()
        return child.result

    invocation = parent()
    with running(app.runner):
        assert waiting.wait(WAIT)
        app.backend.cancel(invocation.invocation_id)
        with pytest.raises(InvocationCancelledError):
            invocation.get_result(WAIT)


def test_many_parents_waiting_on_groups_all_complete(make_app: Callable[..., App]) -> None:
    app = make_app(threads=2)

    @app.task
    def leaf(x: int) -> int:
        return x

    @app.task
    def middle(x: int) -> int:
        return sum(leaf.parallelize([(x,), (x,), (x,)]).results)

    @app.task
    def top(x: int) -> int:
        return middle(x).result + leaf(x).result

    runner = ThreadRunner(app)
    with running(runner):
        tops = [top(i) for i in range(12)]
        assert [t.get_result(WAIT) for t in tops] == [4 * i for i in range(12)]
        standins = runner._standins
        assert standins is not None and standins.peak_active <= 2
