"""Waiting inside a task (API.md section 9): a body waiting for another invocation's result
never starves its runner; a stand-in runs other work meanwhile, on every backend."""

from __future__ import annotations

import threading
from collections.abc import Callable

from taskgate import App, ConcurrencyControlType
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
        parents = [parent(i) for i in range(3)]
        assert [p.get_result(WAIT) for p in parents] == [0, 1, 2]
    assert peak == 1
