"""A fake external API that records when every call to it started and ended.

Standard library only. ``run_demo.py`` starts it in a thread; run it on its own with
``python provider.py --port 8765`` to watch it with ``curl``. The runners' task bodies call it
through :func:`record_call`, which reads its URL from ``DEMO_PROVIDER_URL``.

Endpoints:

- ``POST /call?recipe=R&work=S&<label>=<value>...`` simulates ``S`` seconds of work (at most 5)
  and records one call of recipe ``R`` with its labels (``customer_id=c1``, ``tenant_id=big``...)
  and its start and end, on this process's ``time.time()`` clock. Returns the call as JSON.
- ``GET /calls?recipe=R`` returns every call of recipe ``R`` recorded so far, in start order.
- ``POST /reset`` forgets every call.

The provider only records; ``checks.py`` turns the calls into the demo's figures (calls in
flight at once, starts within any window of a rate) and finds the violations.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

# The HTTP plumbing is shared with the other demos (examples/shared/fake_api.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))
from fake_api import FakeApiServer, Query, request_json, serve_until_interrupted, start_in_thread

PROVIDER_URL_ENV = "DEMO_PROVIDER_URL"
MAX_WORK_SECONDS = 5.0


class CallLog:
    """Thread-safe record of every call: recipe, labels, start and end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []

    def add(self, call: dict[str, Any]) -> None:
        """Record one finished call."""
        with self._lock:
            self._calls.append(call)

    def of(self, recipe: str) -> list[dict[str, Any]]:
        """The calls of ``recipe``, in start order."""
        with self._lock:
            calls = [call for call in self._calls if call["recipe"] == recipe]
        return sorted(calls, key=lambda call: call["start"])

    def reset(self) -> None:
        """Forget every call (calls in progress are still recorded when they end)."""
        with self._lock:
            self._calls.clear()


class ProviderServer(FakeApiServer):
    """The fake API: a :class:`~fake_api.FakeApiServer` that owns one :class:`CallLog`."""

    def __init__(self, port: int = 0) -> None:
        self.log = CallLog()
        super().__init__(
            {
                ("POST", "/call"): self._call,
                ("GET", "/calls"): self._calls,
                ("POST", "/reset"): self._reset,
            },
            port,
        )

    def _call(self, query: Query) -> tuple[HTTPStatus, Any]:
        start = time.time()
        labels = {name: values[0] for name, values in query.items()}
        recipe = labels.pop("recipe", "")
        try:
            work = float(labels.pop("work", "0"))
        except ValueError:
            work = -1.0
        if not recipe or not 0 <= work <= MAX_WORK_SECONDS:
            return HTTPStatus.BAD_REQUEST, {
                "error": f"recipe is required and work must be 0-{MAX_WORK_SECONDS} seconds"
            }
        time.sleep(work)  # the simulated work of the external API
        call = {"recipe": recipe, "labels": labels, "start": start, "end": time.time()}
        self.log.add(call)
        return HTTPStatus.OK, call

    def _calls(self, query: Query) -> tuple[HTTPStatus, Any]:
        return HTTPStatus.OK, self.log.of(query.get("recipe", [""])[0])

    def _reset(self, _query: Query) -> tuple[HTTPStatus, Any]:
        self.log.reset()
        return HTTPStatus.OK, {"reset": True}


def start_provider(port: int = 0) -> ProviderServer:
    """Start a provider on ``port`` (0: a free one) in a daemon thread; ``shutdown()`` stops it."""
    server = ProviderServer(port)
    start_in_thread(server)
    return server


def provider_url() -> str:
    """The provider's base URL from ``DEMO_PROVIDER_URL``.

    Raises:
        RuntimeError: the variable is not set in this process.
    """
    url = os.environ.get(PROVIDER_URL_ENV)
    if not url:
        raise RuntimeError(
            f"{PROVIDER_URL_ENV} is not set in this process; run_demo.py sets it for the "
            "runners it starts (or start `python provider.py --port 8765` and export "
            f"{PROVIDER_URL_ENV}=http://127.0.0.1:8765 where the runners run)"
        )
    return url.rstrip("/")


def record_call(recipe: str, work_seconds: float, **labels: str) -> dict[str, Any]:
    """One call of the fake API for ``recipe`` (what the task bodies do); returns the call."""
    params = {"recipe": recipe, "work": str(work_seconds), **labels}
    answer: dict[str, Any] = request_json(f"{provider_url()}/call", "POST", params)
    return answer


def recorded_calls(base_url: str, recipe: str) -> list[dict[str, Any]]:
    """Every call of ``recipe`` the provider at ``base_url`` recorded, in start order."""
    calls: list[dict[str, Any]] = request_json(f"{base_url}/calls", "GET", {"recipe": recipe})
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    serve_until_interrupted(ProviderServer(parser.parse_args().port), PROVIDER_URL_ENV)


if __name__ == "__main__":
    main()
