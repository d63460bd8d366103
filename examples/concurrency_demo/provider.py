"""A fake external API that must never be called concurrently for the same account.

Standard library only. Run it on its own (``python provider.py --port 8765``) or start it in a
thread with :func:`start_provider` (``run_demo.py`` does when ``DEMO_PROVIDER_URL`` is unset).

Endpoints:

- ``POST /call?account=A&policy=P`` simulates ~20 ms of work for account ``A``. The call counts
  as a *collision* when another call for the same account and policy is in progress when it
  starts. Returns JSON ``{"account", "policy", "collision"}``.
- ``GET /stats`` returns JSON ``{policy: {"calls", "collisions", "max_in_flight"}}``.
- ``POST /reset`` clears every counter.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

# The HTTP plumbing is shared with the other demos (examples/shared/fake_api.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))
from fake_api import FakeApiServer, Query, serve_until_interrupted, start_in_thread

WORK_SECONDS = 0.02


@dataclass
class PolicyStats:
    """What the provider saw of one policy."""

    calls: int = 0
    collisions: int = 0
    max_in_flight: int = 0


class CallLedger:
    """Thread-safe counters: calls in progress per (policy, account) and totals per policy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._stats: dict[str, PolicyStats] = {}

    def start(self, policy: str, account: str) -> bool:
        """Record the start of a call; True when it collides with one already in progress."""
        with self._lock:
            key = (policy, account)
            stats = self._stats.setdefault(policy, PolicyStats())
            collision = self._in_flight[key] > 0
            self._in_flight[key] += 1
            stats.calls += 1
            stats.collisions += collision
            stats.max_in_flight = max(stats.max_in_flight, self._in_flight[key])
            return collision

    def end(self, policy: str, account: str) -> None:
        """Record the end of a call started with :meth:`start`."""
        with self._lock:
            key = (policy, account)
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]

    def snapshot(self) -> dict[str, dict[str, int]]:
        """The totals per policy, as plain dicts."""
        with self._lock:
            return {policy: asdict(stats) for policy, stats in sorted(self._stats.items())}

    def reset(self) -> None:
        """Forget every total (calls in progress keep being tracked)."""
        with self._lock:
            self._stats.clear()


class ProviderServer(FakeApiServer):
    """The fake API: a :class:`~fake_api.FakeApiServer` that owns one :class:`CallLedger`."""

    def __init__(self, port: int = 0) -> None:
        self.ledger = CallLedger()
        super().__init__(
            {
                ("POST", "/call"): self._call,
                ("POST", "/reset"): self._reset,
                ("GET", "/stats"): lambda _query: (HTTPStatus.OK, self.ledger.snapshot()),
            },
            port,
        )

    def _call(self, query: Query) -> tuple[HTTPStatus, Any]:
        account = query.get("account", [""])[0]
        policy = query.get("policy", [""])[0]
        if not account or not policy:
            return HTTPStatus.BAD_REQUEST, {"error": "account and policy are required"}
        collision = self.ledger.start(policy, account)
        try:
            time.sleep(WORK_SECONDS)  # the simulated work of the external API
        finally:
            self.ledger.end(policy, account)
        return HTTPStatus.OK, {"account": account, "policy": policy, "collision": collision}

    def _reset(self, _query: Query) -> tuple[HTTPStatus, Any]:
        self.ledger.reset()
        return HTTPStatus.OK, {"reset": True}


def start_provider(port: int = 0) -> ProviderServer:
    """Start a provider on ``port`` (0: a free one) in a daemon thread; ``shutdown()`` stops it."""
    server = ProviderServer(port)
    start_in_thread(server)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    serve_until_interrupted(ProviderServer(parser.parse_args().port), "DEMO_PROVIDER_URL")


if __name__ == "__main__":
    main()
