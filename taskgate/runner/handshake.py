"""What a ProcessRunner tells each worker process it starts, on the worker's stdin.

Not on the command line: any local user can read a command line (``/proc/<pid>/cmdline``), and
the settings hold the backend URL with its password. A module of its own, so that the
supervisor does not import the worker's entry point.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from taskgate.errors import ConfigError

LOG_LEVEL_ENV = "TASKGATE_WORKER_LOG_LEVEL"


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """What a supervisor tells a worker on its stdin (never on its command line)."""

    settings: dict[str, Any] = dataclasses.field(repr=False)  # holds the backend password
    """The app's settings; ``backend`` may hold a password."""
    runner_id: str
    """The worker's runner id, chosen by the supervisor so it can take back a dead one's work."""
    slot: int
    supervisor_id: str
    report_fd: int
    """The inherited pipe to report lease renewals on."""
    argv: list[str] = dataclasses.field(default_factory=list)
    """The supervisor's ``sys.argv``: what the parent's main script sees as its own when a
    worker runs it (as multiprocessing gives its children), and no business of the command
    line, which any local user can read."""

    def to_line(self) -> bytes:
        """The JSON line to write to the worker's stdin."""
        return json.dumps(dataclasses.asdict(self)).encode() + b"\n"

    @classmethod
    def read(cls, fd: int = 0) -> WorkerConfig:
        """Read the first line of ``fd`` (raw reads: the rest of stdin is the parent's liveness).

        Raises:
            ConfigError: the parent closed stdin first, or the line is not a worker config.
        """
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ConfigError("the supervisor closed stdin before sending the worker config")
            data += chunk
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid worker config on stdin: {exc}") from exc
