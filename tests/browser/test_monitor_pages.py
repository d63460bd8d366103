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


def page_text(driver: Any) -> str:
    text: str = driver.find_element(By.TAG_NAME, "body").text
    return text


def rows_with(driver: Any, text: str) -> list[str]:
    """The texts of the table rows that mention ``text``."""
    return [
        row.text
        for row in driver.find_elements(By.XPATH, f"//tr[contains(normalize-space(.), '{text}')]")
    ]


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

    def holder_row(driver: Any) -> str | bool:
        rows = [row for row in rows_with(driver, holder.invocation_id[:8]) if "export" in row]
        return rows[0] if rows else False

    row = wait(browser).until(holder_row, "no row of /limits shows the holder's id")
    assert customer in row
    assert holder.invocation_id[:8] in row
    assert all(p.invocation_id[:8] not in row for p in parked)


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


def test_cancel_from_the_detail_page(stack: MonitorStack, browser: Any) -> None:
    _, _, parked = hold_a_slot(stack, waiting=1)
    target = parked[0]
    browser.get(f"{stack.url}/invocations/{target.invocation_id}")
    wait(browser).until(lambda driver: target.invocation_id in page_text(driver))
    press(browser, "Cancel")
    wait(browser).until(
        lambda driver: "CANCELLED" in page_text(driver).upper(),
        "the page does not show the invocation cancelled",
    )
    record = stack.app.backend.get(target.invocation_id)
    assert record is not None
    assert record.status is InvocationStatus.CANCELLED


def test_the_overview_updates_without_reloading(stack: MonitorStack, browser: Any) -> None:
    stack.module.quick(1).get_result(WAIT)
    browser.get(f"{stack.url}/")
    wait(browser).until(lambda driver: rows_with(driver, "quick"), "no row for the quick task")
    before = rows_with(browser, "quick")
    browser.execute_script("window.__taskgate_test_marker = 'still here';")

    stack.module.quick(2).get_result(WAIT)
    wait(browser).until(
        lambda driver: rows_with(driver, "quick") != before,
        "the overview's counts did not change",
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
    wait(browser).until(
        lambda driver: "401" in page_text(driver) or "nauthori" in page_text(driver)
    )
    assert status_of(f"{url}/") == 401

    browser.get(f"{url}/?token={secret}")
    wait(browser).until(
        lambda driver: "quick" in page_text(driver) or "export" in page_text(driver)
    )
    # The query parameter set a cookie: the next page opens without the token in its URL.
    browser.get(f"{url}/limits")
    wait(browser).until(lambda driver: "export-slot" in page_text(driver))
    assert secret not in browser.page_source
    assert status_of(f"{url}/", {"Authorization": f"Bearer {secret}"}) == 200
