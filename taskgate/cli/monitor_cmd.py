"""``taskgate monitor``: serve the web monitor of an app (pages, ``/api/``, ``/metrics``).

The monitor's dependencies are an extra (``pip install 'taskgate[monitor]'``): this module
imports them only when the command runs, so the rest of the command line works without them.
"""

from __future__ import annotations

import click

from taskgate.cli.app_loading import open_app
from taskgate.cli.common import app_options
from taskgate.cli.logging_setup import LOG_LEVELS, chosen_log_format, configure_logging
from taskgate.errors import ConfigError

TOKEN_ENV = "TASKGATE_MONITOR_TOKEN"


@click.command(short_help="Serve the web monitor (pages, JSON API, Prometheus metrics).")
@app_options
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but a loopback address needs a token.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    show_envvar=True,
    default=None,
    metavar="SECRET",
    help=(
        "Every request must carry this token (Authorization: Bearer, or ?token= once, which "
        "sets a cookie). Prefer the environment variable: a command line is readable by "
        "every local user."
    ),
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
)
def monitor(
    app_spec: str,
    backend_url: str | None,
    host: str,
    port: int,
    token: str | None,
    log_level: str,
) -> None:
    """Serve the web monitor of the app: overview, invocations, limits, runners, live.

    Pages at /, /invocations, /limits, /runners; JSON at /api/...; Prometheus text at
    /metrics (see docs/operations/monitor.md). Listens on 127.0.0.1 by default; any other
    address requires a token. Actions (cancel, retry, limit overrides) are POSTs protected
    against CSRF. Needs the extra: pip install 'taskgate[monitor]'. Never creates a store;
    like the other commands, upgrades an SQLite file of an older schema when it opens it.
    """
    try:
        from taskgate.monitor.serve import check_address, monitor_url, serve
    except ImportError as exc:  # pragma: no cover - the dev environment has the extra
        raise ConfigError(
            "taskgate monitor needs its extra dependencies: pip install 'taskgate[monitor]' "
            f"({exc})"
        ) from exc
    check_address(host, token)  # before the app is even loaded: nothing binds
    app = open_app(app_spec, backend_url, existing_store=True)
    configure_logging(log_level, chosen_log_format())
    protected = "token required" if token else "no token: loopback only"
    click.echo(
        f"taskgate monitor of app {app.app_id} on {app.conf.backend_display}: "
        f"{monitor_url(host, port)} ({protected}); Ctrl+C to stop"
    )
    serve(app, host=host, port=port, token=token)
