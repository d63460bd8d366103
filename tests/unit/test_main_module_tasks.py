"""Tasks of a script run as ``__main__``: a warning at decoration when the store is shared."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import pytest

from taskgate import App
from taskgate.errors import MainModuleTaskWarning, TaskNotFoundError
from taskgate.locate import SPAWNED_MAIN
from taskgate.task import main_script_task_message

# Nothing listens there: decorating must not connect to the backend.
UNREACHABLE_REDIS = "redis://:secret@127.0.0.1:1/0"


def _script_function() -> Callable[[], int]:
    def job() -> int:
        return 1

    job.__module__ = "__main__"  # as if defined in a script run with `python script.py`
    return job


@pytest.mark.parametrize("backend", ["sqlite:////tmp/never-created/x.db", UNREACHABLE_REDIS])
@pytest.mark.parametrize("with_options", [False, True])
def test_a_main_script_task_on_a_shared_store_warns_at_the_decoration_line(
    backend: str, with_options: bool
) -> None:
    app = App("main-warning", backend=backend)
    func = _script_function()
    with pytest.warns(MainModuleTaskWarning) as caught:
        task = app.task(max_retries=0)(func) if with_options else app.task(func)
    [warning] = caught.list
    assert warning.filename == __file__  # this test's line, not taskgate's
    text = str(warning.message)
    assert "__main__.job" in text
    assert "Move the task into a module" in text
    assert "ProcessRunner" in text
    assert "secret" not in text
    assert task.task_id == "__main__.job"
    assert app._backend is None  # nothing was built or connected


def test_no_warning_on_memory_in_eager_mode_or_for_imported_modules() -> None:
    memory = App("main-warning", backend="memory://")
    shared = App("main-warning", backend=UNREACHABLE_REDIS)
    eager = App("main-warning", backend=UNREACHABLE_REDIS, eager=True)  # runs in this process

    def imported() -> int:
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.task(_script_function())
        shared.task(imported)
        eager.task(_script_function())


def test_the_warning_can_be_silenced_by_category() -> None:
    app = App("main-warning", backend=UNREACHABLE_REDIS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=MainModuleTaskWarning)
        app.task(_script_function())


def test_a_runner_without_the_script_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, SPAWNED_MAIN, raising=False)  # not a spawned worker
    app = App("main-warning", backend="memory://")
    with pytest.raises(TaskNotFoundError) as raised:
        app._resolve_task("__main__.not_here")
    assert str(raised.value) == main_script_task_message("__main__.not_here")
    assert "Move the task into a module" in str(raised.value)


def test_the_warning_is_a_user_warning() -> None:
    assert issubclass(MainModuleTaskWarning, UserWarning)
