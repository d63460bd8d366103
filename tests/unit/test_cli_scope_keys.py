"""How the command line splits a running scope or budget key for display."""

from __future__ import annotations

import pytest

from taskgate.cli.render import split_scope_key


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("limit llm-api", ("llm-api", None, None)),
        ("limit tenant#tenant_id='4#2'", ("tenant", None, "tenant_id='4#2'")),
        ("tasks.sync#customer=42,full=False", (None, "tasks.sync", "customer=42,full=False")),
        ("tasks.sync", (None, "tasks.sync", None)),
    ],
)
def test_scope_keys_split_into_limit_or_task_and_key_values(
    key: str, parts: tuple[str | None, str | None, str | None]
) -> None:
    assert tuple(split_scope_key(key)) == parts
