"""Runners: execute invocations. :class:`ThreadRunner` works with every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskgate.runner.base import Runner
from taskgate.runner.process import ProcessRunner
from taskgate.runner.thread import ThreadRunner

if TYPE_CHECKING:
    from taskgate.app import App


def build_runner(app: App) -> Runner:
    """The runner named by ``app.conf.runner_cls``.

    Raises:
        ConfigError: the runner cannot work with the app's backend.
    """
    if app.conf.runner_cls == "ProcessRunner":
        return ProcessRunner(app)
    return ThreadRunner(app)


__all__ = ["ProcessRunner", "Runner", "ThreadRunner", "build_runner"]
