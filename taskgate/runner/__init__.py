"""Runners: execute invocations. :class:`ThreadRunner` works with every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskgate.errors import ConfigError
from taskgate.runner.base import Runner
from taskgate.runner.thread import ThreadRunner

if TYPE_CHECKING:
    from taskgate.app import App


def build_runner(app: App) -> Runner:
    """The runner named by ``app.conf.runner_cls``.

    Raises:
        ConfigError: the runner cannot work with the app's backend.
    """
    if app.conf.runner_cls == "ProcessRunner":
        if not app.backend.supports_processes:
            raise ConfigError(
                f"ProcessRunner cannot use the {app.conf.backend_url} backend: its data lives in "
                "one process's memory, which worker processes cannot share. Use ThreadRunner, or "
                "a backend that processes share (sqlite:///path.db or redis://host:port/db)"
            )
        raise ConfigError(
            f"ProcessRunner is not available for {app.conf.backend_url} in this version; "
            "use ThreadRunner"
        )
    return ThreadRunner(app)


__all__ = ["Runner", "ThreadRunner", "build_runner"]
