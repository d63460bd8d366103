"""The HTML routes: four pages, their live fragments, and the actions' form POSTs.

Each page is rendered from the same document its ``/api/`` twin returns (the functions of
:mod:`.overview`, :mod:`.invocations`, :mod:`.limits`, :mod:`.runners`). Its live part is a
``<div>`` that htmx reloads from ``/fragments/...`` every two seconds, so pages update without
a reload. Actions are plain forms (they work without JavaScript) that POST with the CSRF
field and redirect back (POST, redirect, GET).

Backend reads block, so every read runs in Starlette's thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from taskgate.monitor import actions
from taskgate.monitor.auth import CSRF_COOKIE, forbidden
from taskgate.monitor.charts import bar_chart
from taskgate.monitor.format import iso, now
from taskgate.monitor.invocations import (
    BadRequest,
    invocation_data,
    invocations_data,
    parse_filters,
)
from taskgate.monitor.limits import limits_data
from taskgate.monitor.overview import STATUSES, overview_data
from taskgate.monitor.runners import runners_data
from taskgate.monitor.state import state_of

JsonObject = dict[str, Any]

NAV = (
    ("/", "overview", "Overview"),
    ("/invocations", "invocations", "Invocations"),
    ("/limits", "limits", "Limits"),
    ("/runners", "runners", "Runners"),
)
# What a page says after an action redirected to it (fixed texts: nothing is reflected).
NOTICES = {
    "cancel": "Cancel requested.",
    "retry": "Retried: this is the new invocation.",
    "override": "Override stored.",
    "reset": "Override deleted: the declared values apply again.",
}
FILTER_KEYS = ("task", "status", "prefix", "limit")


def routes() -> list[BaseRoute]:
    """Every HTML route."""
    return [
        Route("/", overview_page),
        Route("/fragments/overview", overview_fragment),
        Route("/invocations", invocations_page),
        Route("/fragments/invocations", invocations_fragment),
        Route("/invocations/{invocation_id}", invocation_page),
        Route("/fragments/invocations/{invocation_id}", invocation_fragment),
        Route("/invocations/{invocation_id}/cancel", cancel_form, methods=["POST"]),
        Route("/invocations/{invocation_id}/retry", retry_form, methods=["POST"]),
        Route("/limits", limits_page),
        Route("/fragments/limits", limits_fragment),
        Route("/limits/{name:path}/override", override_form, methods=["POST"]),
        Route("/limits/{name:path}/reset", reset_form, methods=["POST"]),
        Route("/runners", runners_page),
        Route("/fragments/runners", runners_fragment),
    ]


def render(
    request: Request, template: str, *, page: str, title: str, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    """A whole page: the layout's context (navigation, app, CSRF token) and ``ctx``; sets the
    CSRF cookie when the request had no valid one."""
    state = state_of(request)
    csrf = state.guard.csrf_for(request)
    _stamp(ctx)
    html = state.env.get_template(template).render(
        nav=NAV,
        page=page,
        title=title,
        csrf_token=csrf,
        app_id=state.app.app_id,
        backend=state.app.conf.backend_display,
        static_url="/static",
        statuses=STATUSES,
        notice=NOTICES.get(request.query_params.get("done", "")),
        **ctx,
    )
    response = HTMLResponse(html, status_code)
    if request.cookies.get(CSRF_COOKIE) != csrf:
        state.guard.set_csrf(response, csrf)
    return response


def fragment(request: Request, template: str, **ctx: Any) -> HTMLResponse:
    """A page's live part alone (what htmx swaps in)."""
    _stamp(ctx)
    return HTMLResponse(state_of(request).env.get_template(template).render(**ctx))


def _stamp(ctx: JsonObject) -> None:
    """``generated_at`` (the live region's time) from the page's data, else now."""
    data = ctx.get("data")
    stamp = data.get("generated_at") if isinstance(data, dict) else None
    ctx.setdefault("generated_at", stamp or iso(now()))


async def read(request: Request, function: Callable[..., JsonObject | None], *args: Any) -> Any:
    """``function(app, *args)`` in the thread pool (backend reads block)."""
    return await run_in_threadpool(function, state_of(request).app, *args)


def message(
    request: Request, text: str, status_code: int, back: str, *, message_id: str | None = None
) -> HTMLResponse:
    """A short page saying what went wrong (or what was done), with a link back."""
    return render(
        request,
        "message.html",
        page="message",
        title="Error" if status_code >= 400 else "Done",
        status_code=status_code,
        message=text,
        message_id=message_id or ("action-error" if status_code >= 400 else "action-done"),
        message_class="error" if status_code >= 400 else "notice",
        back=back,
    )


# --- overview ----------------------------------------------------------------------------------


def charts(data: JsonObject) -> JsonObject:
    """The overview's three SVG charts from its throughput series."""
    minutes = data["throughput"]
    labels = [m["minute_start"][11:16] + " UTC" for m in minutes]
    return {
        "finished": bar_chart(
            [m["finished"] for m in minutes], labels, css_class="finished", unit="runs"
        ),
        "failed": bar_chart(
            [m["failed"] for m in minutes], labels, css_class="failed", unit="runs"
        ),
        "latency": bar_chart(
            [m["mean_duration_seconds"] for m in minutes], labels, css_class="latency", unit="s"
        ),
        "finished_total": sum(m["finished"] for m in minutes),
        "failed_total": sum(m["failed"] for m in minutes),
    }


async def overview_page(request: Request) -> Response:
    data = await read(request, overview_data, now())
    return render(
        request, "overview.html", page="overview", title="Overview", data=data, charts=charts(data)
    )


async def overview_fragment(request: Request) -> Response:
    data = await read(request, overview_data, now())
    return fragment(request, "_overview.html", data=data, charts=charts(data), **_at(data))


def _at(data: JsonObject) -> JsonObject:
    return {"generated_at": data["generated_at"]}


# --- invocations -------------------------------------------------------------------------------


def _query(filters: JsonObject, cursor: str | None) -> str:
    """``?task=...`` for these filters and ``cursor`` (empty values left out)."""
    pairs = [(key, str(filters[key])) for key in FILTER_KEYS if filters.get(key)]
    if filters.get("limit") == 50:
        pairs = [(k, v) for k, v in pairs if k != "limit"]
    if cursor:
        pairs.append(("cursor", cursor))
    return f"?{urlencode(pairs)}" if pairs else ""


async def _invocations(request: Request) -> JsonObject:
    filters = parse_filters(dict(request.query_params))
    data: JsonObject = await read(request, invocations_data, filters)
    data["generated_at"] = _iso_now()
    return {
        "data": data,
        "query": _query(filters, filters["cursor"]),
        "next_query": _query(filters, data["next_cursor"]),
        "first_query": _query(filters, None),
        "generated_at": data["generated_at"],
    }


def _iso_now() -> str:
    return iso(now()) or ""


async def invocations_page(request: Request) -> Response:
    try:
        ctx = await _invocations(request)
    except BadRequest as exc:
        return message(request, str(exc), 400, "/invocations")
    return render(request, "invocations.html", page="invocations", title="Invocations", **ctx)


async def invocations_fragment(request: Request) -> Response:
    try:
        ctx = await _invocations(request)
    except BadRequest as exc:
        return HTMLResponse(f"<p class='error'>{escape(str(exc))}</p>", 400)
    return fragment(request, "_invocations.html", **ctx)


async def _invocation(request: Request) -> JsonObject | None:
    data: JsonObject | None = await read(
        request, invocation_data, request.path_params["invocation_id"], now()
    )
    if data is not None:
        data["generated_at"] = _iso_now()
    return data


async def invocation_page(request: Request) -> Response:
    given = request.path_params["invocation_id"]
    data = await _invocation(request)
    if data is None:
        matches = await run_in_threadpool(state_of(request).app.backend.find_ids, given, 2)
        if len(matches) == 1:  # a unique prefix, as ``taskgate inspect`` accepts
            return RedirectResponse(f"/invocations/{quote(matches[0])}", 303)
        return message(request, f"No invocation {given!r} in this app.", 404, "/invocations")
    return render(
        request,
        "invocation.html",
        page="invocation",
        title=f"Invocation {data['invocation_id']}",
        data=data,
        generated_at=data["generated_at"],
    )


async def invocation_fragment(request: Request) -> Response:
    data = await _invocation(request)
    if data is None:
        return HTMLResponse("<p class='error' id='missing'>This invocation is gone.</p>", 404)
    return fragment(request, "_invocation.html", data=data, generated_at=data["generated_at"])


async def _post_allowed(request: Request) -> bool:
    return await state_of(request).guard.post_allowed(request)


async def cancel_form(request: Request) -> Response:
    if not await _post_allowed(request):
        return forbidden(request.url.path)
    invocation_id = request.path_params["invocation_id"]
    page = f"/invocations/{quote(invocation_id)}"
    try:
        await read(request, actions.cancel, invocation_id)
    except actions.ActionError as exc:
        return message(request, str(exc), exc.status_code, page)
    return RedirectResponse(f"{page}?done=cancel", 303)


async def retry_form(request: Request) -> Response:
    if not await _post_allowed(request):
        return forbidden(request.url.path)
    invocation_id = request.path_params["invocation_id"]
    try:
        done = await read(request, actions.retry, invocation_id)
    except actions.ActionError as exc:
        return message(request, str(exc), exc.status_code, f"/invocations/{quote(invocation_id)}")
    return RedirectResponse(f"/invocations/{quote(done['new_invocation_id'])}?done=retry", 303)


# --- limits and runners ------------------------------------------------------------------------


async def limits_page(request: Request) -> Response:
    data = await read(request, limits_data, now())
    return render(
        request,
        "limits.html",
        page="limits",
        title="Limits",
        data=data,
        generated_at=data["generated_at"],
    )


async def limits_fragment(request: Request) -> Response:
    data = await read(request, limits_data, now())
    return fragment(request, "_limits.html", data=data, generated_at=data["generated_at"])


async def override_form(request: Request) -> Response:
    if not await _post_allowed(request):
        return forbidden(request.url.path)
    form = await request.form()
    concurrency, rate = form.get("concurrency"), form.get("rate")
    try:
        await read(
            request,
            actions.set_override,
            request.path_params["name"],
            concurrency if isinstance(concurrency, str) else None,
            rate.strip() if isinstance(rate, str) else None,
        )
    except actions.ActionError as exc:
        return message(request, str(exc), exc.status_code, "/limits")
    return RedirectResponse("/limits?done=override", 303)


async def reset_form(request: Request) -> Response:
    if not await _post_allowed(request):
        return forbidden(request.url.path)
    try:
        await read(request, actions.reset_override, request.path_params["name"])
    except actions.ActionError as exc:
        return message(request, str(exc), exc.status_code, "/limits")
    return RedirectResponse("/limits?done=reset", 303)


async def runners_page(request: Request) -> Response:
    data = await read(request, runners_data, now())
    return render(
        request,
        "runners.html",
        page="runners",
        title="Runners",
        data=data,
        generated_at=data["generated_at"],
    )


async def runners_fragment(request: Request) -> Response:
    data = await read(request, runners_data, now())
    return fragment(request, "_runners.html", data=data, generated_at=data["generated_at"])
