"""What an operator does with an app besides calling tasks: declare limits and override them
live, read what they hold, cancel an invocation, purge the app.

:class:`AppOperations` is a base class of :class:`~taskgate.app.App`: these are ``App`` methods
(``app.set_limit(...)``, ``app.cancel(...)``), kept in a module of their own so that ``app.py``
holds the registry and the call path only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from taskgate import context
from taskgate.errors import InvocationNotFoundError
from taskgate.limit_admin import LimitInfo, describe_limits, reset_limit, set_limit
from taskgate.limits import Limit, LimitRegistry
from taskgate.logfields import log_fields
from taskgate.record import CancelResult, Rate

if TYPE_CHECKING:
    from taskgate.backends import Backend

logger = logging.getLogger(__name__)


class AppOperations:
    """Limits, overrides, cancel and purge: the operator's side of an :class:`~taskgate.App`."""

    _limits: LimitRegistry

    if TYPE_CHECKING:

        @property
        def backend(self) -> Backend:
            """The app's backend (defined by ``App``)."""
            ...

    # --- limits (API.md section 8) --------------------------------------------------------------

    def limit(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: str | Rate | None = None,
        key: str | tuple[str, ...] | None = None,
        fair_by: str | tuple[str, ...] | None = None,
    ) -> Limit:
        """Declare a named limit that tasks list in ``limits=[...]``; declaring stores nothing.

        Args:
            name: The limit's name (non-empty, no control characters, no ``#``).
            concurrency: At most this many invocations using it run at once (per key value).
            rate: ``"M/P"``: at most M starts within any window of P (``s``, ``m``, ``h``, ``d``
                or seconds: ``"120/m"``, ``"5/2.5s"``), per key value; or a ``Rate``.
            key: An argument name, or a tuple of them: one budget per value of those arguments.
            fair_by: An argument name, or a tuple of them: waiters of one budget are admitted
                round robin across the values of those arguments.

        Returns:
            The limit; declaring the same name with the same values returns the same object.

        Raises:
            InvalidTaskOptionsError: neither ``concurrency`` nor ``rate``, an invalid value, or
                ``name`` already declared with other values.
        """
        return self._limits.declare(
            name, concurrency=concurrency, rate=rate, key=key, fair_by=fair_by
        )

    def set_limit(
        self, name: str, *, concurrency: int | None = None, rate: str | Rate | None = None
    ) -> None:
        """Store a live override of limit ``name`` that every runner obeys from its next admission.

        The override replaces any previous one; a value left out (None) keeps the declared
        value. Raising a limit admits waiters at once; lowering one never interrupts running
        work. ``name`` need not be declared in this process (the runners using it may declare
        it elsewhere).

        Args:
            name: The limit's name.
            concurrency: The slot limit to apply instead of the declared one, or None to keep it.
            rate: The rate to apply instead of the declared one (``"M/P"`` or a ``Rate``), or
                None to keep it.

        Raises:
            InvalidTaskOptionsError: neither value given, or an invalid name or value.
            BackendUnavailableError: the store cannot be reached.
        """
        set_limit(self.backend, self._limits.declared, name, concurrency=concurrency, rate=rate)

    def reset_limit(self, name: str) -> None:
        """Delete the override of limit ``name`` (nothing if none): declared values apply again.

        Args:
            name: The limit's name.

        Raises:
            InvalidTaskOptionsError: an invalid name.
            BackendUnavailableError: the store cannot be reached.
        """
        reset_limit(self.backend, name)

    def limits(self) -> list[LimitInfo]:
        """Every limit declared in this process, overridden in the store or in use, by name.

        Returns:
            One :class:`~taskgate.limit_admin.LimitInfo` per limit: effective values (override
            over declared), whether overridden, slots held, waiters and starts in the current
            rate window (summed over key values), and the detail per key value.

        Raises:
            BackendUnavailableError: the store cannot be reached.
        """
        return describe_limits(self.backend, self._limits.declared)

    # --- cancel and purge ----------------------------------------------------------------------

    def purge(self) -> None:
        """Delete every invocation, result, queue entry and slot of this app.

        Other apps on the same store are untouched; idle runners keep waiting and start the
        next call at once. Handles to deleted invocations then raise
        ``InvocationNotFoundError``.

        Raises:
            BackendUnavailableError: the store cannot be reached.
        """
        self.backend.purge()

    @context.shielding
    def cancel(self, invocation_id: str) -> bool:
        """Cancel invocation ``invocation_id`` (what ``invocation.cancel()`` and ``taskgate
        cancel`` do): a waiting one is ``CANCELLED`` at once, a running one is interrupted by
        its runner and then ``CANCELLED``. (Eager invocations are not stored: their own
        ``cancel()`` returns False.)

        Args:
            invocation_id: The invocation's full id.

        Returns:
            True when cancelled or requested now; False when final already (or requested
            before).

        Raises:
            InvocationNotFoundError: no such invocation in this app.
        """
        result = self.backend.cancel(invocation_id)
        if result is CancelResult.MISSING:
            raise InvocationNotFoundError(invocation_id)
        logger.info(
            "cancel of invocation %s: %s",
            invocation_id,
            result.value,
            extra=log_fields(invocation_id),
        )
        return result is not CancelResult.FINAL
