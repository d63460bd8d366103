"""The monitor in headless Chromium, as a person uses it, against real runner processes.

Each test makes its own invocations (own key values) on the module's stack, opens a page and
waits for what a person would look for: never a sleep, always a WebDriverWait on the page.
"""

from __future__ import annotations

import contextlib
import http.client
import uuid
from typing import Any
from urllib.parse import urlsplit

from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from taskgate import Invocation, InvocationStatus
from tests.browser.conftest import WAIT, MonitorStack
from tests.conftest import wait_for_status


def wait(driver: Any) -> WebDriverWait[Any]:
    return WebDriverWait(driver, WAIT, poll_frequency=0.05)


# Pages swap parts of themselves in live: elements found a moment ago may be gone, so reads are
# done in one script, atomically with respect to the page's own updates.


def page_text(driver: Any) -> str:
    text: str = driver.execute_script("return document.body.innerText;")
    return text


def rows_with(driver: Any, text: str) -> list[str]:
    """The texts of the table rows that mention ``text``."""
    rows: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll('tr'), row => row.innerText)"
        ".filter(t => t.includes(arguments[0]));",
        text,
    )
    return rows


Held = tuple[str, Invocation[int], list[Invocation[int]]]


def hold_a_slot(stack: MonitorStack, waiting: int) -> Held:
    """A new customer, an ``export`` run holding its slot, and ``waiting`` calls parked behind
    it (all of them return once the stack closes)."""
    customer = f"cust-{uuid.uuid4().hex[:6]}"
    release = str(stack.release_file())
    holder = stack.module.export(customer, 0, release)
    wait_for_status(holder, InvocationStatus.RUNNING)
    parked = [stack.module.export(customer, n, release) for n in range(1, waiting + 1)]
    for invocation in parked:
        wait_for_status(invocation, InvocationStatus.CONCURRENCY_CONTROLLED)
    return customer, holder, parked


def test_the_limits_page_shows_who_holds_the_slot(stack: MonitorStack, browser: Any) -> None:
    customer, holder, parked = hold_a_slot(stack, waiting=2)
    browser.get(f"{stack.url}/limits")

    # The row of the customer's key value names the holder, and counts the two waiting.
    row = wait(browser).until(
        lambda driver: next(iter(rows_with(driver, holder.invocation_id)), None),
        "no row of /limits shows the holder's id",
    )
    assert customer in row
    record = stack.app.backend.get(holder.invocation_id)
    assert record is not None
    assert record.runner_id is not None
    assert record.runner_id in row  # and the runner that holds it
    assert all(p.invocation_id not in row for p in parked)
    waiting = browser.execute_script(
        "const li = document.querySelector(`li.holder[data-invocation-id='${arguments[0]}']`);"
        "return li.closest('tr').querySelector('td.waiting').innerText.trim();",
        holder.invocation_id,
    )
    assert waiting == "2"


def test_the_detail_page_shows_the_traceback(stack: MonitorStack, browser: Any) -> None:
    failed = stack.module.explode("q3.csv")
    wait_for_status(failed, InvocationStatus.FAILED)
    browser.get(f"{stack.url}/invocations/{failed.invocation_id}")
    wait(browser).until(
        lambda driver: "Traceback (most recent call last)" in page_text(driver),
        "the detail page shows no traceback",
    )
    text = page_text(browser)
    assert "ReportError: report 'q3.csv' has no rows" in text
    # The whole traceback, down to the frame that raised.
    assert "_load_rows" in text
    assert "_parse" in text
    assert failed.invocation_id in text


def press(driver: Any, label: str) -> None:
    """Click the button labelled ``label`` and accept a confirmation dialog if one opens."""
    xpath = f"//button[normalize-space()='{label}'] | //input[@type='submit'][@value='{label}']"
    button = wait(driver).until(ec.element_to_be_clickable((By.XPATH, xpath)), f"no {label} button")
    button.click()
    with contextlib.suppress(NoAlertPresentException):
        driver.switch_to.alert.accept()


def shown_status(driver: Any) -> str | None:
    """The status the detail page shows."""
    text: str | None = driver.execute_script(
        "const cell = document.getElementById('field-status');"
        "return cell ? cell.innerText.trim() : null;"
    )
    return text


def test_cancel_from_the_detail_page(stack: MonitorStack, browser: Any) -> None:
    _, _, parked = hold_a_slot(stack, waiting=1)
    target = parked[0]
    browser.get(f"{stack.url}/invocations/{target.invocation_id}")
    wait(browser).until(lambda driver: target.invocation_id in page_text(driver))
    assert shown_status(browser) == "concurrency controlled"
    press(browser, "Cancel")
    wait(browser).until(
        lambda driver: shown_status(driver) == "cancelled",
        "the page does not show the invocation cancelled",
    )
    record = stack.app.backend.get(target.invocation_id)
    assert record is not None
    assert record.status is InvocationStatus.CANCELLED


def test_the_runners_page_shows_what_a_runner_runs(stack: MonitorStack, browser: Any) -> None:
    _, holder, _ = hold_a_slot(stack, waiting=0)
    record = stack.app.backend.get(holder.invocation_id)
    assert record is not None
    assert record.runner_id is not None
    browser.get(f"{stack.url}/runners")
    # The runner's row lists the holder once the runner's next description says it runs it.
    row = wait(browser).until(
        lambda driver: next(iter(rows_with(driver, holder.invocation_id)), None),
        "the runners page does not show the holder running",
    )
    assert record.runner_id in row
    assert "monitor_app.export" in row


def count_cell(driver: Any, task: str, status: str) -> str | None:
    """The text of the overview's count of ``task`` in ``status`` (None: no such cell yet)."""
    text: str | None = driver.execute_script(
        "const cell = document.querySelector(`tr[data-task='${arguments[0]}'] "
        "td[data-status='${arguments[1]}']`); return cell ? cell.innerText.trim() : null;",
        task,
        status,
    )
    return text


def test_the_overview_updates_without_reloading(stack: MonitorStack, browser: Any) -> None:
    quick = stack.module.quick
    # One run first, so that the task has its row; other tests of the module may have run it.
    quick(1).get_result(WAIT)
    browser.get(f"{stack.url}/")
    before = wait(browser).until(
        lambda driver: count_cell(driver, quick.task_id, "success"), "no count of quick runs"
    )
    browser.execute_script("window.__taskgate_test_marker = 'still here';")

    quick(2).get_result(WAIT)
    wait(browser).until(
        lambda driver: count_cell(driver, quick.task_id, "success") == str(int(before) + 1),
        f"the overview still counts {before} successful quick runs",
    )
    # The same document: a reload or a navigation would have dropped the marker.
    assert browser.execute_script("return window.__taskgate_test_marker;") == "still here"


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=WAIT)
    try:
        connection.request("GET", parts.path or "/", headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_token_opens_the_monitor_and_its_absence_is_refused(
    stack: MonitorStack, browser: Any
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    url = stack.start_monitor(TASKGATE_MONITOR_TOKEN=secret)

    browser.get(f"{url}/")
    wait(browser).until(lambda driver: "Token required" in page_text(driver), "no refusal page")
    assert status_of(f"{url}/") == 401
    assert status_of(f"{url}/api/overview") == 401

    # Opened once with the token: the monitor keeps it in a cookie and drops it from the URL.
    browser.get(f"{url}/?token={secret}")
    wait(browser).until(lambda driver: "Invocations by task" in page_text(driver), "no overview")
    assert secret not in browser.current_url
    browser.get(f"{url}/limits")
    wait(browser).until(lambda driver: "export-slot" in page_text(driver), "no limits page")
    assert secret not in browser.page_source
    assert status_of(f"{url}/", {"Authorization": f"Bearer {secret}"}) == 200
