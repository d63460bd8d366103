"""Backend URLs: their form is checked at App(...) without connecting; passwords are masked."""

from __future__ import annotations

import inspect

import pytest

from taskgate import App
from taskgate.backends import BackendOptions, create_backend
from taskgate.errors import ConfigError
from taskgate.urls import REDIS_URL_OPTIONS, parse_backend_url, redact_url, scrub_password

# --- accepted forms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "sqlite_path"),
    [
        ("memory://", "memory", None),
        ("sqlite:///relative/dir/x.db", "sqlite", "relative/dir/x.db"),
        ("sqlite:////absolute/x.db", "sqlite", "/absolute/x.db"),
        ("redis://", "redis", None),
        ("redis://localhost", "redis", None),
        ("redis://127.0.0.1:6380/3", "redis", None),
        ("REDIS://Host:6380/", "redis", None),
        ("redis://:pw@[::1]:6380/0", "redis", None),
        ("redis://user:pw@host/15?socket_timeout=2.5&client_name=me", "redis", None),
        ("redis://host?db=4&max_connections=10&retry_on_timeout=yes", "redis", None),
        (
            "rediss://:pw@host:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required",
            "rediss",
            None,
        ),
    ],
)
def test_valid_urls_are_accepted(url: str, scheme: str, sqlite_path: str | None) -> None:
    parsed = parse_backend_url(url)
    assert (parsed.scheme, parsed.sqlite_path) == (scheme, sqlite_path)
    App(backend=url)  # constructing never connects


# --- refused forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nosuchscheme://x", "unsupported scheme 'nosuchscheme'"),
        ("not a url", "not a URL"),
        ("redis:host", "not a URL"),
        ("memory://x", "just 'memory://'"),
        ("memory://?x=1", "just 'memory://'"),
        ("sqlite://", "sqlite:///relative/path.db"),
        ("sqlite://host/x.db", "sqlite:///relative/path.db"),
        ("sqlite:///dir/", "sqlite:///relative/path.db"),
        ("sqlite:///x.db?mode=ro", "sqlite:///relative/path.db"),
        ("sqlite:///:memory:", "memory://"),
        ("redis://host/abc", "database"),
        ("redis://host/-1", "database"),
        ("redis://host/0/1", "database"),
        ("redis://host:notaport/0", "port"),
        ("redis://host:0/0", "port"),
        ("redis://host:65536/0", "port"),
        ("redis://[bad", "malformed host"),
        ("redis://host/0#x", "'#'"),
        ("redis://host/0?db=1", "given twice"),
        ("redis://host?db=1&db=2", "given twice"),
        ("redis://host?db=x", "'db' must be"),
        ("redis://host?socket_timeout=nan", "'socket_timeout' must be"),
        ("redis://host?socket_timeout=-1", "'socket_timeout' must be"),
        ("redis://host?retry_on_timeout=maybe", "'retry_on_timeout' must be"),
        ("redis://host?max_connections=0", "'max_connections' must be"),
        ("redis://host?decode_responses=true", "unknown query option 'decode_responses'"),
        ("redis://host?ssl_ca_certs=/ca.pem", "needs rediss://"),
        ("rediss://host?ssl_cert_reqs=always", "'ssl_cert_reqs' must be"),
        ("redis://host?client_name=", "'client_name' must be"),
    ],
)
def test_malformed_urls_raise_config_error_at_construction(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        App(backend=url)
    message = str(info.value)
    assert f"invalid backend URL {url!r}" in message
    assert reason in message


def test_the_url_is_checked_before_any_driver_is_needed() -> None:
    # create_backend refuses the same URLs with the same message (the backend property uses it).
    with pytest.raises(ConfigError, match="database"):
        create_backend(
            "redis://host/abc",
            BackendOptions(app_id="x", result_ttl_seconds=60, max_recoveries=3, lost_error=b""),
        )


def test_every_redis_option_taskgate_accepts_is_one_redis_py_accepts() -> None:
    redis_connection = pytest.importorskip("redis.connection")
    accepted = set(redis_connection.URL_QUERY_ARGUMENT_PARSERS)
    for cls in (redis_connection.AbstractConnection, redis_connection.SSLConnection):
        accepted |= set(inspect.signature(cls.__init__).parameters)
    assert accepted >= REDIS_URL_OPTIONS


def test_redis_py_reads_the_options_of_a_valid_url() -> None:
    redis = pytest.importorskip("redis")
    url = "rediss://:pw@host:6380/2?ssl_ca_certs=/etc/ca.pem&socket_timeout=2.5"
    parse_backend_url(url)
    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert kwargs["socket_timeout"] == 2.5
    assert kwargs["db"] == 2


# --- masking -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:hunter2@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://:hunter2@[bad", "rediss://***@[bad"),
        ("redis://:hunter2/x@host/0", "redis://***@host/0"),
        ("redis://:hunter2?x@host/0", "redis://***@host/0"),
        ("redis://host/0?password=hunter2&db=1", "redis://host/0?password=***&db=1"),
        ("rediss://host/0?ssl_password=hunter2", "rediss://host/0?ssl_password=***"),
        ("sqlite:////home/me@work/x.db", "sqlite:////home/me@work/x.db"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_masks_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_password_masks_the_url_and_its_password_in_any_text() -> None:
    url = "redis://:hunter%3F2@host/0?ssl_password=s3cret"
    text = f"bad {url}; password hunter?2 / hunter%3F2; key s3cret"
    scrubbed = scrub_password(text, url)
    assert "hunter" not in scrubbed
    assert "s3cret" not in scrubbed
