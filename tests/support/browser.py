"""A real headless Chromium driven by selenium: Debian's /usr/bin/chromium through its
/usr/bin/chromedriver (tests/run.sh installs both), on 127.0.0.1 only, one per test module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 800


@contextmanager
def start_browser(profile: Path) -> Iterator[Any]:
    """A headless Chromium at 1280x800 with its profile under ``profile``; quit on exit."""
    # selenium is a test extra; imported here so collecting other tests never needs it.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--remote-debugging-address=127.0.0.1",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_window_size(WIDTH, HEIGHT)
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
