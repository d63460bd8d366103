"""Serving the monitor with uvicorn (what ``taskgate monitor`` runs).

The address is checked before anything binds: any host other than a loopback address needs a
token. uvicorn's access log is off: it would write every URL, including a ``?token=`` one,
and the token must never reach a log.
"""

from __future__ import annotations

import ipaddress
import logging

from taskgate.app import App
from taskgate.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def check_address(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback ``host`` without a token.

    Raises:
        ConfigError: ``host`` is not a loopback address and ``token`` is empty.
    """
    if not token and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the monitor on {host!r} without a token: anyone who can reach "
            "that address could read and cancel your invocations; set TASKGATE_MONITOR_TOKEN "
            "(or pass --token), or bind to 127.0.0.1"
        )


def monitor_url(host: str, port: int) -> str:
    """The URL to open (never with the token)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"


def serve(app: App, *, host: str, port: int, token: str | None) -> None:
    """Serve the monitor of ``app`` until interrupted (SIGINT/SIGTERM stop it cleanly).

    Raises:
        ConfigError: see :func:`check_address`.
    """
    check_address(host, token)
    import uvicorn

    from taskgate.monitor.webapp import create_monitor_app

    config = uvicorn.Config(
        create_monitor_app(app, token=token or None),
        host=host,
        port=port,
        access_log=False,
        log_config=None,  # the CLI configured logging; uvicorn adds no handlers of its own
        log_level="warning",
        server_header=False,
    )
    uvicorn.Server(config).run()
