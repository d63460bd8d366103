"""Fixtures for the backend contract suite: a backend and records built by hand."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from taskgate import App
from taskgate.backends.base import Backend
from taskgate.record import ConcurrencyPlan, InvocationRecord

_ids = itertools.count()


@pytest.fixture
def backend(app: App) -> Backend:
    """The test app's backend, driven directly through the contract."""
    return app.backend


@pytest.fixture
def new_record() -> Callable[..., InvocationRecord]:
    """Build a record: ``new_record(reg="k", run="k", limit=1, drop=False, max_retries=0)``."""

    def build(
        *,
        reg: str | None = None,
        run: str | None = None,
        limit: int = 1,
        drop: bool = False,
        max_retries: int = 0,
        task_id: str = "tests.task",
        arguments: bytes = b"args",
        **fields: Any,
    ) -> InvocationRecord:
        return InvocationRecord(
            invocation_id=f"inv-{next(_ids)}",
            task_id=task_id,
            arguments=arguments,
            plan=ConcurrencyPlan(reg, run, limit, drop),
            max_retries=max_retries,
            **fields,
        )

    return build
