"""The web monitor (``taskgate monitor``, API.md section 11): pages, a JSON API and metrics.

Installed with ``pip install 'taskgate[monitor]'`` (Starlette, uvicorn, Jinja2,
python-multipart, prometheus_client). Importing :mod:`taskgate` never imports this package;
importing it without the extra raises :class:`~taskgate.errors.ConfigError` naming the extra.

Layout: :mod:`~taskgate.monitor.webapp` builds the Starlette app; :mod:`.auth` checks the token
and CSRF; :mod:`.overview`, :mod:`.invocations`, :mod:`.limits` and :mod:`.runners` compute
what each page (and its ``/api/`` twin) shows; :mod:`.actions` cancels, retries and overrides;
:mod:`.pages` and :mod:`.invocation_pages` (sharing :mod:`.rendering`) and :mod:`.api` are
the HTML and JSON routes; :mod:`.metrics` serves ``/metrics``; :mod:`.serve` runs it with
uvicorn. Templates (Jinja2, autoescaped) and static files (htmx, the stylesheet) sit next to
them.
"""

from __future__ import annotations

from taskgate.errors import ConfigError

MISSING_EXTRA = (
    "the web monitor needs its extra dependencies (Starlette, uvicorn, Jinja2, "
    "python-multipart, prometheus_client): pip install 'taskgate[monitor]'"
)

try:
    import jinja2 as _jinja2  # noqa: F401
    import prometheus_client as _prometheus_client  # noqa: F401
    import starlette as _starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - the dev environment has the extra
    raise ConfigError(f"{MISSING_EXTRA} ({exc})") from exc

from taskgate.monitor.webapp import create_monitor_app  # noqa: E402

__all__ = ["MISSING_EXTRA", "create_monitor_app"]
