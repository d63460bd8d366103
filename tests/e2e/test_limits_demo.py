"""The limits demo as a user runs it: 2 CLI runner processes on each shared backend.

``examples/limits_demo/run_demo.py`` exits 0 only when no limit was exceeded (calls at once per
limit and per key, starts in any window of a rate per key), the small tenant was not starved
behind the big one, every call ran once, nothing was left held or waiting, and the runners
stopped cleanly; its table is checked here row by row as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "limits_demo"
SIZES = ("--customers=3", "--syncs=4", "--big=16", "--small=2", "--api-keys=2", "--orders=7")
# Per recipe: the checks that must be in the table (by the start of their text).
EXPECTED = {
    "a": (
        "every invocation made one call",
        "one sync per customer: calls at once per customer_id",
        "limit crm-api: calls at once",
        "limit crm-api: starts in any",
        "total time",
    ),
    "b": (
        "every invocation made one call",
        "limit llm-api (2 tasks): calls at once",
        "limit llm-api: starts in any",
        "fairness: other tenants admitted while tenant 'small' waited",
        "total time",
    ),
    "c": ("every invocation made one call", "limit partner-api: starts in any", "total time"),
    "all": ("slots held or waiters left", "runners stopped cleanly"),
}


def table(output: str) -> dict[str, list[tuple[str, str]]]:
    """The report's rows by recipe: (check text, verdict)."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for line in output.splitlines():
        recipe, _, rest = line.partition("  ")
        if recipe.strip() in EXPECTED and rest:
            verdict = rest.split()[-1]
            rows.setdefault(recipe.strip(), []).append((rest.strip(), verdict))
    return rows


def test_limits_demo_holds_every_limit(shared_backend_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKGATE_", "DEMO_"))}
    command = [sys.executable, "run_demo.py", f"--backend={shared_backend_url}", *SIZES]
    done = subprocess.run(
        [*command, "--timeout=20"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "ok: no limit exceeded" in done.stdout, report
    rows = table(done.stdout)
    for recipe, checks in EXPECTED.items():
        found = rows.get(recipe, [])
        for check in checks:
            matching = [verdict for text, verdict in found if text.startswith(check)]
            assert matching, f"no row {check!r} for recipe {recipe}\n{report}"
            assert matching[0] in ("ok", "info"), report
    assert "12 calls, 0 failed, 0 stuck" in done.stdout, report  # (a): 3 customers x 4 syncs
    assert "18 calls, 0 failed, 0 stuck" in done.stdout, report  # (b): 16 + 2
    assert "14 calls, 0 failed, 0 stuck" in done.stdout, report  # (c): 2 keys x 7 orders
