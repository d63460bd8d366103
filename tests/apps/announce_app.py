"""An app whose tasks ProcessRunner workers import by module path (``announce_app:app``):
counted runs, failures, and a body that blocks until a FIFO is written to.

The backend URL and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``.
"""

from __future__ import annotations

import os

from taskgate import App

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "announce-app"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
)


@app.task
def quick(x: int) -> int:
    return x


@app.task
def fails(x: int) -> int:
    raise ValueError(f"no {x}")


@app.task
def blocker(fifo: str) -> str:
    """Block until the test writes to (and closes) the FIFO at ``fifo``."""
    with open(fifo) as pipe:
        return pipe.read()
