"""What a user's type checker sees: checked by ``mypy --strict`` and by pyright in strict mode
(``pyrightconfig.json`` beside it) in ``make typecheck``, never run.

Make runs both from this directory, where ``taskgate`` is importable only through the installed
package: this also proves that the editable install is visible to type checkers. pytest does not
collect this file (its name does not start with ``test_``).

A ``# type: ignore[code]`` below marks a call that must be a type error: mypy --strict reports
an unused ignore, and so does pyright as configured, so each line fails the check if taskgate
stops rejecting that call. (pyright ignores the bracketed mypy code.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, assert_type

from taskgate import App, Invocation, InvocationGroup, Limit, LimitInfo, Rate, Task
from taskgate.errors import TaskgateError

app = App("typing", backend="memory://")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(max_retries=2, retry_for=(ValueError,))
def greet(name: str, *, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@app.task
def nothing() -> None:
    return None


def check_tasks() -> None:
    adder: Task[[int, int], int] = add
    caller: Callable[[int, int], Invocation[int]] = add
    greeter: Callable[[str], Invocation[str]] = greet
    del adder, caller, greeter
    assert_type(add(1, 2), Invocation[int])
    assert_type(greet("ann", punctuation="?"), Invocation[str])
    assert_type(nothing(), Invocation[None])
    add("1", 2)  # type: ignore[arg-type]
    add(1)  # type: ignore[call-arg]
    greet("ann", "?")  # type: ignore[call-arg]


def check_results() -> None:
    invocation = add(1, 2)
    assert_type(invocation.result, int)
    assert_type(invocation.get_result(timeout=1.0), int)
    assert_type(invocation.invocation_id, str)
    assert_type(invocation.attempt, int)
    text: str = invocation.result  # type: ignore[assignment]
    del text


async def check_async_results() -> None:
    assert_type(await add(1, 2).async_result(), int)
    assert_type(await add.parallelize([(1, 2)]).async_results(), list[int])


def check_groups() -> None:
    group = add.parallelize([(1, 2), {"x": 3, "y": 4}])
    assert_type(group, InvocationGroup[int])
    assert_type(group.results, list[int])
    assert_type(group[0], Invocation[int])
    for invocation in group:
        assert_type(invocation, Invocation[int])
    assert_type(len(group), int)
    assert_type(add.parallelize([(1,), {"x": 3}], common_args={"y": 2}), InvocationGroup[int])
    add.parallelize([(1,)], common_args=[("y", 2)])  # type: ignore[arg-type]


def check_app() -> None:
    assert_type(app.get_invocation("some-id"), Invocation[Any])
    assert_type(app.invocations(task=add, limit=10), list[Invocation[Any]])
    assert_type(app.conf.lease_seconds, float)
    assert_type(app.conf.backend_display, str)
    try:
        app.purge()
    except TaskgateError as exc:
        assert_type(exc, TaskgateError)


def check_delays() -> None:
    later: Callable[[int, int], Invocation[int]] = add.with_options(delay=30)
    assert_type(later(1, 2), Invocation[int])
    assert_type(greet.with_options(eta=datetime.now(UTC))("ann", punctuation="?"), Invocation[str])
    assert_type(add.with_options(eta=1.7e9)(1, 2).scheduled_for, float | None)
    add.with_options(delay=1)("1", 2)  # type: ignore[arg-type]
    add.with_options(delay=1)(1)  # type: ignore[call-arg]
    add.with_options(colour="red")  # type: ignore[call-arg]


def check_call_options() -> None:
    urgent: Callable[[int, int], Invocation[int]] = add.with_options(priority=5, queue="fast")
    assert_type(urgent(1, 2), Invocation[int])
    assert_type(greet.with_options(queue="emails")("ann", punctuation="?"), Invocation[str])
    assert_type(nothing.with_options(priority=-3, delay=2.5)(), Invocation[None])
    assert_type(add(1, 2).cancel(), bool)
    add.with_options(priority=1)("1", 2)  # type: ignore[arg-type]
    greet.with_options(queue="q")("ann", "?")  # type: ignore[call-arg]
    add.with_options(priority="high")  # type: ignore[arg-type]
    add.with_options(queue=3)  # type: ignore[arg-type]


def check_limits() -> None:
    shared = app.limit("llm-api", concurrency=4, rate="120/m", fair_by="tenant_id")
    assert_type(shared, Limit)
    assert_type(shared.rate, Rate | None)
    app.set_limit("llm-api", concurrency=8)
    app.reset_limit("llm-api")
    for info in app.limits():
        assert_type(info, LimitInfo)
        assert_type(info.concurrency, int | None)
        assert_type(info.slots_held, int)


@app.task
async def fetch(url: str) -> bytes:
    return url.encode()


@app.task(timeout=5.0)
async def fetch_with_options(url: str, retries: int = 1) -> str:
    return url * retries


def check_async_tasks() -> None:
    assert_type(fetch("x"), Invocation[bytes])
    assert_type(fetch("x").result, bytes)
    assert_type(fetch_with_options("x", retries=2).result, str)
    assert_type(fetch.with_options(delay=1.0)("x"), Invocation[bytes])
