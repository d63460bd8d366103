"""``taskgate inspect`` shows the task's traceback: in full for a FAILED invocation, and the last
one for an invocation that is being retried; on every backend.

The CLI runs in-process through click's ``CliRunner`` against an app module written into
``tmp_path`` (the same module object the test registers through, so ``memory://`` works too).
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskgate import InvocationStatus
from taskgate.cli import cli

WAIT = 15.0

APP_MODULE = textwrap.dedent(
    """
    import os
    import threading

    from taskgate import App

    app = App({app_id!r}, backend=os.environ["TASKGATE_BACKEND"], threads=2)
    SECOND_ATTEMPT = threading.Event()
    RELEASE = threading.Event()


    class OrderError(Exception):
        pass


    def parse_the_order(order):
        raise OrderError("cannot parse " + order)


    @app.task
    def take_order(order: str) -> None:
        parse_the_order(order)


    @app.task(max_retries=1, retry_for=OrderError)
    def flaky(order: str) -> str:
        if flaky.invocation.attempt == 1:
            parse_the_order(order)
        SECOND_ATTEMPT.set()
        RELEASE.wait({wait})
        return "done"
    """
)


@pytest.fixture
def app_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend_url: str
) -> Iterator[ModuleType]:
    """An app module on the test's backend, importable by the CLI as ``<name>:app``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TASKGATE_BACKEND", backend_url)
    name = f"tb_app_{uuid.uuid4().hex[:10]}"
    source = APP_MODULE.format(app_id=f"test-tb-{uuid.uuid4().hex[:12]}", wait=WAIT)
    (tmp_path / f"{name}.py").write_text(source)
    module = importlib.import_module(name)
    yield module
    module.RELEASE.set()
    module.app.purge()
    module.app.backend.close()
    sys.modules.pop(name, None)


def inspect(module: ModuleType, invocation_id: str) -> Result:
    result = CliRunner().invoke(cli, ["inspect", invocation_id, "--app", f"{module.__name__}:app"])
    assert result.exit_code == 0, result.output
    return result


def test_inspect_a_failed_invocation_shows_the_full_traceback(
    app_module: ModuleType, run_runner: Callable[[Any], Any]
) -> None:
    with run_runner(app_module.app.runner):
        invocation = app_module.take_order("soup")
        with pytest.raises(app_module.OrderError):
            invocation.get_result(WAIT)
    out = inspect(app_module, invocation.invocation_id).stdout
    assert re.search(r"error\s+\S*OrderError: cannot parse soup", out), out
    assert re.search(r"traceback\s+Traceback \(most recent call last\):", out), out
    assert re.search(r"in take_order *\n", out), out
    assert re.search(r"in parse_the_order *\n\s+raise OrderError", out), out


def test_inspect_a_retried_invocation_shows_the_last_traceback(
    app_module: ModuleType,
    run_runner: Callable[[Any], Any],
    wait_status: Callable[[Any, InvocationStatus], None],
) -> None:
    with run_runner(app_module.app.runner):
        invocation = app_module.flaky("soup")
        assert app_module.SECOND_ATTEMPT.wait(WAIT)
        wait_status(invocation, InvocationStatus.RUNNING)
        out = inspect(app_module, invocation.invocation_id).stdout
        app_module.RELEASE.set()
        assert invocation.get_result(WAIT) == "done"
    assert re.search(r"last error\s+\S*OrderError: cannot parse soup", out), out
    assert re.search(r"last traceback\s+Traceback \(most recent call last\):", out), out
    assert re.search(r"in parse_the_order *\n", out), out
