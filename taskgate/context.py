"""The invocation a thread is executing (``task.invocation``); the hook of waits in task code."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from taskgate.invocation import Invocation

P = ParamSpec("P")
T = TypeVar("T")

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


class _Hooks(threading.local):
    """The calling thread's hooks (class defaults: none; a runner thread sets its own)."""

    hook: WaitHook | None = None
    shield: WaitHook | None = None


hooks = _Hooks()
"""This thread's hooks: ``hooks.shield`` is what :func:`shielded` enters (None: nothing to
defer), for entry points too hot for the :func:`shielding` wrapper (``App._register_call``)."""
_hooks = hooks

WAIT_SLICE_SECONDS = 1.0
"""On a runner's thread, the longest one backend wait of a body blocks: an interrupt (a timeout,
a cancel) is raised only when the thread runs Python code again, which a wait blocked in C does
not do until it returns; so a waiting body sees its interrupt within this bound."""


def set_wait_hook(hook: WaitHook | None) -> None:
    """Make :func:`blocking_wait` on the calling thread enter ``hook()`` (a runner thread's)."""
    _hooks.hook = hook


def set_shield_hook(hook: WaitHook | None) -> None:
    """Make :func:`shielded` on the calling thread enter ``hook()`` (a runner thread's)."""
    _hooks.shield = hook


def shielded() -> AbstractContextManager[None]:
    """Defer interrupts (timeouts, cancels) of the running body for the ``with`` block.

    Around taskgate's own work on a body's behalf (a backend call, a lock of this process),
    which an exception raised at an arbitrary point could leave half done; the interrupt is
    raised when the block ends (see :mod:`taskgate.runner.interrupts`). Outside a runner's
    thread it does nothing.
    """
    hook = _hooks.shield
    return nullcontext() if hook is None else hook()


def shielding(func: Callable[P, T]) -> Callable[P, T]:
    """Decorate a public entry point of taskgate that task code may call: :func:`shielded`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        hook = _hooks.shield
        if hook is None:
            return func(*args, **kwargs)
        with hook():
            return func(*args, **kwargs)

    return wrapper


@contextmanager
def blocking_wait() -> Iterator[float | None]:
    """Wrap a wait for another invocation's result (nested waits, API.md section 9).

    On a runner's thread, the runner starts a stand-in for the duration of the wait (see
    :mod:`taskgate.runner.standins`), and the value is :data:`WAIT_SLICE_SECONDS`, the longest
    each backend wait may block; on any other thread it does nothing and the value is None.
    """
    hook = _hooks.hook
    if hook is None:
        yield None
        return
    waiting = hook()
    entered = False
    try:
        # Shielded: starting a thread while an interrupt is delivered to this one could hand
        # the exception to the new thread (CPython 3.11 gives a thread state being created the
        # creator's id for a moment).
        with shielded():
            waiting.__enter__()
            entered = True
        yield WAIT_SLICE_SECONDS
    finally:
        if entered:
            with shielded():
                waiting.__exit__(None, None, None)
