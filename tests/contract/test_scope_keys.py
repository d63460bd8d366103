"""Scope keys through the public API (API.md sections 5 and 7): readable, canonical in every
process, and refused at the call site for values without a canonical form; on every backend."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus
from taskgate.errors import SerializationError
from taskgate.runner.base import Runner

CC = ConcurrencyControlType
APPS = Path(__file__).resolve().parents[1] / "apps"
WAIT = 15.0
RunRunner = Callable[[Runner], Any]
WaitStatus = Callable[[Any, InvocationStatus], None]


class Handle:
    """An object with no canonical form (compared by identity)."""


@dataclasses.dataclass(frozen=True)
class Customer:
    customer_id: int
    regions: frozenset[str]


def test_a_call_with_an_unkeyable_argument_raises_and_registers_nothing(app: App) -> None:
    @app.task(registration_concurrency=CC.ARGUMENTS)
    def sync(customer: int, handle: Any) -> None: ...

    with pytest.raises(SerializationError) as caught:
        sync(42, Handle())
    message = str(caught.value)
    assert sync.task_id in message
    assert "argument 'handle'" in message
    assert f"{__name__}.Handle" in message
    assert app.invocations() == []


def test_parallelize_with_one_unkeyable_call_registers_nothing(app: App) -> None:
    @app.task(running_concurrency=CC.KEYS, key_arguments=("customer",))
    def sync(customer: Any) -> None: ...

    with pytest.raises(SerializationError, match="argument 'customer'"):
        sync.parallelize([(1,), (2,), ({"id": Handle()},)])
    assert app.invocations() == []


def test_only_key_arguments_need_a_canonical_form(app: App) -> None:
    @app.task(registration_concurrency=CC.KEYS, key_arguments=("customer",))
    def sync(customer: int, handle: Any) -> None: ...

    first = sync(42, Handle())
    assert sync(42, Handle()).invocation_id == first.invocation_id


def test_equal_dataclass_values_share_one_scope(app: App) -> None:
    @app.task(registration_concurrency=CC.ARGUMENTS)
    def sync(customer: Customer) -> None: ...

    first = sync(Customer(42, frozenset({"eu", "us", "apac"})))
    again = sync(Customer(42, frozenset({"apac", "us", "eu"})))
    other = sync(Customer(43, frozenset({"eu", "us", "apac"})))
    assert again.invocation_id == first.invocation_id
    assert other.invocation_id != first.invocation_id


def test_a_parked_invocation_shows_its_key_values(
    app: App, run_runner: RunRunner, wait_status: WaitStatus
) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task(running_concurrency=CC.KEYS, key_arguments=("customer",))
    def sync(customer: int, note: str = "") -> None:
        if note == "hold":
            started.set()
            release.wait(WAIT)

    holder = sync(42, "hold")
    with run_runner(app.runner):
        assert started.wait(WAIT)
        parked = sync(42)
        wait_status(parked, InvocationStatus.CONCURRENCY_CONTROLLED)
        blocked = parked.blocked_by()
        release.set()
        parked.get_result(WAIT)
    assert blocked is not None
    assert blocked.scope_key == f"{sync.task_id}#customer=42"
    assert blocked.holders == (holder.invocation_id,)


# --- the same key in processes with different hash seeds (shared stores) -------------------------


@pytest.fixture
def keyed_app_env(shared_backend_url: str) -> Iterator[dict[str, str]]:
    """The environment of processes importing ``keyed_app`` on a fresh app id."""
    app_id = f"keys-{uuid.uuid4().hex[:12]}"
    yield {
        **os.environ,
        "TASKGATE_TEST_BACKEND": shared_backend_url,
        "TASKGATE_TEST_APP_ID": app_id,
        "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path]),
    }
    cleanup = App(app_id, backend=shared_backend_url)
    cleanup.purge()
    cleanup.backend.close()


def test_processes_with_different_hash_seeds_register_one_invocation(
    keyed_app_env: dict[str, str],
) -> None:
    outputs = [
        subprocess.run(
            [sys.executable, "-c", "import keyed_app; keyed_app.call_once()"],
            env={**keyed_app_env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        for seed in ("1", "2", "3", "4")
    ]
    assert len({invocation_id for invocation_id, _ in outputs}) == 1
    assert len({key for _, key in outputs}) == 1
    app = App(keyed_app_env["TASKGATE_TEST_APP_ID"], backend=keyed_app_env["TASKGATE_TEST_BACKEND"])
    try:
        assert [i.invocation_id for i in app.invocations()] == [outputs[0][0]]
    finally:
        app.backend.close()
