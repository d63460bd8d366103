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

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, assert_type

from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette

from taskgate import (
    App,
    ConcurrencyControlType,
    DistributedInvocation,
    Invocation,
    InvocationGroup,
    InvocationStatus,
    Limit,
    LimitInfo,
    Rate,
    ReusedInvocation,
    Task,
    tracing,
)
from taskgate.errors import (
    ConfigError,
    InvocationCancelledError,
    RemoteTraceback,
    ResultTimeoutError,
    TaskFailedError,
    TaskgateError,
)
from taskgate.monitor import create_monitor_app
from taskgate.record import BudgetUsage, Transition
from taskgate.testing import RedisServer

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


# --- task options, the runner, what an invocation tells ------------------------------------------

per_customer = app.limit("per-customer", concurrency=1, key=("customer",))


@app.task(
    running_concurrency=ConcurrencyControlType.KEYS,
    key_arguments=("customer",),
    limits=[per_customer],
    max_retries=3,
)
def sync_customer(customer: int, *, full: bool = False) -> dict[str, int]:
    current = sync_customer.invocation  # the running invocation, inside the body
    assert_type(current, Invocation[dict[str, int]])
    assert_type(current.attempt, int)
    return {"customer": customer, "full": int(full)}


@app.task(every=60.0)
def tick() -> None:
    return None


def check_task_options() -> None:
    # A narrower view of a task is a Callable, which is contravariant in its parameters; Task's
    # ParamSpec is invariant (type checkers give a ParamSpec no variance).
    syncer: Callable[[int], Invocation[dict[str, int]]] = sync_customer
    # ``full`` is keyword-only: it is not a second positional parameter of the task's type.
    exact: Task[[int, bool], dict[str, int]] = sync_customer  # type: ignore[assignment]
    del syncer, exact
    assert_type(sync_customer(1, full=True), Invocation[dict[str, int]])
    assert_type(tick(), Invocation[None])
    assert_type(sync_customer.task_id, str)
    assert_type(app.tasks, dict[str, Task[Any, Any]])
    sync_customer(1, True)  # type: ignore[call-arg]
    app.limit("bad", concurrency="1")  # type: ignore[arg-type]


def check_runner() -> None:
    runner = app.runner
    thread = threading.Thread(target=runner.run)
    thread.start()
    runner.stop_runner_loop()
    runner.stop_runner_loop(force=True)
    thread.join()
    assert_type(runner.is_running, bool)
    assert_type(app.cancel("some-id"), bool)


def check_invocation_details() -> None:
    invocation = sync_customer(7)
    assert_type(invocation.status, InvocationStatus)
    assert_type(invocation.status.is_final, bool)
    assert_type(invocation.history, list[Transition])
    first = invocation.history[0]
    assert_type(first.status, InvocationStatus)
    assert_type(first.timestamp, float)
    assert_type(first.runner_id, str | None)
    assert_type(invocation.arguments, dict[str, Any])
    assert_type(invocation.num_retries, int)
    blocked = invocation.blocked_by()
    if blocked is not None:
        assert_type(blocked.scope_key, str)
        assert_type(blocked.holders, tuple[str, ...])
        assert_type(blocked.ready_at, float | None)
    assert_type(invocation.task, Task[Any, dict[str, int]])
    # A folded call's invocation is a ReusedInvocation, a new one a DistributedInvocation.
    assert_type(isinstance(invocation, ReusedInvocation | DistributedInvocation), bool)
    assert_type(invocation.status == InvocationStatus.SUCCESS, bool)


def check_errors() -> None:
    try:
        assert_type(sync_customer(7).result, dict[str, int])
    except TaskFailedError as exc:
        assert_type(RemoteTraceback.find(exc), RemoteTraceback | None)
    except (ResultTimeoutError, InvocationCancelledError) as exc:
        assert_type(exc, ResultTimeoutError | InvocationCancelledError)
    error: TaskgateError = ConfigError("taskgate errors share one root")
    del error


def check_limit_values() -> None:
    assert_type(per_customer.name, str)
    assert_type(per_customer.concurrency, int | None)
    rate = Rate(120, 60.0)
    assert_type(rate.count, int)
    assert_type(rate.period, float)
    assert_type(app.limit("r", rate=rate).rate, Rate | None)
    for info in app.limits():
        assert_type(info.budgets, list[BudgetUsage])
        assert_type(info.oldest_wait, float | None)


# --- the optional parts: testing helpers, the monitor, tracing ----------------------------------


def check_testing() -> None:
    with RedisServer() as server:
        assert_type(server.url, str)
        assert_type(server.port, int)
        redis_app = App("typing-redis", backend=server.url)
        del redis_app


def check_monitor_and_tracing() -> None:
    monitor = create_monitor_app(app, token="s3cret", allowed_hosts=["monitor.internal"])
    assert_type(monitor, Starlette)
    create_monitor_app(app, "s3cret")  # type: ignore[call-arg]
    tracing.use_tracer_provider(TracerProvider())
    tracing.use_tracer_provider(None)
    assert_type(tracing.refresh(), bool)
