"""What every route of one monitor needs, kept on the Starlette app's ``state.monitor``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import jinja2
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from taskgate.app import App
from taskgate.monitor.auth import Guard


@dataclass(frozen=True)
class MonitorState:
    """The app it reads, its guard (token, CSRF), its templates and its metrics registry."""

    app: App
    guard: Guard
    env: jinja2.Environment
    registry: CollectorRegistry


def state_of(request: Request) -> MonitorState:
    """The monitor state of the app serving ``request``."""
    return cast(MonitorState, request.app.state.monitor)
