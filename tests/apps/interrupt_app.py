"""An app whose bodies block in one long C call (``interrupt_app:app``), for ProcessRunner
timeouts and cancels: the body never sees the exception, so the worker must be killed.

The backend URL and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from taskgate import App, ConcurrencyControlType
from taskgate.errors import TaskTimeoutError

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "interrupt-app"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
    shutdown_grace_seconds=1.0,
)


@app.task(timeout=0.5, running_concurrency=ConcurrencyControlType.TASK)
def stuck(directory: str, name: str) -> dict[str, object]:
    """``first`` blocks in time.sleep(60) (past its timeout); any other call reports whether
    the first one's process was gone when it started (its slot must not be reused before)."""
    pid_file = Path(directory) / "first.pid"
    if name == "first":
        pid_file.write_text(str(os.getpid()))
        time.sleep(60)
        return {"name": name}
    first_pid = int(pid_file.read_text())
    try:
        os.kill(first_pid, 0)
        first_alive = True
    except ProcessLookupError:
        first_alive = False
    return {"name": name, "first_alive": first_alive, "pid": os.getpid()}


@app.task
def sleeps(directory: str) -> str:
    """Blocks in time.sleep(60) with no timeout: only a cancel ends it (by killing the worker)."""
    (Path(directory) / "sleeps.started").write_text(str(os.getpid()))
    time.sleep(60)
    return "woke up"


@app.task(timeout=0.5, retry_for=(TaskTimeoutError,), max_retries=1)
def stuck_once(directory: str) -> int:
    """Attempt 1 blocks in time.sleep(60); the retry the supervisor reported returns at once."""
    attempt = stuck_once.invocation.attempt
    if attempt == 1:
        (Path(directory) / "stuck_once.started").write_text(str(os.getpid()))
        time.sleep(60)
    return attempt
