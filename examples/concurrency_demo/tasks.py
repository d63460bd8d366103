"""Four tasks that call the provider for one account, one per concurrency policy.

The provider (``provider.py``) must never be called concurrently for the same account. Each task
makes exactly one call to ``POST {DEMO_PROVIDER_URL}/call?account=...&policy=...``, naming its
policy so the provider keeps separate counts. The URL is read when the task runs, so runner
processes need ``DEMO_PROVIDER_URL`` in their environment.

The backend is ``TASKGATE_BACKEND`` when set, else the embedded SQLite default under the current
directory: start the runner and ``run_demo.py`` from the same folder.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from typing import Any

from taskgate import App, ConcurrencyControlType

app = App("concurrency-demo")

PROVIDER_URL_ENV = "DEMO_PROVIDER_URL"
HTTP_TIMEOUT_SECONDS = 10.0
KEYS = ConcurrencyControlType.KEYS


def provider_url() -> str:
    """The provider's base URL from ``DEMO_PROVIDER_URL``.

    Raises:
        RuntimeError: the variable is not set in this process.
    """
    url = os.environ.get(PROVIDER_URL_ENV)
    if not url:
        raise RuntimeError(
            f"{PROVIDER_URL_ENV} is not set in this process; start the provider "
            f"(python provider.py --port 8765) and export {PROVIDER_URL_ENV}=http://127.0.0.1:8765 "
            "where the runner runs"
        )
    return url.rstrip("/")


def call_provider(policy: str, account: str) -> dict[str, Any]:
    """One call of the external API for ``account``; returns its JSON answer."""
    query = urllib.parse.urlencode({"account": account, "policy": policy})
    request = urllib.request.Request(f"{provider_url()}/call?{query}", method="POST")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


@app.task
def no_control(account: str) -> dict[str, Any]:
    """No concurrency control: calls for one account may overlap."""
    return call_provider("no_control", account)


@app.task(running_concurrency=KEYS, key_arguments=("account",))
def running_keys(account: str) -> dict[str, Any]:
    """One running call per account; the others wait for the slot (and all run)."""
    return call_provider("running_keys", account)


@app.task(
    running_concurrency=KEYS,
    key_arguments=("account",),
    reroute_on_concurrency_control=False,
)
def running_keys_drop(account: str) -> dict[str, Any]:
    """One running call per account; a call that would start while one runs is dropped."""
    return call_provider("running_keys_drop", account)


@app.task(
    registration_concurrency=KEYS,
    running_concurrency=KEYS,
    key_arguments=("account",),
)
def registration_and_running_keys(account: str) -> dict[str, Any]:
    """One running call per account, and calls made while one waits are folded into it."""
    return call_provider("registration_and_running_keys", account)


POLICIES = {
    "no_control": no_control,
    "running_keys": running_keys,
    "running_keys_drop": running_keys_drop,
    "registration_and_running_keys": registration_and_running_keys,
}
"""Every task of the demo by policy name, in the order the demo runs them."""

CONTROLLED_POLICIES = ("running_keys", "running_keys_drop", "registration_and_running_keys")
"""The policies that must never collide."""
