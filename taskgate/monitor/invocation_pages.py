"""The invocation pages: the list (filters, id prefix, cursor pages), one invocation's detail,
their live fragments, and the cancel and retry forms (POST, CSRF, redirect back)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from taskgate.ids import ID_LENGTH
from taskgate.monitor import actions
from taskgate.monitor.auth import forbidden
from taskgate.monitor.format import now
from taskgate.monitor.invocations import (
    PAGE_DEFAULT,
    BadRequest,
    invocation_data,
    invocations_data,
    parse_filters,
)
from taskgate.monitor.rendering import fragment, iso_now, message, post_allowed, read, render
from taskgate.monitor.state import state_of

JsonObject = dict[str, Any]

FILTER_KEYS = ("task", "status", "prefix", "limit")


def routes() -> list[BaseRoute]:
    """The invocation pages, fragments and forms."""
    return [
        Route("/invocations", invocations_page),
        Route("/fragments/invocations", invocations_fragment),
        Route("/invocations/{invocation_id}", invocation_page),
        Route("/fragments/invocations/{invocation_id}", invocation_fragment),
        Route("/invocations/{invocation_id}/cancel", cancel_form, methods=["POST"]),
        Route("/invocations/{invocation_id}/retry", retry_form, methods=["POST"]),
    ]


def _query(filters: JsonObject, cursor: str | None) -> str:
    """``?task=...`` for these filters and ``cursor`` (empty values left out)."""
    pairs = [(key, str(filters[key])) for key in FILTER_KEYS if filters.get(key)]
    if filters.get("limit") == PAGE_DEFAULT:
        pairs = [(k, v) for k, v in pairs if k != "limit"]
    if cursor:
        pairs.append(("cursor", cursor))
    return f"?{urlencode(pairs)}" if pairs else ""


async def _invocations(request: Request) -> JsonObject:
    filters = parse_filters(dict(request.query_params))
    data: JsonObject = await read(request, invocations_data, filters)
    data["generated_at"] = iso_now()
    return {
        "data": data,
        "query": _query(filters, filters["cursor"]),
        "next_query": _query(filters, data["next_cursor"]),
        "first_query": _query(filters, None),
        "generated_at": data["generated_at"],
    }


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
        data["generated_at"] = iso_now()
    return data


async def invocation_page(request: Request) -> Response:
    given = request.path_params["invocation_id"]
    data = await _invocation(request)
    if data is None:
        # Shorter than an invocation id: perhaps a prefix, as ``taskgate inspect`` accepts. It
        # is looked up in one bounded page read, never with ``find_ids`` (which scans the whole
        # keyspace on Redis); an unknown full-length id is not looked up at all.
        if len(given) < ID_LENGTH:
            page = await run_in_threadpool(
                lambda: state_of(request).app.backend.page_invocations(id_prefix=given, limit=2)
            )
            matches = [record.invocation_id for record in page.records]
            if len(matches) == 1 and page.next_cursor is None:
                return RedirectResponse(f"/invocations/{quote(matches[0])}", 303)
            if matches:
                text = (
                    f"{given!r} is the beginning of more than one invocation id (or of one "
                    "among the newest, perhaps of older ones too): give more of the id."
                )
                return message(request, text, 404, f"/invocations?prefix={quote(given)}")
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


async def cancel_form(request: Request) -> Response:
    if not await post_allowed(request):
        return forbidden(request.url.path)
    invocation_id = request.path_params["invocation_id"]
    page = f"/invocations/{quote(invocation_id)}"
    try:
        await read(request, actions.cancel, invocation_id)
    except actions.ActionError as exc:
        return message(request, str(exc), exc.status_code, page)
    return RedirectResponse(f"{page}?done=cancel", 303)


async def retry_form(request: Request) -> Response:
    if not await post_allowed(request):
        return forbidden(request.url.path)
    invocation_id = request.path_params["invocation_id"]
    try:
        done = await read(request, actions.retry, invocation_id)
    except actions.ActionError as exc:
        return message(request, str(exc), exc.status_code, f"/invocations/{quote(invocation_id)}")
    return RedirectResponse(f"/invocations/{quote(done['new_invocation_id'])}?done=retry", 303)
