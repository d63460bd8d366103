"""The JSON routes under ``/api/`` (documented in docs/operations/monitor.md) and
``/metrics``.

Each GET returns the document its page is rendered from. POSTs (actions) need a bearer token
or the CSRF header with its cookie (``GET /api/csrf`` gives both to a script on an open
monitor); errors are ``{"error": ..., "detail": ...}`` with the HTTP status.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from taskgate.monitor import actions
from taskgate.monitor.auth import CSRF_HEADER, csrf_cookie, forbidden
from taskgate.monitor.format import now
from taskgate.monitor.invocations import (
    BadRequest,
    invocation_data,
    invocations_data,
    parse_filters,
)
from taskgate.monitor.limits import limits_data
from taskgate.monitor.metrics import CONTENT_TYPE, render
from taskgate.monitor.overview import overview_data
from taskgate.monitor.rendering import read
from taskgate.monitor.runners import runners_data
from taskgate.monitor.state import state_of

JsonObject = dict[str, Any]


def routes() -> list[BaseRoute]:
    """Every JSON route, and ``/metrics``."""
    return [
        Route("/api/overview", overview),
        Route("/api/invocations", invocations),
        Route("/api/invocations/{invocation_id}", invocation),
        Route("/api/invocations/{invocation_id}/cancel", cancel, methods=["POST"]),
        Route("/api/invocations/{invocation_id}/retry", retry, methods=["POST"]),
        Route("/api/limits", limits),
        Route("/api/limits/{name:path}/override", override, methods=["POST"]),
        Route("/api/limits/{name:path}/reset", reset, methods=["POST"]),
        Route("/api/runners", runners),
        Route("/api/csrf", csrf),
        Route("/metrics", metrics),
    ]


def error(status_code: int, kind: str, detail: str) -> JSONResponse:
    """``{"error": kind, "detail": detail}`` with ``status_code``."""
    return JSONResponse({"error": kind, "detail": detail}, status_code)


async def overview(request: Request) -> Response:
    return JSONResponse(await read(request, overview_data, now(), state_of(request).stats.get))


async def invocations(request: Request) -> Response:
    try:
        filters = parse_filters(dict(request.query_params))
        return JSONResponse(await read(request, invocations_data, filters))
    except BadRequest as exc:
        return error(400, "bad_request", str(exc))


async def invocation(request: Request) -> Response:
    invocation_id = request.path_params["invocation_id"]
    data = await read(request, invocation_data, invocation_id, now())
    if data is None:
        return error(404, "not_found", f"no invocation {invocation_id!r} in this app")
    return JSONResponse(data)


async def limits(request: Request) -> Response:
    return JSONResponse(await read(request, limits_data, now()))


async def runners(request: Request) -> Response:
    return JSONResponse(await read(request, runners_data, now()))


async def csrf(request: Request) -> Response:
    """``{csrf_token, header, cookie}``, setting the cookie: what a script on an open monitor
    sends back (cookie and header) with its POSTs."""
    guard = state_of(request).guard
    token = guard.csrf_for(request)
    response = JSONResponse(
        {"csrf_token": token, "header": "X-CSRF-Token", "cookie": csrf_cookie(request)}
    )
    guard.set_csrf(request, response, token)
    return response


async def metrics(request: Request) -> Response:
    """The Prometheus text of :mod:`taskgate.monitor.metrics`, computed now."""
    body = await run_in_threadpool(render, state_of(request).registry)
    return Response(body, media_type=CONTENT_TYPE)


# --- actions -----------------------------------------------------------------------------------


async def _act(request: Request, function: Any, *args: Any) -> Response:
    """Run an action after the CSRF check; its document, or its error."""
    if not await state_of(request).guard.post_allowed(request):
        return forbidden(request.url.path)
    try:
        return JSONResponse(await read(request, function, *args))
    except actions.ActionError as exc:
        kinds = {400: "bad_request", 404: "not_found", 409: "conflict"}
        return error(exc.status_code, kinds.get(exc.status_code, "error"), str(exc))


async def cancel(request: Request) -> Response:
    return await _act(request, actions.cancel, request.path_params["invocation_id"])


async def retry(request: Request) -> Response:
    return await _act(request, actions.retry, request.path_params["invocation_id"])


async def override(request: Request) -> Response:
    """Body: JSON ``{"concurrency": N, "rate": "M/P"}`` or the same as form fields."""
    values: JsonObject = {}
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return error(400, "bad_request", "the body is not valid JSON")
        if not isinstance(body, dict):
            return error(400, "bad_request", 'give {"concurrency": N, "rate": "M/P"}')
        values = body
    else:
        values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    concurrency, rate = values.get("concurrency"), values.get("rate")
    return await _act(
        request,
        actions.set_override,
        request.path_params["name"],
        None if concurrency in (None, "") else str(concurrency),
        None if rate in (None, "") else str(rate),
    )


async def reset(request: Request) -> Response:
    return await _act(request, actions.reset_override, request.path_params["name"])


__all__ = ["CSRF_HEADER", "routes"]
