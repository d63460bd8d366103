"""An edited or stale ``?cursor=`` is a bad request, not a server error."""

from __future__ import annotations

from starlette.testclient import TestClient

from taskgate import App
from taskgate.monitor import create_monitor_app
from tests.monitor.support import LOOPBACK_CLIENT


def test_unknown_cursor_is_a_bad_request(app: App) -> None:
    monitor = create_monitor_app(app)
    client = TestClient(monitor, base_url="http://127.0.0.1", client=LOOPBACK_CLIENT)
    reply = client.get("/api/invocations", params={"cursor": "not-a-cursor"})
    assert reply.status_code == 400
    assert reply.json()["error"] == "bad_request"
    page = client.get("/invocations", params={"cursor": "not-a-cursor"})
    assert page.status_code == 400
