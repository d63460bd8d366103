"""Screenshots of every monitor page for the docs and the README (``make screenshots``).

Starts, on a scratch SQLite store, a ``taskgate runner start`` process and a ``taskgate
monitor`` process on ``tests/apps/monitor_app.py``; makes some work finish, fail, hold a
limit's slots and wait behind them; opens each page in headless Chromium (Debian's
``/usr/bin/chromium`` and ``/usr/bin/chromedriver``, named explicitly: nothing is downloaded)
and saves ``docs/screenshots/<page>.png``. Run it again after changing a page.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "tests" / "apps"
OUT = ROOT / "docs" / "screenshots"
WIDTH = 1280
MAX_HEIGHT = 1400
WAIT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def status_is(invocation: Any, status: str) -> bool:
    return bool(invocation.status.value == status)


def wait_until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WIDTH},900")
    options.add_argument("--hide-scrollbars")
    service = Service(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options)


def viewport(driver: Any, height: int) -> None:
    """Make the page's viewport exactly WIDTH x ``height`` CSS pixels (a window size includes
    the browser's own frame, which headless Chromium sizes in its own way)."""
    metrics = {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def shoot(driver: Any, url: str, name: str, expected: str) -> None:
    """Open ``url``, wait until the page shows ``expected``, save the page as ``name``.png."""
    from selenium.webdriver.common.by import By

    viewport(driver, 600)
    driver.get(url)
    wait_until(lambda: expected in driver.find_element(By.TAG_NAME, "body").text, expected)
    height = driver.execute_script("return document.body.scrollHeight")
    viewport(driver, min(MAX_HEIGHT, int(height) + 16))
    time.sleep(0.3)  # the resized page reflows before the capture (a picture, not a test)
    driver.save_screenshot(str(OUT / f"{name}.png"))
    print(f"saved docs/screenshots/{name}.png")


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="taskgate-demo-"))
    backend = f"sqlite:///{directory / 'shots.db'}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("TASKGATE_")}
    env.update(
        TASKGATE_TEST_BACKEND=backend,
        TASKGATE_TEST_APP_ID="shop",
        PYTHONPATH=os.pathsep.join([str(APPS), *sys.path]),
    )
    os.environ.update(env)
    sys.path.insert(0, str(APPS))
    import monitor_app  # type: ignore[import-not-found]  # tests/apps, put on sys.path above

    app = monitor_app.app
    app.purge()
    processes: list[subprocess.Popen[bytes]] = []
    release = directory / "release"

    def start(*arguments: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "taskgate", *arguments, "--app", "monitor_app:app"]
        process = subprocess.Popen(command, env=env, cwd=directory, stderr=subprocess.DEVNULL)
        processes.append(process)
        return process

    driver = None
    try:
        for _ in range(2):
            start("runner", "start", "--threads", "4")
        # Both runners described (their first heartbeat): the pages show them and their counts.
        wait_until(lambda: len(app.backend.runner_infos()) >= 2, "the runners' descriptions")
        group = monitor_app.quick.parallelize([(n,) for n in range(40)])
        group.results  # noqa: B018 - waits for them
        failed = [monitor_app.explode(f"q{n}.csv") for n in range(1, 4)]
        for customer in ("acme", "globex"):
            holder = monitor_app.export(customer, 0, str(release))
            wait_until(partial(status_is, holder, "running"), "a slot holder")
            for batch in range(1, 4):
                monitor_app.export(customer, batch, str(release))
        for invocation in failed:
            wait_until(partial(status_is, invocation, "failed"), "a failure")
        # The runners announce what they counted and run with each heartbeat (every third of
        # a lease): wait for the one after this work, so that charts and tables show it.
        finished = len(group.results) + len(failed)
        wait_until(
            lambda: (
                sum(m.finished for i in app.backend.runner_infos() for m in i.minutes) >= finished
                and sum(len(i.running) for i in app.backend.runner_infos()) >= 2
            ),
            "the runners' next announcements",
        )
        port = free_port()
        start("monitor", "--port", str(port))
        wait_until(lambda: accepts(port), "the monitor")
        url = f"http://127.0.0.1:{port}"

        OUT.mkdir(parents=True, exist_ok=True)
        driver = browser()
        shoot(driver, f"{url}/", "overview", "quick")
        shoot(driver, f"{url}/invocations", "invocations", "explode")
        shoot(driver, f"{url}/invocations/{failed[0].invocation_id}", "detail", "Traceback")
        shoot(driver, f"{url}/limits", "limits", "export-slot")
        shoot(driver, f"{url}/runners", "runners", app.backend.runner_infos()[0].runner_id)
    finally:
        if driver is not None:
            driver.quit()
        release.touch()
        for process in reversed(processes):
            process.terminate()
            process.wait(30)
        app.purge()
        app.backend.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
