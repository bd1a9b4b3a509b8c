"""Browser fixtures for the dashboard tests: headless Debian Chromium driven by Selenium,
against pytest-django's live server. A failing test leaves a screenshot (and the page's
HTML) under var/test-screenshots/. Use: `from tests.browser import *  # noqa: F403`."""

import contextlib
import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from pytest_django.live_server_helper import LiveServer
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver"))
SCREENSHOTS = Path(settings.VAR_DIR) / "test-screenshots"
WAIT_S = float(os.environ.get("BROWSER_WAIT_S", "15"))

__all__ = ["browser", "chromium_driver", "live_server", "dashboard_url", "sign_in", "wait_for",
           "wait_text", "switch_org", "By"]


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.exists() or shutil.which(p))]
    if missing:
        pytest.fail(f"the browser tests need {', '.join(missing)}: run `make browser` (`make "
                    "test` does; it apt-get installs Debian's chromium and chromium-driver)",
                    pytrace=False)


@pytest.fixture(scope="session")
def live_server(collected_static):
    """pytest-django's live server, but its static files come from WhiteNoise as under
    gunicorn: pages name them by their hashed, collected names, which the finders that
    pytest-django's handler serves from do not know."""
    server = LiveServer("127.0.0.1:0", start=False)
    server.thread.static_handler = lambda application: application
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium_driver():
    _require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000", "--disable-extensions",
                     "--no-first-run", "--disable-background-networking"):
        options.add_argument(argument)
    # Port 0: chromedriver listens on a free port of its choosing (never a shared one).
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER), port=0))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium_driver, live_server, request):
    """The shared headless Chromium, signed out, for one test; a screenshot if it fails."""
    failed_before = request.session.testsfailed
    chromium_driver.delete_all_cookies()
    chromium_driver.live_server_url = live_server.url
    yield chromium_driver
    if request.session.testsfailed > failed_before:  # the call's report is in by teardown
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)[:120]
        chromium_driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        (SCREENSHOTS / f"{name}.html").write_text(chromium_driver.page_source)
    with contextlib.suppress(NoAlertPresentException):  # no dialog left for the next test
        chromium_driver.switch_to.alert.dismiss()


def dashboard_url(driver, path: str) -> str:
    return driver.live_server_url + path


def wait_for(driver, css: str, timeout: float = WAIT_S):
    """The first element matching `css`, once it is visible."""
    return WebDriverWait(driver, timeout).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css)))


def wait_text(driver, css: str, text: str, timeout: float = WAIT_S):
    WebDriverWait(driver, timeout).until(
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
    return driver.find_element(By.CSS_SELECTOR, css)


def sign_in(driver, email: str, password: str, path: str = "/") -> None:
    """Sign in through the form, as a person does, then open `path`."""
    driver.get(dashboard_url(driver, "/sign-in/?next=" + quote(path, safe="/")))
    wait_for(driver, "#id_username").send_keys(email)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, "header.top")


def switch_org(driver, label: str) -> None:
    """Choose `label` in the header's org switcher and wait for the page it loads (the old
    page's select shows the choice at once, so waiting on the text alone would race)."""
    select = wait_for(driver, "#org-select")
    Select(select).select_by_visible_text(label)
    WebDriverWait(driver, WAIT_S).until(expected_conditions.staleness_of(select))
    wait_text(driver, "#org-select option:checked", label.split(" (")[0])
