"""The monitor's Starlette application: routes, guards, templates and error pages."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import jinja2
from markupsafe import escape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskgate.app import App
from taskgate.cli.render import format_duration
from taskgate.errors import BackendUnavailableError, TaskgateError
from taskgate.monitor import api, pages, rendering
from taskgate.monitor.auth import Guard, TokenMiddleware, wants_json
from taskgate.monitor.format import time_text
from taskgate.monitor.metrics import metrics_registry
from taskgate.monitor.state import MonitorState
from taskgate.monitor.stats_cache import StatsCache

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Pages load only their own scripts and styles; nothing frames them; forms post only here.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# Pages and data are live: never cached. Static files (htmx, the stylesheet) may be.
NO_STORE = (b"cache-control", b"no-store")


def create_monitor_app(
    app: App, *, token: str | None = None, allowed_hosts: Iterable[str] = ()
) -> Starlette:
    """The web monitor of ``app`` as an ASGI application (serve it with any ASGI server).

    Args:
        app: The taskgate app whose backend the monitor reads (and acts on: cancel, retry,
            limit overrides).
        token: When given, every request must carry it (see :mod:`taskgate.monitor.auth`);
            required for any address other than loopback (``taskgate monitor`` enforces it).
        allowed_hosts: Without a token, the monitor answers only requests whose ``Host`` is a
            loopback name (DNS rebinding, see :mod:`taskgate.monitor.auth`); these names
            (without port) are accepted too, e.g. ``"testserver"`` for Starlette's TestClient
            or the name a local reverse proxy forwards. Ignored with a token.

    Returns:
        A Starlette application: the pages, ``/fragments/...`` (their live parts),
        ``/api/...`` (JSON), ``/metrics`` (Prometheus) and ``/static/...``.
    """
    guard = Guard(token)
    stats = StatsCache(app.backend)
    state = MonitorState(
        app=app,
        guard=guard,
        env=template_environment(),
        registry=metrics_registry(app, stats.get),
        stats=stats,
    )
    routes = [
        *pages.routes(),
        *api.routes(),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    monitor = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(
                TokenMiddleware,
                guard=guard,
                allowed_hosts=frozenset(name.lower() for name in allowed_hosts),
            ),
        ],
        exception_handlers={TaskgateError: taskgate_error},
    )
    monitor.state.monitor = state
    return monitor


def template_environment() -> jinja2.Environment:
    """Jinja2 with autoescaping on for every template, and the monitor's filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = time_text
    env.filters["when_ms"] = lambda iso_time: time_text(iso_time, milliseconds=True)
    env.filters["age"] = format_duration
    env.filters["clock"] = lambda iso_time: time_text(iso_time)[11:]
    return env


async def taskgate_error(request: Request, exc: Exception) -> Response:
    """A taskgate error while reading the store: 503 when it is unreachable, else 500."""
    status = 503 if isinstance(exc, BackendUnavailableError) else 500
    logger.warning("monitor: %s on %s: %s", type(exc).__name__, request.url.path, exc)
    message = f"{type(exc).__name__}: {exc}"
    if wants_json(request.url.path):
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status)
    if request.url.path.startswith("/fragments/"):
        return HTMLResponse(f"<p class='error' id='store-error'>{escape(message)}</p>", status)
    return rendering.message(request, message, status, request.url.path, message_id="store-error")


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = SECURITY_HEADERS
        if not scope["path"].startswith("/static/"):
            extra = [*SECURITY_HEADERS, NO_STORE]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
