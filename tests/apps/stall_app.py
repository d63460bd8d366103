"""An app whose task can freeze its worker process: it holds the GIL in one long C call.

Imported by module path (``stall_app:app``) by the test and by the runner processes it starts;
the backend URL and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from pathlib import Path
from typing import Any

from taskgate import App

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "stall-app"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
)


@app.task
def freeze(marker_dir: str, hold_seconds: int) -> dict[str, Any]:
    """Write ``attempt-N.json`` (pid, start time); attempt 1 then holds the GIL.

    A later attempt also records whether the process of attempt 1 was still alive when it
    started. ``attempt-1.end`` appears only if the first body ran to its end.
    """
    attempt = freeze.invocation.attempt
    record: dict[str, Any] = {"pid": os.getpid(), "attempt": attempt, "start": time.time()}
    first = Path(marker_dir) / "attempt-1.json"
    if attempt > 1 and first.exists():
        record["first_alive"] = _alive(json.loads(first.read_text())["pid"])
    (Path(marker_dir) / f"attempt-{attempt}.json").write_text(json.dumps(record))
    if attempt == 1:
        # libc's sleep() called through PyDLL keeps the GIL: no other thread of this process
        # runs, the lease heartbeat included, just as in a long C call of a native library.
        ctypes.PyDLL(None).sleep(hold_seconds)
        (Path(marker_dir) / "attempt-1.end").write_text(str(time.time()))
    return record


@app.task
def echo(value: str) -> str:
    return value


@app.task
def nap(seconds: float) -> int:
    """Sleep (releasing the GIL, so leases are renewed meanwhile); return the attempt."""
    time.sleep(seconds)
    return nap.invocation.attempt


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
