"""Shared by the management web UI's browser tests (test_management_ui*.py): the headless
Chromium fixture and the steps the tests are written in.

By default the tests drive the UI that the suite's own warren-server serves once
`warren-plugins enable rabbitmq_management` has run (conftest.py's `management_url`).
WARREN_MGMT_URL names another UI base URL instead: e.g. scripts/ui-dev-proxy.py in front of any
management API, such as the reference RabbitMQ's:

    scripts/ui-dev-proxy.py --upstream http://127.0.0.1:15673 --port 15680 &
    WARREN_MGMT_URL=http://127.0.0.1:15680/ \
    WARREN_TEST_URL='amqp://guest:guest@127.0.0.1:5673/%2f' \
      scripts/test.sh --python-only -k management_ui

What the tests declare with pika lives on the broker of WARREN_TEST_URL (or the suite's own
warren-server), so both variables must name the same broker. WARREN_MGMT_USER /
WARREN_MGMT_PASSWORD (default guest/guest) log in. WARREN_UI_SCREENSHOTS=DIR saves overview.png and
queues.png there (docs/images/ holds the committed ones). Needs Debian's chromium and
chromium-driver and selenium. Against an external broker (WARREN_TEST_URL) without WARREN_MGMT_URL
there is no UI to drive and the modules are skipped (`skip_without_ui`).
"""

import os
import shutil
import time
from pathlib import Path

import pika
import pytest

MGMT_URL = os.environ.get("WARREN_MGMT_URL", "")
# The suite's own warren-server serves the UI when no external broker is named.
UI = bool(MGMT_URL) or not os.environ.get("WARREN_TEST_URL")
USER = os.environ.get("WARREN_MGMT_USER", "guest")
PASSWORD = os.environ.get("WARREN_MGMT_PASSWORD", "guest")
SCREENSHOTS = os.environ.get("WARREN_UI_SCREENSHOTS")
WAIT = 20  # seconds a page may take to show what the test waits for (one poll is 5 s)

# Each test module's `pytestmark`.
skip_without_ui = pytest.mark.skipif(
    not UI, reason="WARREN_TEST_URL without WARREN_MGMT_URL: no management UI to test (see tests/python/ui_browser.py)")

if UI:
    # With a UI to test, a missing browser stack is an error, not a skip.
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait


def _find_binary(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"none of {names} found: apt-get install chromium chromium-driver")


def start_chromium(downloads):
    """Headless Chromium with chromedriver, saving downloads into `downloads` (driver.downloads).
    conftest.py's `browser` fixture opens one per test module."""
    options = webdriver.ChromeOptions()
    options.binary_location = _find_binary("chromium", "chromium-browser", "google-chrome")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(_find_binary("chromedriver")), options=options)
    driver.downloads = downloads
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def use_base_url(url):
    """Called by conftest.py's `browser` fixture with the suite's own management URL."""
    global MGMT_URL
    if not os.environ.get("WARREN_MGMT_URL"):
        MGMT_URL = url


def base_url():
    return MGMT_URL if MGMT_URL.endswith("/") else MGMT_URL + "/"


def wait(browser, condition, timeout=WAIT):
    return WebDriverWait(browser, timeout, ignored_exceptions=[StaleElementReferenceException]).until(condition)


def login(browser, user=USER, password=PASSWORD):
    browser.get(base_url())
    browser.execute_script("sessionStorage.clear()")
    browser.get(base_url())
    wait(browser, EC.visibility_of_element_located((By.ID, "login-username"))).send_keys(user)
    browser.find_element(By.ID, "login-password").send_keys(password)
    browser.find_element(By.ID, "login-submit").click()


def goto(browser, hash_):
    """Opens page `hash_` (e.g. "#/queues") and waits until its first refresh has drawn it."""
    browser.execute_script("location.hash = arguments[0]", hash_)
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, f"#main[data-route='{hash_}']")))


def logged_in(browser):
    login(browser)
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#main[data-route]")))


def js_errors(browser):
    """Script errors and Content-Security-Policy violations the page logged since the last call."""
    return [e["message"] for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") in ("javascript", "security")]


def flash_says(browser, text):
    return wait(browser, EC.text_to_be_present_in_element((By.ID, "flash"), text))


def open_section(browser, title):
    summary = wait(browser, EC.element_to_be_clickable((By.XPATH, f"//summary[normalize-space()='{title}']")))
    summary.click()
    wait(browser, EC.presence_of_element_located((By.XPATH, f"//details[@open][summary[normalize-space()='{title}']]")))


def accept_confirm(browser):
    wait(browser, EC.alert_is_present()).accept()


def select(browser, element_id, value):
    """Chooses `value` in select `element_id`, again if the page's 5 s refresh redrew it in between."""
    def attempt(b):
        el = b.find_element(By.ID, element_id)
        if not el.is_displayed():
            return False
        Select(el).select_by_value(value)
        return True
    WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException, NoSuchElementException]).until(attempt)


def fill(browser, element_id, text):
    field = wait(browser, EC.visibility_of_element_located((By.ID, element_id)))
    field.clear()
    field.send_keys(text)


def submit(browser, form_id):
    browser.find_element(By.CSS_SELECTOR, f"#{form_id} button[type=submit]").click()


def row_button(browser, text, label, timeout=WAIT):
    """Clicks the button `label` in the table row that contains `text` (re-found if a poll redrew it)."""
    click(browser, (By.XPATH, f"//tr[td[contains(normalize-space(), '{text}')]]//button[normalize-space()='{label}']"), timeout)


def click(browser, locator, timeout=WAIT):
    """Finds and clicks `locator`, again if the page's 5 s refresh redrew it in between."""
    def attempt(b):
        b.find_element(*locator).click()
        return True
    WebDriverWait(browser, timeout, ignored_exceptions=[StaleElementReferenceException, NoSuchElementException]).until(attempt)


def row_gone(browser, text):
    return wait(browser, lambda b: not b.find_elements(By.XPATH, f"//tr[td[contains(normalize-space(), '{text}')]]"))


def amqp_params(broker_url, **changes):
    params = pika.URLParameters(broker_url)
    for key, value in changes.items():
        setattr(params, key, value)
    return params


def shot(browser, name):
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(SCREENSHOTS) / name))


def closed_by_broker(conn):
    """Runs conn's I/O until the broker closes it; returns the ConnectionClosedByBroker."""
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
    return closed.value
