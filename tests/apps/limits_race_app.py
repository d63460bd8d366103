"""An app whose tasks share two limits (one keyed) and a rate, for races between processes.

The backend URL and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``;
bodies append the interval they ran in to a file per process in ``TASKGATE_TEST_INTERVALS``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from taskgate import App

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "limits-race"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
)
API_SLOTS = 3
api = app.limit("race-api", concurrency=API_SLOTS)
tenant = app.limit("race-tenant", concurrency=1, key="tenant")
paced = app.limit("race-paced", rate="5/0.5s")

_lock = threading.Lock()


def _record(tenant: str, start: float) -> None:
    end = time.time()
    path = Path(os.environ["TASKGATE_TEST_INTERVALS"]) / f"intervals-{os.getpid()}.txt"
    with _lock, path.open("a") as out:
        out.write(f"{tenant} {start!r} {end!r}\n")


@app.task(limits=[api, tenant])
def call_api(tenant: str, n: int) -> int:
    start = time.time()
    time.sleep(0.002)  # simulated work: widens the window an over-admission would show in
    _record(tenant, start)
    return n


@app.task(limits=[tenant, api])  # the same two limits listed the other way round
def call_api_reversed(tenant: str, n: int) -> int:
    start = time.time()
    time.sleep(0.002)
    _record(tenant, start)
    return n


@app.task(limits=[paced])
def paced_call(n: int) -> int:
    return n
