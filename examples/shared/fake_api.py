"""The plumbing the demos' fake external APIs share (standard library only).

A :class:`FakeApiServer` answers JSON over HTTP on a loopback port, routing ``(method, path)`` to
plain functions of the query string; :func:`request_json` is the client side. Each demo's
``provider.py`` brings its own routes and ledger (what the fake API counts) and puts this folder
on ``sys.path`` to import this module.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HTTP_TIMEOUT_SECONDS = 10.0

Query = dict[str, list[str]]
Route = Callable[[Query], tuple[HTTPStatus, Any]]
"""A route: the parsed query string in, the status and the JSON-able body out."""


class JsonHandler(BaseHTTPRequestHandler):
    """Routes each request to the server's route for its method and path; replies JSON."""

    server: FakeApiServer

    def do_POST(self) -> None:
        self._route("POST")

    def do_GET(self) -> None:
        self._route("GET")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        route = self.server.routes.get((method, url.path))
        if route is None:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {method} {url.path}"})
            return
        status, body = route(parse_qs(url.query))
        self._reply(status, body)

    def _reply(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: one log line per call would drown the demo's output."""


class FakeApiServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that serves ``routes`` (one thread per request)."""

    daemon_threads = True
    request_queue_size = 128  # bursts of connections must not be refused

    def __init__(self, routes: Mapping[tuple[str, str], Route], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), JsonHandler)
        self.routes = dict(routes)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def start_in_thread(server: FakeApiServer) -> FakeApiServer:
    """Serve ``server`` in a daemon thread; ``shutdown()`` then ``server_close()`` stop it."""
    thread = threading.Thread(target=server.serve_forever, name="fake-api", daemon=True)
    thread.start()
    return server


def serve_until_interrupted(server: FakeApiServer, url_env: str) -> None:
    """Serve in the foreground until Ctrl-C, after printing the ``export`` line for the URL."""
    print(f"provider listening on {server.url} (port {server.server_address[1]})", flush=True)
    print(f"export {url_env}={server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def request_json(url: str, method: str = "GET", params: Mapping[str, str] | None = None) -> Any:
    """Send one request (``params`` as the query string) and return the decoded JSON answer.

    Raises:
        urllib.error.URLError: the server cannot be reached or answered an error status.
    """
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
        return json.load(response)
