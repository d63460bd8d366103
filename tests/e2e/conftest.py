"""Fixtures of the command-line tests: an app module written into ``tmp_path`` and imported.

A test imports the module, registers invocations through it, and the CLI (in-process through
click's ``CliRunner``, or a real ``taskgate`` process started in ``tmp_path``) loads the same
module, which is what makes ``memory://`` observable in-process.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

WAIT = 15.0

APP_MODULE = textwrap.dedent(
    """
    import os
    import threading
    from pathlib import Path

    from taskgate import App, ConcurrencyControlType

    app = App(
        {app_id!r},
        backend=os.environ["TASKGATE_BACKEND"],
        threads=4,
        shutdown_grace_seconds=float(os.environ.get("CLI_TEST_GRACE", "5")),
    )
    GATE = threading.Event()
    not_an_app = "just a string"


    @app.task
    def add(a: int, b: int = 2) -> int:
        return a + b


    @app.task
    def fail(message: str) -> None:
        raise ValueError(message)


    @app.task(running_concurrency=ConcurrencyControlType.TASK)
    def hold() -> str:
        GATE.wait({wait})
        return "released"


    @app.task
    def write_marker(path: str) -> None:
        Path(path).write_text("done")


    @app.task
    def block(path: str) -> None:
        Path(path).write_text("started")
        threading.Event().wait(120)  # until its process exits


    if os.environ.get("CLI_TEST_MARKER"):
        write_marker(os.environ["CLI_TEST_MARKER"])
    if os.environ.get("CLI_TEST_BLOCK"):
        block(os.environ["CLI_TEST_BLOCK"])
    """
)

AppModuleFactory = Callable[[str], ModuleType]


@pytest.fixture
def app_module_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AppModuleFactory]:
    """``factory(backend_url)`` writes an app module into ``tmp_path`` and imports it.

    The working directory is ``tmp_path`` (as for a user running ``taskgate`` next to their
    code); rich tables get a wide console so that rows are not wrapped.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    modules: list[ModuleType] = []

    def factory(backend_url: str) -> ModuleType:
        monkeypatch.setenv("TASKGATE_BACKEND", backend_url)
        name = f"cli_app_{uuid.uuid4().hex[:10]}"
        source = APP_MODULE.format(app_id=f"test-cli-{uuid.uuid4().hex[:12]}", wait=WAIT)
        (tmp_path / f"{name}.py").write_text(source)
        module = importlib.import_module(name)
        modules.append(module)
        return module

    yield factory
    for module in modules:
        module.GATE.set()
        module.app.purge()
        module.app.backend.close()
        sys.modules.pop(module.__name__, None)


@pytest.fixture
def app_module(app_module_factory: AppModuleFactory, backend_url: str) -> ModuleType:
    """The app module on the test's backend, whose store exists (empty).

    Read-only commands refuse a store that does not exist (an SQLite file is created by its
    first use): ``test_cli_stores.py`` covers that case with ``app_module_factory``.
    """
    module = app_module_factory(backend_url)
    module.app.purge()
    return module
