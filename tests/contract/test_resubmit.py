"""``taskgate.resubmit.resubmit``: a stored invocation's task called again with its stored
arguments, queue and priority (what the monitor's "retry" does); every backend."""

from __future__ import annotations

import pytest

from taskgate import App, ConcurrencyControlType, InvocationStatus, ReusedInvocation
from taskgate.errors import InvocationNotFoundError
from taskgate.resubmit import resubmit
from tests.conftest import WAIT, running


def test_a_failed_invocation_is_called_again_as_a_new_one(app: App) -> None:
    calls: list[tuple[int, str]] = []

    @app.task
    def flaky(n: int, label: str = "x") -> str:
        calls.append((n, label))
        if len(calls) == 1:
            raise RuntimeError("once")
        return f"{label}{n}"

    failed = flaky.with_options(priority=3, queue="other")(5, label="y")
    with running(app.runner):
        with pytest.raises(RuntimeError):
            failed.get_result(WAIT)
        again = resubmit(app, failed.invocation_id)
        assert again.invocation_id != failed.invocation_id
        assert again.get_result(WAIT) == "y5"
    assert calls == [(5, "y"), (5, "y")]
    assert failed.status is InvocationStatus.FAILED
    record = app.backend.get(again.invocation_id)
    assert record is not None and (record.priority, record.queue) == (3, "other")


def test_registration_concurrency_applies_to_the_new_call(app: App) -> None:
    @app.task(registration_concurrency=ConcurrencyControlType.TASK)
    def once() -> None: ...

    waiting = once()
    again = resubmit(app, waiting.invocation_id)
    assert isinstance(again, ReusedInvocation)
    assert again.invocation_id == waiting.invocation_id


def test_an_unknown_invocation_raises(app: App) -> None:
    with pytest.raises(InvocationNotFoundError):
        resubmit(app, "no-such-invocation")
