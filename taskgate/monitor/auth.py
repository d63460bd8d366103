"""The monitor's two guards: the access token and CSRF protection of actions.

Token (when one is set; required on any non-loopback address). Every request must carry it,
compared in constant time (:func:`hmac.compare_digest`), in one of three ways:

- ``Authorization: Bearer <token>`` (scripts, Prometheus);
- ``?token=<token>`` once, in a link: the answer is a redirect to the same URL without it,
  setting an HttpOnly, SameSite=Strict session cookie, so the token leaves the address bar
  and the history at once;
- that cookie. It holds an HMAC of the token, not the token: it stays valid across monitor
  restarts with the same token, and a leaked cookie does not reveal the token.

Anything else gets 401 (JSON under ``/api/`` and for ``/metrics``, a short page elsewhere).

Client and Host (without a token). An open monitor answers only clients on this machine (the
connection's peer address, ``scope["client"]``, is a loopback address; 403 otherwise): embedded
in a server listening on another address, it would otherwise answer anyone who sends
``Host: localhost``. A server that does not say who the client is (a Unix socket) gets 403 too:
give such a monitor a token. And it answers only requests addressed to a loopback name
(``Host: 127.0.0.1:8787``, ``localhost``, ``[::1]``): a page on another site whose domain an
attacker points at 127.0.0.1 (DNS rebinding) would otherwise be same-origin with the monitor,
read it and post to it. Anything else gets 400.

Cookies are named after the port the monitor listens on (``taskgate_monitor_session_8787``,
``taskgate_monitor_csrf_8787``): browsers share cookies across the ports of one host, and two
monitors on one machine would otherwise overwrite each other's.

CSRF (always, token or not: a loopback monitor can be reached by any page the user opens).
Actions are POSTs, and a POST must carry a CSRF token twice (double submit): in the
``taskgate_monitor_csrf_<port>`` cookie and in the ``X-CSRF-Token`` header (htmx, scripts) or the
``csrf_token`` form field (plain forms); both equal, and signed with this process's secret. A
cross-site page can make the browser send the cookie but cannot read it to fill in the other
copy. A POST authenticated by a bearer header needs no CSRF token (browsers never add that
header on their own). Anything else gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "taskgate_monitor_session"
CSRF_COOKIE = "taskgate_monitor_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
TOKEN_PARAM = "token"

UNAUTHORIZED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>taskgate monitor: token required</title>
</head><body id="unauthorized"><h1>Token required</h1>
<p>This taskgate monitor needs its access token. Open it once as
<code>/?token=SECRET</code> (the token is then kept in a cookie and removed from the address),
or send <code>Authorization: Bearer SECRET</code>. Just opened a link that had the token?
Reload this page: browsers hold the cookie back on a redirect that began on another site.</p>
</body></html>"""


def _sign(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of two texts. Compared as UTF-8 bytes: ``compare_digest`` raises
    TypeError on a str with non-ASCII characters, which a client can send in a cookie or header
    (a wrong credential, not a server error)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _port(request: Request) -> int | None:
    server = request.scope.get("server")
    return int(server[1]) if server and server[1] is not None else None


def session_cookie_name(port: int | None) -> str:
    """The session cookie of the monitor listening on ``port`` (see the module doc)."""
    return SESSION_COOKIE if port is None else f"{SESSION_COOKIE}_{port}"


def csrf_cookie_name(port: int | None) -> str:
    """The CSRF cookie of the monitor listening on ``port`` (see the module doc)."""
    return CSRF_COOKIE if port is None else f"{CSRF_COOKIE}_{port}"


def csrf_cookie(request: Request) -> str:
    """The name of the CSRF cookie of the monitor serving ``request``."""
    return csrf_cookie_name(_port(request))


class Guard:
    """The token and CSRF secrets of one monitor process.

    Args:
        token: The access token, or None for an open (loopback) monitor.
    """

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None
        # Signs CSRF tokens; per process, so a restart invalidates old forms (a reload fixes).
        self._csrf_secret = secrets.token_bytes(32)
        self._session = _sign(self._token, b"taskgate-monitor-session") if self._token else ""

    @property
    def token_required(self) -> bool:
        """Whether requests must carry the token."""
        return self._token is not None

    def __repr__(self) -> str:  # never the token
        return f"<Guard token_required={self.token_required}>"

    # --- the token -------------------------------------------------------------------------

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the token (constant time)."""
        return self._token is not None and _same(given, self._token.decode())

    def bearer(self, request: Request) -> bool:
        """Whether the request carries ``Authorization: Bearer <the token>``."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    def session_valid(self, request: Request) -> bool:
        """Whether the request carries the session cookie of this token."""
        given = request.cookies.get(session_cookie_name(_port(request)), "")
        return bool(given) and _same(given, self._session)

    def set_session(self, request: Request, response: Response) -> None:
        """Set the session cookie (HttpOnly, SameSite=Strict, whole site)."""
        response.set_cookie(
            session_cookie_name(_port(request)),
            self._session,
            httponly=True,
            samesite="strict",
            path="/",
        )

    # --- CSRF ------------------------------------------------------------------------------

    def new_csrf_token(self) -> str:
        """A fresh CSRF token: a random nonce and its signature."""
        nonce = secrets.token_hex(16)
        return f"{nonce}.{_sign(self._csrf_secret, nonce.encode())}"

    def csrf_token_valid(self, token: str) -> bool:
        """Whether ``token`` was made by :meth:`new_csrf_token` of this process."""
        nonce, _, signature = token.partition(".")
        expected = _sign(self._csrf_secret, nonce.encode())
        return bool(nonce) and _same(signature, expected)

    def csrf_for(self, request: Request) -> str:
        """The request's valid CSRF cookie value, else a new token (set it with
        :meth:`set_csrf`)."""
        current = request.cookies.get(csrf_cookie(request), "")
        return current if current and self.csrf_token_valid(current) else self.new_csrf_token()

    def set_csrf(self, request: Request, response: Response, token: str) -> None:
        """Set the CSRF cookie (HttpOnly: pages put the token in their forms and headers)."""
        response.set_cookie(csrf_cookie(request), token, httponly=True, samesite="strict", path="/")

    async def post_allowed(self, request: Request) -> bool:
        """Whether a POST passes CSRF: a bearer request, or the cookie and the header (or form
        field) equal and signed by this process."""
        if self.bearer(request):
            return True
        cookie = request.cookies.get(csrf_cookie(request), "")
        given = request.headers.get(CSRF_HEADER, "")
        if not given and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            field = form.get(CSRF_FIELD)
            given = field if isinstance(field, str) else ""
        return bool(cookie and given) and _same(given, cookie) and self.csrf_token_valid(cookie)


def wants_json(path: str) -> bool:
    """Whether errors on ``path`` are JSON (the API and metrics) rather than pages."""
    return path.startswith("/api/") or path in {"/api", "/metrics"}


def host_name(header: str) -> str:
    """The name of a ``Host`` header without its port, lower case (``[::1]:8787`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return (header.rpartition(":")[0] if header.count(":") == 1 else header).lower()


def loopback_host(header: str, also: frozenset[str] = frozenset()) -> bool:
    """Whether a ``Host`` header names this machine (``localhost`` or a loopback address, with
    or without a port), or one of the names in ``also``."""
    name = host_name(header)
    if name == "localhost" or name in also:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_client(scope: Scope) -> bool:
    """Whether the connection comes from this machine (its peer is a loopback address)."""
    client = scope.get("client")
    if not client:
        return False  # unknown (a Unix socket): not known to be local
    try:
        return ipaddress.ip_address(str(client[0]).partition("%")[0]).is_loopback
    except ValueError:
        return False


class TokenMiddleware:
    """Refuses (401) every request without the token, when one is set; without a token,
    refuses (403) clients of other machines and (400) requests not addressed to a loopback
    name (see the module doc)."""

    def __init__(self, app: ASGIApp, guard: Guard, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.guard = guard
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.guard.token_required:
            response = self._check(request)
        elif not loopback_client(scope):
            response = PlainTextResponse(
                "this monitor has no token: it answers only clients on this machine "
                "(loopback); give it a token to serve others",
                status_code=403,
            )
        elif loopback_host(request.headers.get("host", ""), self.allowed_hosts):
            response = None
        else:
            response = PlainTextResponse(
                "this monitor has no token: it answers only requests to 127.0.0.1, localhost "
                "or [::1]",
                status_code=400,
            )
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _check(self, request: Request) -> Response | None:
        """None to let the request through, else the answer (a redirect or a 401)."""
        given = request.query_params.get(TOKEN_PARAM)
        if given is not None:
            if not self.guard.token_matches(given):
                return unauthorized(request.url.path)
            # The same URL without the token: relative, so no Host header is trusted; one
            # leading slash only, as ``//host/x`` (or ``/\\host/x``) would name another site.
            rest = request.url.remove_query_params(TOKEN_PARAM)
            path = "/" + rest.path.lstrip("/\\")
            location = path + (f"?{rest.query}" if rest.query else "")
            redirect = RedirectResponse(location, status_code=303)
            self.guard.set_session(request, redirect)
            return redirect
        if self.guard.bearer(request) or self.guard.session_valid(request):
            return None
        return unauthorized(request.url.path)


def unauthorized(path: str) -> Response:
    """The 401 answer: JSON for the API and metrics, a short page otherwise."""
    headers = {"WWW-Authenticate": 'Bearer realm="taskgate monitor"'}
    if wants_json(path):
        return JSONResponse(
            {"error": "unauthorized", "detail": "this monitor needs its token"},
            status_code=401,
            headers=headers,
        )
    return HTMLResponse(UNAUTHORIZED_PAGE, status_code=401, headers=headers)


def forbidden(path: str) -> Response:
    """The 403 answer to a POST that fails the CSRF check."""
    detail = (
        "missing or invalid CSRF token: reload the page, or send the X-CSRF-Token header "
        "with the taskgate_monitor_csrf_<port> cookie (GET /api/csrf gives both), or a bearer token"
    )
    if wants_json(path):
        return JSONResponse({"error": "forbidden", "detail": detail}, status_code=403)
    return HTMLResponse(
        f"<!doctype html><title>403</title><h1 id='forbidden'>Forbidden</h1><p>{detail}</p>",
        status_code=403,
    )


Endpoint = Callable[[Request], Awaitable[Response]]
