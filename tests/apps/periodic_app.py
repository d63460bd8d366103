"""An app for the periodic, async and queue tests of CLI runners (``periodic_app:app``).

The backend URL and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``; the
periodic task exists only when ``TASKGATE_TEST_EVERY`` is set, so the other tests' runners do not
schedule it.
"""

from __future__ import annotations

import asyncio
import os
import time

from taskgate import App

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "periodic-app"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
)

if os.environ.get("TASKGATE_TEST_EVERY"):

    @app.task(every=float(os.environ["TASKGATE_TEST_EVERY"]))
    def tick() -> tuple[int, float | None]:
        """The process it ran in and the tick it was called for."""
        return os.getpid(), tick.invocation.scheduled_for


@app.task
async def nap(seconds: float) -> tuple[int, float, float]:
    """Sleep on the runner's event loop; the process and the interval it ran in."""
    start = time.time()
    await asyncio.sleep(seconds)
    return os.getpid(), start, time.time()


@app.task
def where(tag: str) -> tuple[int, str]:
    return os.getpid(), tag
