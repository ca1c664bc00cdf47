"""The management web UI (plugins/management-ui/) driven in headless Chromium.

WARREN_MGMT_URL is the UI's base URL: Warren's management plugin (http://127.0.0.1:15672/) or
scripts/ui-dev-proxy.py in front of any management API, e.g. the reference RabbitMQ:

    scripts/ui-dev-proxy.py --upstream http://127.0.0.1:15673 --port 15680 &
    WARREN_MGMT_URL=http://127.0.0.1:15680/ \
    WARREN_TEST_URL='amqp://guest:guest@127.0.0.1:5673/%2f' \
      scripts/test.sh --python-only tests/python/test_management_ui.py

The queue the UI must show is declared with pika on the broker of WARREN_TEST_URL (or the suite's
own warren-server), so both variables must name the same broker. WARREN_MGMT_USER /
WARREN_MGMT_PASSWORD (default guest/guest) log in. WARREN_UI_SCREENSHOTS=DIR saves overview.png and
queues.png there (docs/images/ holds the committed ones). Needs Debian's chromium and
chromium-driver and selenium; without WARREN_MGMT_URL the module is skipped.
"""

import os
import shutil
from urllib.parse import quote
from pathlib import Path

import pika
import pytest

MGMT_URL = os.environ.get("WARREN_MGMT_URL", "")
USER = os.environ.get("WARREN_MGMT_USER", "guest")
PASSWORD = os.environ.get("WARREN_MGMT_PASSWORD", "guest")
SCREENSHOTS = os.environ.get("WARREN_UI_SCREENSHOTS")
WAIT = 20  # seconds a page may take to show what the test waits for (one poll is 5 s)

pytestmark = pytest.mark.skipif(
    not MGMT_URL, reason="WARREN_MGMT_URL is not set: no management UI to test (see the module doc)")

if MGMT_URL:
    # With a UI to test, a missing browser stack is an error, not a skip.
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
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


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = _find_binary("chromium", "chromium-browser", "google-chrome")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(_find_binary("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


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


def js_errors(browser):
    return [e["message"] for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") == "javascript"]


def flash_says(browser, text):
    return wait(browser, EC.text_to_be_present_in_element((By.ID, "flash"), text))


def open_section(browser, title):
    summary = wait(browser, EC.element_to_be_clickable((By.XPATH, f"//summary[normalize-space()='{title}']")))
    summary.click()


def shot(browser, name):
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(SCREENSHOTS) / name))


def test_wrong_password_is_refused_with_login_failed(browser):
    login(browser, password=PASSWORD + "-wrong")
    wait(browser, EC.text_to_be_present_in_element((By.ID, "login-error"), "Login failed"))
    assert not browser.find_element(By.ID, "app").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0


def test_overview_draws_polled_charts(browser, channel, names):
    # A queue with a ready message, so the queued-messages chart has something to draw.
    queue = names("overview")
    channel.queue_declare(queue, auto_delete=False)
    try:
        channel.basic_publish("", queue, b"counted")
        login(browser)
        wait(browser, EC.visibility_of_element_located((By.ID, "app")))
        # A second sample means the page polled /api/overview again after the first draw.
        for chart in ("chart-queued", "chart-rates"):
            wait(browser, lambda b: int(b.find_element(By.ID, chart).get_attribute("data-samples") or 0) >= 2)
        for chart in ("chart-queued", "chart-rates"):
            canvas = browser.find_element(By.ID, chart)
            assert canvas.is_displayed() and canvas.size["width"] > 100 and canvas.size["height"] > 50
            # Pixels that are neither white nor grey: the coloured series lines and dots.
            coloured = browser.execute_script("""
                const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4) {
                  const spread = Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]);
                  if (spread > 60) n++;
                }
                return n;""", canvas)
            assert coloured > 20, f"{chart} has no coloured series drawn ({coloured} pixels)"
        legend = browser.find_element(By.CSS_SELECTOR, "#chart-queued + .legend").text
        assert "Ready:" in legend and "Total:" in legend
        assert "Publish:" in browser.find_element(By.CSS_SELECTOR, "#chart-rates + .legend").text
        totals = browser.find_element(By.CSS_SELECTOR, ".totals").text
        assert "Queues" in totals and "Connections" in totals
        assert int(totals.split("\n")[totals.split("\n").index("Queues") - 1].replace(",", "")) >= 1
        shot(browser, "overview.png")
        assert js_errors(browser) == []
    finally:
        channel.queue_delete(queue)


def test_queue_from_pika_publish_and_get_through_the_ui(browser, channel, broker_url, names):
    vhost = pika.URLParameters(broker_url).virtual_host
    queue = names("ui")
    channel.queue_declare(queue, auto_delete=False)
    try:
        login(browser)
        wait(browser, EC.visibility_of_element_located((By.ID, "app")))
        browser.get(base_url() + "#/queues")
        link = wait(browser, EC.element_to_be_clickable((By.LINK_TEXT, queue)))
        assert link.get_attribute("href").endswith(f"#/queue/{quote(vhost, safe='')}/{quote(queue, safe='')}")
        shot(browser, "queues.png")
        link.click()
        wait(browser, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#main h1"), queue))

        # Publish from the UI: through the default exchange, with a header and a property.
        open_section(browser, "Publish message")
        Select(browser.find_element(By.ID, "publish-form-delivery_mode")).select_by_value("2")
        browser.find_element(By.ID, "publish-form-headers").send_keys("x-from-ui = 42")
        browser.find_element(By.ID, "publish-form-properties").send_keys("content_type = text/plain")
        browser.find_element(By.ID, "publish-form-payload").send_keys("hello from the web UI")
        browser.find_element(By.CSS_SELECTOR, "#publish-form button[type=submit]").click()
        flash_says(browser, "Message published.")

        # Get it back in the UI with the default ack mode (nack, requeue): it stays in the queue.
        open_section(browser, "Get messages")
        browser.find_element(By.CSS_SELECTOR, "#get-form button[type=submit]").click()
        payload = wait(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, "#get-result .payload")))
        assert payload.text == "hello from the web UI"
        result = browser.find_element(By.ID, "get-result").text
        assert "The server reported 0 messages remaining." in result
        assert f"Routing Key {queue}" in result
        assert 'headers = {"x-from-ui":42}' in result
        assert 'delivery_mode = 2' in result

        # The message pika reads is the one the UI published, requeued by the UI's get.
        method, props, body = channel.basic_get(queue, auto_ack=True)
        assert body == b"hello from the web UI"
        assert method.redelivered
        assert props.delivery_mode == 2
        assert props.content_type == "text/plain"
        assert props.headers == {"x-from-ui": 42}

        # Now empty: the UI says so.
        browser.find_element(By.CSS_SELECTOR, "#get-form button[type=submit]").click()
        wait(browser, EC.text_to_be_present_in_element((By.ID, "get-result"), "Queue is empty"))
        assert js_errors(browser) == []
    finally:
        channel.queue_delete(queue)
