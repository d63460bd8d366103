"""The periodic scheduler of a runner: calls ``cron=``/``every=`` tasks once per tick.

Each runner that serves the queue of a periodic task runs one scheduler thread (only when the
app has such tasks). It sleeps until the next tick of any of them (an event wait with that
timeout, cut short by a stop: no polling), then registers the tick through
``Backend.register_tick``, which lets exactly one runner of all those that reach a tick
register it: the others find it (or a later one) taken and change nothing. A tick's invocation
is a call with every parameter at its default, with ``scheduled_for`` = the tick.

Ticks that passed while no runner was up are not made up: a scheduler starts from the first
tick after it starts, and one that falls behind (a slow store) registers the tick that was due
and goes on from the next one after now. Tasks are those registered with the app when the
runner starts (the app's module and what it imports). In a ProcessRunner each worker process
runs its own scheduler (the supervisor imports no tasks it would run): more runners reaching a
tick cost one refused ``register_tick`` each, never a second invocation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskgate.errors import BackendError, BackendUnavailableError, ConfigError
from taskgate.logfields import log_fields
from taskgate.schedule import is_periodic, next_tick

if TYPE_CHECKING:
    from taskgate.app import App
    from taskgate.task import Task

logger = logging.getLogger(__name__)

# The longest the scheduler sleeps at once (see _loop: a wall clock stepped back).
MAX_WAIT_SECONDS = 60.0


def periodic_tasks(app: App, queues: frozenset[str] | None) -> list[Task[Any, Any]]:
    """The app's periodic tasks whose queue is among ``queues`` (None: every queue)."""
    return [
        task
        for _, task in sorted(app.tasks.items())
        if is_periodic(task.options) and (queues is None or task.options.queue in queues)
    ]


class PeriodicScheduler:
    """A daemon thread registering the ticks of ``tasks`` until :meth:`stop`.

    A :class:`BackendUnavailableError` skips that tick (other runners may register it); any
    other :class:`BackendError` or a :class:`ConfigError` goes to ``on_fatal``.
    """

    def __init__(
        self,
        app: App,
        runner_id: str,
        tasks: list[Task[Any, Any]],
        on_fatal: Callable[[BackendError | ConfigError], None] | None = None,
    ) -> None:
        self._app = app
        self._runner_id = runner_id
        self._tasks = tasks
        self._on_fatal = on_fatal
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"taskgate-periodic-{runner_id}", daemon=True
        )

    def start(self) -> None:
        """Start the thread; the first ticks are the first ones after now."""
        logger.info(
            "runner %s schedules periodic task(s): %s",
            self._runner_id,
            ", ".join(_describe(task) for task in self._tasks),
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and wait for the thread (at most one registration in progress)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        now = time.time()
        due = {task.task_id: next_tick(task.options, now) for task in self._tasks}
        while True:
            # Woken at least every MAX_WAIT_SECONDS: a wall clock stepped back is noticed then,
            # and the ticks are computed again from the new time instead of waited for.
            wait = min(min(due.values()) - time.time(), MAX_WAIT_SECONDS)
            if self._stop.wait(max(0.0, wait)):
                return
            before, now = now, time.time()
            if now < before:
                due = {task.task_id: next_tick(task.options, now) for task in self._tasks}
            for task in self._tasks:
                tick = due[task.task_id]
                if tick > now:
                    continue
                self._register(task, tick)
                due[task.task_id] = next_tick(task.options, max(tick, time.time()))
                if self._stop.is_set():
                    return

    def _register(self, task: Task[Any, Any], tick: float) -> None:
        """Register ``tick`` of ``task`` unless another runner did; never raises."""
        try:
            record = self._app._build_record(task, task._bind((), {}), scheduled_for=tick)
            registered = self._app.backend.register_tick(record, tick)
        except BackendUnavailableError as exc:
            logger.warning(
                "runner %s could not register tick %s of periodic task %s: %s",
                self._runner_id,
                tick,
                task.task_id,
                exc,
            )
            return
        except (BackendError, ConfigError) as exc:
            if self._on_fatal is not None:
                self._on_fatal(exc)
            else:
                logger.error("runner %s periodic scheduler: %s", self._runner_id, exc)
            return
        except Exception as exc:  # SerializationError of a default, any other: log, go on
            logger.error(
                "runner %s cannot register tick %s of periodic task %s: %s",
                self._runner_id,
                tick,
                task.task_id,
                exc,
                exc_info=exc,
            )
            return
        if registered is None:
            logger.debug(
                "tick %s of periodic task %s was registered by another runner", tick, task.task_id
            )
            return
        logger.info(
            "runner %s registered tick %s of periodic task %s: invocation %s",
            self._runner_id,
            tick,
            task.task_id,
            registered.invocation_id,
            extra=log_fields(registered.invocation_id, task.task_id, None, self._runner_id),
        )


def _describe(task: Task[Any, Any]) -> str:
    options = task.options
    when = f"cron {options.cron!r}" if options.cron is not None else f"every {options.every} s"
    return f"{task.task_id} ({when})"
