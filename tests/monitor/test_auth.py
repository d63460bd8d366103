"""The token (401 without it; bearer, one-time query parameter and cookie) and CSRF (403)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from taskgate import App
from taskgate.monitor import create_monitor_app
from taskgate.monitor.auth import Guard, csrf_cookie_name, session_cookie_name
from tests.monitor.support import BASE_URL, LOOPBACK_CLIENT, csrf_token

TOKEN = "s3cret-token"


@pytest.fixture
def guarded(app: App) -> Iterator[TestClient]:
    """A client of the monitor of ``app`` with a token set."""
    with TestClient(create_monitor_app(app, token=TOKEN)) as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/limits", "/static/htmx.min.js", "/fragments/runners"])
def test_pages_without_the_token_are_refused(guarded: TestClient, path: str) -> None:
    response = guarded.get(path)
    assert response.status_code == 401
    assert 'id="unauthorized"' in response.text
    assert TOKEN not in response.text


@pytest.mark.parametrize("path", ["/api/overview", "/api/limits", "/metrics"])
def test_api_and_metrics_without_the_token_get_json_401(guarded: TestClient, path: str) -> None:
    response = guarded.get(path)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert guarded.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_bearer_token_opens_everything(guarded: TestClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/", "/invocations", "/limits", "/runners", "/api/overview", "/metrics"):
        assert guarded.get(path, headers=headers).status_code == 200, path


def test_the_query_token_sets_a_cookie_and_leaves_the_url(guarded: TestClient) -> None:
    response = guarded.get(f"/invocations?status=failed&token={TOKEN}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/invocations?status=failed"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{session_cookie_name(80)}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie  # the cookie holds an HMAC of the token, not the token
    # The client kept the cookie: later requests need nothing else.
    assert guarded.get("/limits").status_code == 200
    assert guarded.get("/api/runners").status_code == 200


def test_a_wrong_query_token_is_refused(guarded: TestClient) -> None:
    response = guarded.get("/?token=nope", follow_redirects=False)
    assert response.status_code == 401
    assert "taskgate_monitor_session" not in response.headers.get("set-cookie", "")


def test_the_guard_never_shows_its_token() -> None:
    assert TOKEN not in repr(Guard(TOKEN))


def _form_token(client: TestClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match is not None
    return match.group(1)


def test_a_post_without_a_csrf_token_is_forbidden(app: App, monitor: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    invocation = noop()
    path = f"/api/invocations/{invocation.invocation_id}/cancel"
    assert monitor.post(path).status_code == 403
    # A cookie alone (what a cross-site form makes the browser send) is not enough.
    csrf_token(monitor)
    assert monitor.post(path).status_code == 403
    assert monitor.post(path, headers={"X-CSRF-Token": "forged.token"}).status_code == 403
    page = f"/invocations/{invocation.invocation_id}/cancel"
    assert monitor.post(page, data={"csrf_token": "forged"}).status_code == 403
    assert invocation.status.value == "registered"


def test_a_post_with_the_csrf_token_works(app: App, monitor: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    one, two = noop(), noop()
    token = csrf_token(monitor)
    response = monitor.post(
        f"/api/invocations/{one.invocation_id}/cancel", headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 200 and response.json()["cancelled"] is True
    form_token = _form_token(monitor, f"/invocations/{two.invocation_id}")
    response = monitor.post(
        f"/invocations/{two.invocation_id}/cancel",
        data={"csrf_token": form_token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/invocations/{two.invocation_id}?done=cancel"
    assert one.status.value == two.status.value == "cancelled"


def test_a_token_from_another_monitor_process_is_refused(app: App, monitor: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    invocation = noop()
    foreign = Guard(None).new_csrf_token()  # signed with another secret
    monitor.cookies.set(csrf_cookie_name(8787), foreign)
    response = monitor.post(
        f"/api/invocations/{invocation.invocation_id}/cancel", headers={"X-CSRF-Token": foreign}
    )
    assert response.status_code == 403


def test_a_bearer_post_needs_no_csrf_token(app: App, guarded: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    invocation = noop()
    response = guarded.post(
        f"/api/invocations/{invocation.invocation_id}/cancel",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200
    assert invocation.status.value == "cancelled"


def test_with_a_token_a_cookie_session_still_needs_csrf(app: App, guarded: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    invocation = noop()
    guarded.get(f"/?token={TOKEN}")
    path = f"/api/invocations/{invocation.invocation_id}/cancel"
    assert guarded.post(path).status_code == 403
    token = csrf_token(guarded)
    assert guarded.post(path, headers={"X-CSRF-Token": token}).status_code == 200


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8787", "localhost:8787", "[::1]:8787", "127.1.2.3"]
)
def test_an_open_monitor_answers_loopback_names(monitor: TestClient, host: str) -> None:
    assert monitor.get("/api/runners", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8787", "10.0.0.1:8787", ""])
def test_an_open_monitor_refuses_other_host_names(monitor: TestClient, host: str) -> None:
    """A rebound domain pointing at 127.0.0.1 must not be same-origin with the monitor."""
    response = monitor.get("/api/runners", headers={"Host": host})
    assert response.status_code == 400


def test_a_monitor_with_a_token_answers_any_host_name(guarded: TestClient) -> None:
    headers = {"Host": "monitor.internal:8787", "Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/api/runners", headers=headers).status_code == 200


def test_allowed_hosts_adds_names_an_open_monitor_answers(app: App) -> None:
    monitor = create_monitor_app(app, allowed_hosts=["testserver", "Monitor.Local"])
    with TestClient(monitor, client=LOOPBACK_CLIENT) as client:  # Host: testserver
        assert client.get("/api/runners").status_code == 200
        assert client.get("/", headers={"Host": "monitor.local:80"}).status_code == 200
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 400


# --- findings of the review (L1, L2, M7, L6) ----------------------------------------------------


def test_non_ascii_credentials_are_refused_not_a_server_error(app: App) -> None:
    """A cookie or header the browser sends in bytes outside ASCII is a wrong credential."""
    with TestClient(
        create_monitor_app(app, token=TOKEN), base_url=BASE_URL, client=LOOPBACK_CLIENT
    ) as guarded:
        cookie = f"{session_cookie_name(8787)}=\u00e9\u00e9".encode()
        assert guarded.get("/", headers={"cookie": cookie}).status_code == 401  # type: ignore[dict-item]
        bearer = "Bearer \u00e9".encode()
        assert guarded.get("/metrics", headers={"authorization": bearer}).status_code == 401  # type: ignore[dict-item]
    with TestClient(create_monitor_app(app), base_url=BASE_URL, client=LOOPBACK_CLIENT) as open_:
        csrf_token(open_)
        response = open_.post(
            "/api/invocations/x/cancel",
            headers={"x-csrf-token": "\u00e9.\u00e9".encode()},  # type: ignore[dict-item]
        )
        assert response.status_code == 403


@pytest.mark.parametrize("path", ["//evil.example/x", "///evil.example/x", "/\\evil.example/x"])
def test_the_token_redirect_stays_on_the_monitor(guarded: TestClient, path: str) -> None:
    """``//host/x`` as a Location is another site (an open redirect): it must not be one."""
    response = guarded.get(f"{BASE_URL}{path}?token={TOKEN}", follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert location.endswith("evil.example/x")  # kept as a path of the monitor


@pytest.mark.parametrize("client", [("203.0.113.5", 40000), ("10.0.0.7", 1), ("testclient", 1)])
def test_an_open_monitor_refuses_clients_of_other_machines(
    app: App, client: tuple[str, int]
) -> None:
    """Without a token, a loopback Host is not enough: a remote client can send one."""
    with TestClient(create_monitor_app(app), base_url=BASE_URL, client=client) as remote:
        response = remote.get("/api/overview", headers={"Host": "localhost"})
        assert response.status_code == 403
        assert "token" in response.text


@pytest.mark.parametrize("client", [("127.0.0.1", 40000), ("::1", 40000), ("127.0.0.9", 1)])
def test_an_open_monitor_answers_loopback_clients(app: App, client: tuple[str, int]) -> None:
    with TestClient(create_monitor_app(app), base_url=BASE_URL, client=client) as local:
        assert local.get("/api/overview").status_code == 200


def test_a_monitor_with_a_token_answers_remote_clients(app: App) -> None:
    monitor = create_monitor_app(app, token=TOKEN)
    with TestClient(monitor, base_url=BASE_URL, client=("203.0.113.5", 1)) as remote:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert remote.get("/api/overview", headers=headers).status_code == 200


def test_cookies_are_named_per_port(app: App) -> None:
    """Two monitors on one host (different ports) must not overwrite each other's cookies."""
    monitor = create_monitor_app(app, token=TOKEN)
    names = []
    for port in (8787, 8788):
        with TestClient(
            monitor, base_url=f"http://127.0.0.1:{port}", client=LOOPBACK_CLIENT
        ) as client:
            redirect = client.get(f"/?token={TOKEN}", follow_redirects=False)
            assert redirect.headers["set-cookie"].startswith(f"{session_cookie_name(port)}=")
            csrf = client.get("/api/csrf")
            assert csrf.json()["cookie"] == csrf_cookie_name(port)
            assert csrf.headers["set-cookie"].startswith(f"{csrf_cookie_name(port)}=")
            names.append((session_cookie_name(port), csrf_cookie_name(port)))
    assert names[0] != names[1]
    assert names[0] == ("taskgate_monitor_session_8787", "taskgate_monitor_csrf_8787")
