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
import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


class ProviderHandler(BaseHTTPRequestHandler):
    """Routes the three endpoints to the server's :class:`CallLedger`."""

    server: ProviderServer

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/call":
            self._call(parse_qs(url.query))
        elif url.path == "/reset":
            self.server.ledger.reset()
            self._reply(HTTPStatus.OK, {"reset": True})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {url.path}"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/stats":
            self._reply(HTTPStatus.OK, self.server.ledger.snapshot())
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {url.path}"})

    def _call(self, query: dict[str, list[str]]) -> None:
        account = query.get("account", [""])[0]
        policy = query.get("policy", [""])[0]
        if not account or not policy:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "account and policy are required"})
            return
        ledger = self.server.ledger
        collision = ledger.start(policy, account)
        try:
            time.sleep(WORK_SECONDS)  # the simulated work of the external API
        finally:
            ledger.end(policy, account)
        self._reply(HTTPStatus.OK, {"account": account, "policy": policy, "collision": collision})

    def _reply(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: one log line per call would drown the demo's output."""


class ProviderServer(ThreadingHTTPServer):
    """A threading HTTP server that owns one :class:`CallLedger`."""

    daemon_threads = True
    request_queue_size = 128  # bursts of connections must not be refused

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), ProviderHandler)
        self.ledger = CallLedger()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def start_provider(port: int = 0) -> ProviderServer:
    """Start a provider on ``port`` (0: a free one) in a daemon thread; ``shutdown()`` stops it."""
    server = ProviderServer(port)
    thread = threading.Thread(target=server.serve_forever, name="provider", daemon=True)
    thread.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    port = parser.parse_args().port
    server = ProviderServer(port)
    print(f"provider listening on {server.url} (port {server.server_address[1]})", flush=True)
    print(f"export DEMO_PROVIDER_URL={server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
