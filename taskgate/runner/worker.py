"""Entry point of a ProcessRunner worker process: ``python -m taskgate.runner.worker``.

The parent passes the app's ``module:attr``, its app id and the settings as JSON on the command
line, and keeps the worker's stdin open: end of file on stdin means the parent is gone, and the
worker then stops gracefully by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import types
from pathlib import Path
from typing import Any

from taskgate.errors import BackendError, ConfigError, TaskgateError
from taskgate.locate import SPAWNED_MAIN, load_app
from taskgate.runner.base import EXIT_BACKEND_FATAL, EXIT_CONFIG, WORKER_RUNNER_ID_ENV
from taskgate.runner.thread import ThreadRunner

logger = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    """Run one worker: ``worker APP_SPEC APP_ID SETTINGS_JSON [MAIN_SCRIPT_PATH]``."""
    app_spec, app_id, settings_json, *main_path = argv
    # Ctrl-C in a terminal reaches the whole process group; the parent decides and forwards a
    # SIGTERM, so a worker ignores SIGINT and stops on SIGTERM only.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _configure_logging(os.environ.get("TASKGATE_WORKER_LOG_LEVEL"))
    try:
        if main_path:
            _import_main_script(Path(main_path[0]))
        runner = _build_runner(app_spec, app_id, json.loads(settings_json))
    except TaskgateError as exc:
        logger.error("worker process %s cannot start: %s", os.getpid(), exc)
        return EXIT_CONFIG
    _stop_when_parent_dies(runner)
    try:
        runner.run()
    except BackendError:  # the runner logged it; restarting this worker cannot help
        return EXIT_BACKEND_FATAL
    return 0


def _build_runner(app_spec: str, app_id: str, settings: dict[str, Any]) -> ThreadRunner:
    app = load_app(app_spec)
    if app.app_id != app_id:
        raise ConfigError(f"{app_spec} is app {app.app_id!r}, expected {app_id!r}")
    for name, value in settings.items():
        setattr(app.conf, name, value)
    runner = ThreadRunner(app)
    runner.stop_signals = (signal.SIGTERM,)
    # The supervisor names its workers, so that it can take back a dead one's work at once.
    runner.runner_id = os.environ.get(WORKER_RUNNER_ID_ENV) or runner.runner_id
    return runner


def _import_main_script(path: Path) -> None:
    """Import the parent's main script under the name task ids of ``__main__`` map to."""
    module = types.ModuleType(SPAWNED_MAIN)
    module.__file__ = str(path)
    sys.modules[SPAWNED_MAIN] = module
    sys.path.insert(0, str(path.parent))
    try:
        code = compile(path.read_text(), str(path), "exec")
        exec(code, module.__dict__)
    except Exception as exc:
        raise ConfigError(f"cannot run main script {path} in the worker: {exc}") from exc


def _stop_when_parent_dies(runner: ThreadRunner) -> None:
    def watch() -> None:
        # The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read would
        # hold the buffer's lock while the interpreter shuts down.
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        logger.warning("worker process %s lost its parent; stopping", os.getpid())
        runner.stop_runner_loop()

    threading.Thread(target=watch, name="taskgate-parent-watch", daemon=True).start()


def _configure_logging(level: str | None) -> None:
    # Worker processes are programs of their own: like the CLI, they configure a handler.
    logging.basicConfig(
        level=level or "WARNING",
        format="%(asctime)s %(levelname)s [worker %(process)d] %(name)s: %(message)s",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
