"""The invocation a thread is executing (``task.invocation``); the hook of waits in task code."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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


# --- waits inside task code -----------------------------------------------------------------

WaitHook = Callable[[], AbstractContextManager[None]]
_hooks = threading.local()


def set_wait_hook(hook: WaitHook | None) -> None:
    """Make :func:`blocking_wait` on the calling thread enter ``hook()`` (a runner thread's)."""
    _hooks.hook = hook


@contextmanager
def blocking_wait() -> Iterator[None]:
    """Wrap a wait for another invocation's result (nested waits, API.md section 9).

    On a runner's thread, the runner starts a stand-in for the duration of the wait (see
    :mod:`taskgate.runner.standins`); on any other thread it does nothing.
    """
    hook: WaitHook | None = getattr(_hooks, "hook", None)
    if hook is None:
        yield
        return
    with hook():
        yield
