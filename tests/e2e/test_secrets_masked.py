"""A Redis password never appears in a repr, an error message or a runner's log lines."""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskgate import App
from taskgate.errors import ConfigError, TaskgateError
from taskgate.testing import RedisServer

SECRET = "hunter2"

URLS = [f"redis://:{SECRET}@127.0.0.1:1/0", f"redis://user:{SECRET}@127.0.0.1:1/0"]

MALFORMED = [
    f"redis://:{SECRET}@host:notaport/0",
    f"redis://:{SECRET}@host/abc",
    f"rediss://:{SECRET}@[bad",
    f"redis://:{SECRET}/x@host/0",
    f"redis://user:{SECRET}@host:99999/0",
    f"redis://:{SECRET}@host/0?nosuchoption=1",
    f"redis://host/0?password={SECRET}&db=x",
    f"nosuchscheme://:{SECRET}@host/0",
]


@pytest.fixture(scope="module")
def protected_redis() -> Iterator[RedisServer]:
    with RedisServer(extra_args=["--requirepass", SECRET]) as server:
        yield server


def _everything_shown(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


@pytest.mark.parametrize("url", URLS)
def test_app_and_settings_reprs_mask_the_password(url: str) -> None:
    app = App(backend=url)
    for shown in (repr(app), repr(app.conf), str(app.conf), app.conf.backend_display):
        assert SECRET not in shown
        assert "***@127.0.0.1:1/0" in shown


@pytest.mark.parametrize("url", MALFORMED)
def test_config_errors_for_malformed_urls_mask_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as at_construction:
        App(backend=url)
    app = App(backend="memory://")
    with pytest.raises(ConfigError) as on_assignment:
        app.conf.backend = url
    for error in (at_construction.value, on_assignment.value):
        assert SECRET not in _everything_shown(error)
        assert "invalid backend URL" in str(error)


def test_environment_backend_errors_mask_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKGATE_BACKEND", f"redis://:{SECRET}@host/abc")
    with pytest.raises(ConfigError, match="TASKGATE_BACKEND") as info:
        App()
    assert SECRET not in _everything_shown(info.value)


def test_an_unreachable_backend_error_masks_the_password() -> None:
    app = App(backend=URLS[0])

    @app.task
    def noop() -> None: ...

    with pytest.raises(TaskgateError) as info:
        noop()
    assert SECRET not in _everything_shown(info.value)


@pytest.mark.parametrize("user", ["", "default"])
def test_a_runner_logs_no_password(
    protected_redis: RedisServer,
    run_runner: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    user: str,
) -> None:
    url = protected_redis.url.replace("redis://", f"redis://{user}:{SECRET}@")
    app = App(f"secrets-{uuid.uuid4().hex[:8]}", backend=url, threads=1)

    @app.task
    def double(x: int) -> int:
        return 2 * x

    caplog.set_level(logging.DEBUG, logger="taskgate")
    with run_runner(app.runner):
        assert double(21).result == 42
    assert "starting" in caplog.text
    assert f"{user}:***@127.0.0.1" in caplog.text
    assert SECRET not in caplog.text
