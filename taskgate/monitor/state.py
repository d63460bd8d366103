"""What every route of one monitor needs, kept on the Starlette app's ``state.monitor``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import jinja2
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from taskgate.app import App
from taskgate.monitor.auth import Guard
from taskgate.monitor.stats_cache import StatsCache


@dataclass(frozen=True)
class MonitorState:
    """The app it reads, its guard (token, CSRF), its templates, its metrics registry and the
    ``stats()`` read its pages and metrics share."""

    app: App
    guard: Guard
    env: jinja2.Environment
    registry: CollectorRegistry
    stats: StatsCache


def state_of(request: Request) -> MonitorState:
    """The monitor state of the app serving ``request``."""
    return cast(MonitorState, request.app.state.monitor)
