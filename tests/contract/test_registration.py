"""Registration concurrency (API.md section 4, R1-R4) through the public API, on every backend."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import (
    App,
    ConcurrencyControlType,
    DistributedInvocation,
    InvocationStatus,
    ReusedInvocation,
)
from taskgate.errors import InvocationConcurrencyWithDifferentArgumentsError
from taskgate.runner.base import Runner

CC = ConcurrencyControlType
WAIT = 15.0
RunRunner = Callable[[Runner], Any]
WaitStatus = Callable[[Any, InvocationStatus], None]


def test_disabled_registers_every_call(app: App) -> None:
    @app.task
    def plain() -> None: ...

    ids = {plain().invocation_id for _ in range(10)}
    assert len(ids) == 10


def test_r1_task_scope_folds_calls_into_the_waiting_invocation(app: App) -> None:
    @app.task(registration_concurrency=CC.TASK)
    def once() -> None: ...

    first, second, third = once(), once(), once()
    assert isinstance(first, DistributedInvocation)
    assert isinstance(second, ReusedInvocation) and isinstance(third, ReusedInvocation)
    assert first.invocation_id == second.invocation_id == third.invocation_id
    assert second.diff_arg is None
    assert first.status is InvocationStatus.REGISTERED
    assert len(app.invocations()) == 1


def test_r1_arguments_scope_applies_defaults(app: App) -> None:
    @app.task(registration_concurrency=CC.ARGUMENTS)
    def add(x: int, y: int = 10) -> int:
        return x + y

    base = add(1)
    assert add(x=1).invocation_id == base.invocation_id
    assert add(1, 10).invocation_id == base.invocation_id
    assert add(1, y=10).invocation_id == base.invocation_id
    assert isinstance(add(1, 11), DistributedInvocation)
    assert isinstance(add(2), DistributedInvocation)
    assert len(app.invocations()) == 3


def test_r1_keys_scope_uses_only_the_key_arguments(app: App) -> None:
    @app.task(registration_concurrency=CC.KEYS, key_arguments=("account",))
    def sync(account: str, amount: int) -> None: ...

    first = sync("a", 1)
    folded = sync("a", 2)
    other = sync("b", 1)
    assert folded.invocation_id == first.invocation_id
    assert isinstance(folded, ReusedInvocation)
    assert other.invocation_id != first.invocation_id


def test_r2_reuse_carries_the_new_arguments_and_runs_the_old_ones(
    app: App, run_runner: RunRunner
) -> None:
    @app.task(registration_concurrency=CC.KEYS, key_arguments=("account",))
    def echo(account: str, amount: int) -> int:
        return amount

    first = echo("a", 1)
    folded = echo("a", 2)
    assert isinstance(folded, ReusedInvocation)
    assert folded.diff_arg == {"account": "a", "amount": 2}
    assert folded.arguments == {"account": "a", "amount": 1}
    with run_runner(app.runner):
        assert folded.get_result(WAIT) == 1
        assert first.get_result(WAIT) == 1


def test_r2_raise_on_different_arguments(app: App) -> None:
    @app.task(registration_concurrency=CC.TASK, on_diff_non_key_args_raise=True)
    def job(x: int, label: str = "a") -> None: ...

    first = job(1)
    assert job(1).invocation_id == first.invocation_id  # same arguments still fold
    with pytest.raises(InvocationConcurrencyWithDifferentArgumentsError) as raised:
        job(2, label="b")
    error = raised.value
    assert error.task_id == job.task_id
    assert error.existing_invocation_id == first.invocation_id
    assert "x: 1 -> 2" in error.diff and "label: 'a' -> 'b'" in error.diff
    assert len(app.invocations()) == 1


def test_r3_a_running_invocation_no_longer_absorbs_calls(
    make_app: Callable[..., App], run_runner: RunRunner
) -> None:
    app = make_app(threads=1)  # the second invocation waits while the first runs
    started, release = threading.Event(), threading.Event()

    @app.task(registration_concurrency=CC.TASK)
    def slow() -> str:
        started.set()
        release.wait(WAIT)
        return slow.invocation.invocation_id

    first = slow()
    with run_runner(app.runner):
        assert started.wait(WAIT)
        second = slow()
        assert isinstance(second, DistributedInvocation)
        assert second.invocation_id != first.invocation_id
        assert slow().invocation_id == second.invocation_id  # second now waits
        release.set()
        assert first.get_result(WAIT) == first.invocation_id
        assert second.get_result(WAIT) == second.invocation_id
    # Once finished, the next call registers anew too.
    assert isinstance(slow(), DistributedInvocation)


def test_r1_parked_invocation_still_absorbs_calls(
    app: App, run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task(
        registration_concurrency=CC.KEYS,
        running_concurrency=CC.TASK,
        key_arguments=("key",),
    )
    def guarded(key: str) -> str:
        started.set()
        release.wait(WAIT)
        return key

    running_one = guarded("a")
    with run_runner(app.runner):
        assert started.wait(WAIT)
        parked = guarded("b")
        wait_status(parked, InvocationStatus.CONCURRENCY_CONTROLLED)
        assert guarded("b").invocation_id == parked.invocation_id
        release.set()
        assert running_one.get_result(WAIT) == "a"
        assert parked.get_result(WAIT) == "b"


def test_r4_simultaneous_calls_from_many_threads_register_once(app: App) -> None:
    @app.task(registration_concurrency=CC.ARGUMENTS)
    def dedup(x: int) -> None: ...

    threads = 24
    barrier = threading.Barrier(threads)
    ids: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        invocation = dedup(7)
        with lock:
            ids.append(invocation.invocation_id)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
    assert len(ids) == threads and len(set(ids)) == 1
    assert len(app.invocations(task=dedup)) == 1


def test_parallelize_applies_registration_control_per_call(app: App) -> None:
    @app.task(registration_concurrency=CC.ARGUMENTS)
    def square(x: int) -> int:
        return x * x

    group = square.parallelize([(1,), {"x": 2}, (1,), (3,)])
    ids = [i.invocation_id for i in group]
    assert len(group) == 4
    assert ids[0] == ids[2] and len(set(ids)) == 3
