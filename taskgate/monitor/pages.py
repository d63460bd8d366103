"""The HTML routes: the overview, limits and runners pages (the invocation pages are in
:mod:`.invocation_pages`), their live fragments, and the limit override forms.

Each page is rendered from the same document its ``/api/`` twin returns (the functions of
:mod:`.overview`, :mod:`.invocations`, :mod:`.limits`, :mod:`.runners`). Its live part is a
``<div>`` that htmx reloads from ``/fragments/...`` every two seconds, so pages update without
a reload. Actions are plain forms (they work without JavaScript) that POST with the CSRF
field and redirect back (POST, redirect, GET).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from taskgate.monitor import actions, invocation_pages
from taskgate.monitor.auth import forbidden
from taskgate.monitor.charts import bar_chart
from taskgate.monitor.format import now
from taskgate.monitor.limits import limits_data
from taskgate.monitor.overview import overview_data
from taskgate.monitor.rendering import fragment, message, post_allowed, read, render
from taskgate.monitor.runners import runners_data
from taskgate.monitor.state import state_of

JsonObject = dict[str, Any]


def routes() -> list[BaseRoute]:
    """Every HTML route."""
    return [
        Route("/", overview_page),
        Route("/fragments/overview", overview_fragment),
        *invocation_pages.routes(),
        Route("/limits", limits_page),
        Route("/fragments/limits", limits_fragment),
        Route("/limits/{name:path}/override", override_form, methods=["POST"]),
        Route("/limits/{name:path}/reset", reset_form, methods=["POST"]),
        Route("/runners", runners_page),
        Route("/fragments/runners", runners_fragment),
    ]


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
    data = await read(request, overview_data, now(), state_of(request).stats.get)
    return render(
        request, "overview.html", page="overview", title="Overview", data=data, charts=charts(data)
    )


async def overview_fragment(request: Request) -> Response:
    data = await read(request, overview_data, now(), state_of(request).stats.get)
    return fragment(request, "_overview.html", data=data, charts=charts(data), **_at(data))


def _at(data: JsonObject) -> JsonObject:
    return {"generated_at": data["generated_at"]}


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
    if not await post_allowed(request):
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
    if not await post_allowed(request):
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
