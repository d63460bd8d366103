"""Backend URLs as they may be shown: the password masked (reprs, logs, CLI output, errors)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; malformed URLs are masked whole
    from the ``@`` on the left, so a password never leaks through a parse error."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        scheme, sep, rest = url.partition("://")
        if "@" not in rest:
            return url
        return f"{scheme}{sep}{MASK}@{rest.rsplit('@', 1)[1]}"
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:{MASK}@" if parts.username else f":{MASK}@"
    return urlunsplit(parts._replace(netloc=user + host))
