"""Entry point of a ProcessRunner worker process: ``python -m taskgate.runner.worker``.

The command line carries only the app's ``module:attr`` and app id, since any local user can
read it (``/proc/<pid>/cmdline``). Everything else, the settings with the backend URL and its
password included, comes as one JSON line on stdin (:class:`WorkerConfig`). The parent keeps
stdin open afterwards: end of file on stdin means the parent is gone, and the worker then stops
gracefully by itself. The worker reports each lease renewal to its parent on an inherited pipe,
so the parent can kill it if it stops renewing (see :mod:`taskgate.runner.lease_watch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import types
from pathlib import Path

from taskgate.errors import BackendError, ConfigError, TaskgateError
from taskgate.locate import SPAWNED_MAIN, load_app
from taskgate.logformat import make_log_handler
from taskgate.runner.base import EXIT_BACKEND_FATAL, EXIT_CONFIG
from taskgate.runner.handshake import LOG_LEVEL_ENV, WorkerConfig
from taskgate.runner.lease_watch import LeaseReporter
from taskgate.runner.thread import ThreadRunner

logger = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    """Run one worker: ``worker APP_SPEC APP_ID [MAIN_SCRIPT_PATH]``, config on stdin."""
    app_spec, app_id, *main_path = argv
    # Ctrl-C in a terminal reaches the whole process group; the parent decides and forwards a
    # SIGTERM, so a worker ignores SIGINT and stops on SIGTERM only.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _configure_logging(os.environ.get(LOG_LEVEL_ENV))
    try:
        config = WorkerConfig.read()
        if main_path:
            _import_main_script(Path(main_path[0]), config.argv)
        runner = _build_runner(app_spec, app_id, config)
    except TaskgateError as exc:
        logger.error("worker process %s cannot start: %s", os.getpid(), exc)
        return EXIT_CONFIG
    _stop_when_parent_dies(runner)
    try:
        runner.run()
    except BackendError:  # the runner logged it; restarting this worker cannot help
        return EXIT_BACKEND_FATAL
    except ConfigError:  # a store that cannot be opened: the same for every restart
        return EXIT_CONFIG
    return 0


def _build_runner(app_spec: str, app_id: str, config: WorkerConfig) -> ThreadRunner:
    app = load_app(app_spec)
    if app.app_id != app_id:
        raise ConfigError(f"{app_spec} is app {app.app_id!r}, expected {app_id!r}")
    for name, value in config.settings.items():
        setattr(app.conf, name, value)
    runner = ThreadRunner(app)
    # SIGTERM stops gracefully; SIGUSR1 is the supervisor's forced stop (never merged with it).
    runner.stop_signals = (signal.SIGTERM, signal.SIGUSR1)
    runner.force_signals = (signal.SIGUSR1,)
    runner.runner_id = config.runner_id
    runner.kind = "process-worker"
    runner.role = f"worker process {config.slot} of ProcessRunner {config.supervisor_id}"
    runner.lease_listener = runner.interrupt_listener = LeaseReporter(config.report_fd)
    return runner


def _import_main_script(path: Path, argv: list[str]) -> None:
    """Import the parent's main script under the name task ids of ``__main__`` map to.

    The script sees the parent's ``sys.argv``, as it would in a multiprocessing child: a script
    that builds its app from its arguments builds the same app here.
    """
    if argv:
        sys.argv = list(argv)
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
    # Worker processes are programs of their own: like the CLI, they configure a handler, and
    # in the CLI's format, so that the runner's stderr reads as one log.
    root = logging.getLogger()
    root.addHandler(make_log_handler())
    root.setLevel(level or "WARNING")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
