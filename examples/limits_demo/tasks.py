"""The recipes of the limits cookbook (docs/guide/limits-cookbook.md), as tasks that call a
fake external API.

Every task body makes exactly one call to the provider (``provider.py``), which records when the
call started and ended; ``run_demo.py`` then checks that no limit was exceeded. The provider's
URL is read from ``DEMO_PROVIDER_URL`` when a task runs, and the backend is ``TASKGATE_BACKEND``
(``run_demo.py`` sets both for the runners it starts).

(a) ``sync_customer``: one sync per customer at a time (the task's own keyed running scope),
    and at most 3 calls at a time and 10 a second to the CRM API, for all customers together.
(b) ``summarize`` and ``embed``: one LLM budget shared by both tasks (4 calls at a time, 20 a
    second), handed out round robin across tenants so a small tenant never waits behind a big
    tenant's backlog.
(c) ``push_order``: the partner API allows 5 calls a second per API key.
"""

from __future__ import annotations

from typing import Any

from provider import record_call

from taskgate import App, ConcurrencyControlType

app = App("limits-demo")

WORK_SECONDS = 0.05
"""How long each call of the fake API takes."""

# (a) per customer + a global API cap + a rate.
crm_api = app.limit("crm-api", concurrency=3, rate="10/s")


@app.task(
    limits=[crm_api],
    running_concurrency=ConcurrencyControlType.KEYS,
    key_arguments=("customer_id",),
)
def sync_customer(customer_id: str, page: int) -> dict[str, Any]:
    """Sync one page of a customer: one sync per customer at a time, within the CRM API's limit."""
    return record_call("a", WORK_SECONDS, customer_id=customer_id, page=str(page))


# (b) one LLM budget shared by two tasks, fair across tenants.
llm = app.limit("llm-api", concurrency=4, rate="20/s", fair_by="tenant_id")


@app.task(limits=[llm])
def summarize(tenant_id: str, doc_id: int) -> dict[str, Any]:
    """Summarize a document with the LLM (shares the LLM budget with :func:`embed`)."""
    return record_call("b", WORK_SECONDS, tenant_id=tenant_id, task="summarize", doc=str(doc_id))


@app.task(limits=[llm])
def embed(tenant_id: str, text: str) -> dict[str, Any]:
    """Embed a text with the LLM (shares the LLM budget with :func:`summarize`)."""
    return record_call("b", WORK_SECONDS, tenant_id=tenant_id, task="embed", text=text)


# (c) the partner API's rate limit, per API key.
partner_api = app.limit("partner-api", rate="5/s", key="api_key")


@app.task(limits=[partner_api])
def push_order(api_key: str, order_id: int) -> dict[str, Any]:
    """Push one order to the partner API with ``api_key``: at most 5 calls a second per key."""
    return record_call("c", WORK_SECONDS, api_key=api_key, order=str(order_id))
