"""Backend URLs: their form checked without connecting, and shown with the password masked.

:func:`parse_backend_url` runs when settings are built or assigned, so a malformed URL fails at
``App(...)`` although connecting stays lazy. It imports no driver: a Redis URL is checked here
against the URL options of redis-py that taskgate supports.

:func:`redact_url` is what every repr, log line, CLI header and error message shows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

from taskgate.errors import ConfigError

MASK = "***"

SUPPORTED_SCHEMES = ("memory", "sqlite", "redis", "rediss")

_FORMS = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "redis://[:password@]host:port/db or rediss://... (TLS)"
)

# Query options that carry a secret: masked like the password of the authority part.
_SECRET_OPTIONS = ("password", "ssl_password")
_SECRET_OPTION = re.compile(rf"([?&](?:{'|'.join(_SECRET_OPTIONS)})=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``.

    A ``password=`` / ``ssl_password=`` query option is masked too. A malformed URL, or one whose
    password holds an unencoded ``/``, ``?`` or ``#``, is masked whole up to its last ``@``, so
    a password never leaks through a parse error.
    """
    url = _SECRET_OPTION.sub(rf"\g<1>{MASK}", url)
    scheme, sep, rest = url.partition("://")
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _mask_to_last_at(scheme, sep, rest)
    if "@" not in parts.netloc and "@" in rest and scheme.lower() not in ("sqlite", "memory"):
        # "redis://:ab/cd@host": the '/' ended the authority early, the password is in the path.
        return _mask_to_last_at(scheme, sep, rest)
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:{MASK}@" if parts.username else f":{MASK}@"
    return urlunsplit(parts._replace(netloc=user + host))


def scrub_password(text: str, url: str) -> str:
    """``text`` (a driver's message, say) with every secret of ``url`` (raw or
    percent-decoded) replaced by ``***``: its password and its secret query options."""
    text = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""]
    except ValueError:
        parts, secrets = None, []
    if parts is not None:
        secrets += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_OPTIONS]
    for secret in secrets:
        for form in (secret, unquote(secret)):
            if form:
                text = text.replace(form, MASK)
    return text


def _mask_to_last_at(scheme: str, sep: str, rest: str) -> str:
    if "@" not in rest:
        return scheme + sep + rest
    return f"{scheme}{sep}{MASK}@{rest.rsplit('@', 1)[1]}"


@dataclass(frozen=True)
class BackendURL:
    """A backend URL whose form has been checked (nothing was connected or created).

    Attributes:
        url: The URL as given.
        scheme: ``"memory"``, ``"sqlite"``, ``"redis"`` or ``"rediss"``.
        sqlite_path: For ``sqlite``: the file path as written (relative or absolute).
    """

    url: str = field(repr=False)  # may hold a password
    scheme: str
    sqlite_path: str | None = None


def parse_backend_url(url: str) -> BackendURL:
    """Check the form of a backend URL, without connecting and without importing a driver.

    Raises:
        ConfigError: the URL is malformed, names an unsupported scheme, or (Redis) has a bad
            port, database number or query option. The message shows the URL password-masked.
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SUPPORTED_SCHEMES:
        what = f"unsupported scheme {scheme!r}" if sep else "not a URL"
        _fail(url, f"{what}; supported forms: {_FORMS}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsing the port is what checks it
    except ValueError:
        # Failed outside this block: urllib's error, which would become the __context__ shown
        # in tracebacks, may quote part of a password.
        parts = None
    if parts is None:
        _fail(url, _authority_problem(url))
    if scheme == "memory":
        if parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
            _fail(url, "a memory URL is just 'memory://'")
        return BackendURL(url, scheme)
    if scheme == "sqlite":
        return BackendURL(url, scheme, _sqlite_path(url, parts))
    _check_redis(url, parts)
    return BackendURL(url, scheme)


def _fail(url: str, what: str) -> NoReturn:
    raise ConfigError(f"invalid backend URL {redact_url(url)!r}: {what}")


def _authority_problem(url: str) -> str:
    # urllib's own messages quote the faulty text, which may be part of a password: never shown.
    if "[" in url or "]" in url:
        return "malformed host (an IPv6 address is written [::1])"
    return (
        "the port must be a whole number from 1 to 65535 (percent-encode '/', '?', '#' and '@' "
        "in a password)"
    )


def _sqlite_path(url: str, parts: SplitResult) -> str:
    # urlsplit keeps the slash after the empty host: strip exactly one.
    file_path = parts.path[1:] if parts.path.startswith("/") else parts.path
    extra = parts.netloc or parts.query or parts.fragment
    if extra or not file_path or file_path.endswith("/") or "\x00" in file_path:
        _fail(url, "use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if file_path == ":memory:":
        _fail(url, "an in-memory SQLite database is per connection; use memory:// instead")
    return file_path


_TRUE_FALSE = frozenset({"0", "f", "false", "n", "no", "1", "t", "true", "y", "yes"})


def _whole(minimum: int) -> Callable[[str], bool]:
    return lambda value: value.isdigit() and int(value) >= minimum


def _positive_seconds(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number > 0


def _flag(value: str) -> bool:
    return value.lower() in _TRUE_FALSE


def _text(value: str) -> bool:
    return bool(value)


def _cert_reqs(value: str) -> bool:
    return value.lower() in ("none", "optional", "required")


# The URL query options of redis-py (5.0 and later) that make sense for taskgate, with what a
# valid value looks like. Anything else would only fail at the first connection (redis-py passes
# unknown options to its connection class), or silently change what taskgate relies on
# (decode_responses, protocol).
_REDIS_OPTIONS: dict[str, tuple[Callable[[str], bool], str]] = {
    "db": (_whole(0), "a whole number >= 0"),
    "socket_timeout": (_positive_seconds, "a positive number of seconds"),
    "socket_connect_timeout": (_positive_seconds, "a positive number of seconds"),
    "socket_keepalive": (_flag, "true or false"),
    "retry_on_timeout": (_flag, "true or false"),
    "max_connections": (_whole(1), "a whole number >= 1"),
    "health_check_interval": (_whole(0), "a whole number of seconds >= 0"),
    "client_name": (_text, "a name"),
    "username": (_text, "a user name"),
    "password": (_text, "a password"),
}
_REDIS_TLS_OPTIONS: dict[str, tuple[Callable[[str], bool], str]] = {
    "ssl_ca_certs": (_text, "the path of a PEM file of CA certificates"),
    "ssl_ca_path": (_text, "a directory of CA certificates"),
    "ssl_certfile": (_text, "the path of a client certificate"),
    "ssl_keyfile": (_text, "the path of a client key"),
    "ssl_password": (_text, "the password of the client key"),
    "ssl_cert_reqs": (_cert_reqs, "none, optional or required"),
    "ssl_check_hostname": (_flag, "true or false"),
}
REDIS_URL_OPTIONS = frozenset(_REDIS_OPTIONS) | frozenset(_REDIS_TLS_OPTIONS)
"""Every query option a ``redis://`` / ``rediss://`` URL may carry (``ssl_*`` with rediss only)."""


def _check_redis(url: str, parts: SplitResult) -> None:
    if parts.port == 0:
        _fail(url, "the port must be a whole number from 1 to 65535")
    path = unquote(parts.path)
    if path not in ("", "/") and not _whole(0)(path[1:]):
        _fail(url, "the database is a whole number >= 0 after the host, as in redis://host:6379/0")
    if parts.fragment:
        _fail(url, "a Redis URL has no '#' part")
    tls = parts.scheme.lower() == "rediss"
    seen: set[str] = set()
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        known = _REDIS_OPTIONS.get(name) or (_REDIS_TLS_OPTIONS.get(name) if tls else None)
        if known is None:
            hint = "; it needs rediss:// (TLS)" if name in _REDIS_TLS_OPTIONS else ""
            _fail(
                url,
                f"unknown query option {name!r}{hint}; known options: "
                f"{', '.join(sorted(_REDIS_OPTIONS if not tls else REDIS_URL_OPTIONS))}",
            )
        if name in seen:
            _fail(url, f"query option {name!r} is given twice")
        seen.add(name)
        check, expected = known
        if not check(value):
            _fail(url, f"query option {name!r} must be {expected}")
        if name == "db" and path not in ("", "/"):
            _fail(url, "the database is given twice (in the path and as ?db=)")
