"""The invocation a thread is executing, for ``task.invocation`` inside task code."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskgate.invocation import Invocation

_current: ContextVar[Invocation[Any] | None] = ContextVar("taskgate_invocation", default=None)


def current_invocation() -> Invocation[Any] | None:
    """The invocation executing in this context, or None outside task code."""
    return _current.get()


def enter(invocation: Invocation[Any]) -> Token[Invocation[Any] | None]:
    """Mark ``invocation`` as executing; pass the token to :func:`leave` afterwards."""
    return _current.set(invocation)


def leave(token: Token[Invocation[Any] | None]) -> None:
    """Undo the matching :func:`enter`."""
    _current.reset(token)
