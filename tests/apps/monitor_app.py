"""The app the browser tests and the monitor screenshots show (``monitor_app:app``).

A test, the runner processes and ``taskgate monitor`` import it by module path; the backend URL
and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``, so they share one
store and one namespace.

- ``export``: one run at a time per customer (the ``export-slot`` limit): a run holds its slot
  until the file ``release`` names exists, so the calls behind it wait, parked.
- ``explode``: fails with a traceback three frames deep.
- ``quick``: returns at once (a finished run the overview counts).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from taskgate import App

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "monitor-app"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
)
export_slot = app.limit("export-slot", concurrency=1, key="customer")


@app.task(limits=[export_slot])
def export(customer: str, batch: int, release: str) -> int:
    """Hold the customer's slot until the file ``release`` exists (polled: the runner's body
    has no other way to hear from the test), then return ``batch``."""
    marker = Path(release)
    while not marker.exists():
        time.sleep(0.02)
    return batch


class ReportError(ValueError):
    """What ``explode`` raises: a named error the detail page shows with its traceback."""


def _load_rows(report: str) -> list[int]:
    return _parse(report)


def _parse(report: str) -> list[int]:
    raise ReportError(f"report {report!r} has no rows")


@app.task
def explode(report: str) -> list[int]:
    """Fail: the traceback runs through ``_load_rows`` and ``_parse``."""
    return _load_rows(report)


@app.task
def quick(n: int) -> int:
    return n * 2
