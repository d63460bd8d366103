"""What every HTML route shares: the layout's context, fragments, reads in the thread pool,
and the short message page.

Backend reads block, so every read runs in Starlette's thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from taskgate.cli.json_output import iso_time
from taskgate.monitor.auth import csrf_cookie
from taskgate.monitor.format import now
from taskgate.monitor.overview import STATUSES
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
    if request.cookies.get(csrf_cookie(request)) != csrf:
        state.guard.set_csrf(request, response, csrf)
    return response


def fragment(request: Request, template: str, **ctx: Any) -> HTMLResponse:
    """A page's live part alone (what htmx swaps in)."""
    _stamp(ctx)
    return HTMLResponse(state_of(request).env.get_template(template).render(**ctx))


def _stamp(ctx: JsonObject) -> None:
    """``generated_at`` (the live region's time) from the page's data, else now."""
    data = ctx.get("data")
    stamp = data.get("generated_at") if isinstance(data, dict) else None
    ctx.setdefault("generated_at", stamp or iso_time(now()))


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


async def post_allowed(request: Request) -> bool:
    """Whether a POST passes the CSRF check (see :mod:`taskgate.monitor.auth`)."""
    return await state_of(request).guard.post_allowed(request)


def iso_now() -> str:
    """Now as an ISO-8601 UTC text (a live region's time)."""
    return iso_time(now()) or ""
