"""Finding an invocation by the id in the address: a full id is read, never scanned for; a
shorter one is a prefix looked up in one bounded page read; every backend."""

from __future__ import annotations

import html
import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from taskgate import App


def test_an_unknown_full_id_is_not_looked_up_as_a_prefix(
    app: App, monitor: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``find_ids`` scans every id on Redis: a full-length unknown id needs no prefix lookup,
    and a prefix lookup is one bounded page read."""

    @app.task
    def noop() -> None: ...

    invocation = noop()
    prefix_reads: list[str] = []

    def no_scan(prefix: str, limit: int) -> list[str]:
        raise AssertionError(f"find_ids({prefix!r}) scans the whole index on Redis")

    original = app.backend.page_invocations

    def page(**kwargs: Any) -> Any:
        prefix_reads.append(kwargs.get("id_prefix") or "")
        return original(**kwargs)

    monkeypatch.setattr(app.backend, "find_ids", no_scan)
    monkeypatch.setattr(app.backend, "page_invocations", page)
    unknown = str(uuid.uuid4())
    response = monitor.get(f"/invocations/{unknown}", follow_redirects=False)
    assert response.status_code == 404
    assert prefix_reads == []
    short = invocation.invocation_id[:8]
    response = monitor.get(f"/invocations/{short}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/invocations/{invocation.invocation_id}"
    assert prefix_reads == [short]


def test_an_ambiguous_prefix_is_a_404_that_says_so(app: App, monitor: TestClient) -> None:
    @app.task
    def noop() -> None: ...

    ids = [noop().invocation_id for _ in range(40)]
    shared = next(
        a[:1] for a in ids if sum(1 for b in ids if b[:1] == a[:1]) > 1
    )  # 40 ids over 16 hex digits: some first digit repeats
    response = monitor.get(f"/invocations/{shared}", follow_redirects=False)
    assert response.status_code == 404
    assert "more than one" in html.unescape(response.text)
