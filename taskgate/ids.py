"""Invocation ids: random version 4 UUID strings, made on the path of every call."""

from __future__ import annotations

import os

# The variant nibble of a version 4 UUID: 10xx in binary, the low two bits random.
_VARIANT_DIGIT = dict(zip("0123456789abcdef", "89ab" * 4, strict=True))


def new_invocation_id() -> str:
    """A new random invocation id: a version 4 UUID string, as ``str(uuid.uuid4())`` gives.

    The same 122 random bits from ``os.urandom``, in the same format, for less than half the
    cost: ``uuid.uuid4()`` builds a ``UUID`` object in Python only for ``str()`` to format it
    again, on the path of every call.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:]}"
