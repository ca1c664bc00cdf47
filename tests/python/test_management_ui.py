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

import json
import os
import re
import shutil
import time
import uuid
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = _find_binary("chromium", "chromium-browser", "google-chrome")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(_find_binary("chromedriver")), options=options)
    driver.downloads = tmp_path_factory.mktemp("ui-downloads")
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(driver.downloads)})
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


def goto(browser, hash_):
    """Opens page `hash_` (e.g. "#/queues") and waits until its first refresh has drawn it."""
    browser.execute_script("location.hash = arguments[0]", hash_)
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, f"#main[data-route='{hash_}']")))


def logged_in(browser):
    login(browser)
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#main[data-route]")))


def js_errors(browser):
    return [e["message"] for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") == "javascript"]


def flash_says(browser, text):
    return wait(browser, EC.text_to_be_present_in_element((By.ID, "flash"), text))


def open_section(browser, title):
    summary = wait(browser, EC.element_to_be_clickable((By.XPATH, f"//summary[normalize-space()='{title}']")))
    summary.click()
    wait(browser, EC.presence_of_element_located((By.XPATH, f"//details[@open][summary[normalize-space()='{title}']]")))


def accept_confirm(browser):
    wait(browser, EC.alert_is_present()).accept()


def select(browser, element_id, value):
    Select(wait(browser, EC.visibility_of_element_located((By.ID, element_id)))).select_by_value(value)


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
        # The nodes table (GET /api/nodes) names the node the overview names, with its memory use.
        node = browser.find_element(By.XPATH, "//table[@class='kv']//tr[th[normalize-space()='Node']]/td").text
        nodes = browser.find_element(By.ID, "nodes").text
        assert node and node in nodes
        assert re.search(r"\d+(\.\d)? [KMGT]?i?B of \d+(\.\d)? [KMGT]?i?B", nodes), nodes
        shot(browser, "overview.png")
        assert js_errors(browser) == []
    finally:
        channel.queue_delete(queue)


def test_queue_from_pika_publish_and_get_through_the_ui(browser, channel, broker_url, names):
    vhost = pika.URLParameters(broker_url).virtual_host
    queue = names("ui")
    channel.queue_declare(queue, auto_delete=False)
    try:
        logged_in(browser)
        goto(browser, "#/queues")
        link = wait(browser, EC.element_to_be_clickable((By.LINK_TEXT, queue)))
        assert link.get_attribute("href").endswith(f"#/queue/{quote(vhost, safe='')}/{quote(queue, safe='')}")
        shot(browser, "queues.png")
        click(browser, (By.LINK_TEXT, queue))
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#main[data-route^='#/queue/']")))
        wait(browser, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#main h1"), queue))

        # Publish from the UI: through the default exchange, with a header and a property.
        open_section(browser, "Publish message")
        Select(browser.find_element(By.ID, "publish-form-delivery_mode")).select_by_value("2")
        browser.find_element(By.ID, "publish-form-headers").send_keys("x-from-ui = 42")
        browser.find_element(By.ID, "publish-form-properties").send_keys(
            "content_type = text/plain\nexpiration = 600000\npriority = 3")
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
        assert props.expiration == "600000"  # a string property, though typed as digits
        assert props.priority == 3
        assert props.headers == {"x-from-ui": 42}

        # Now empty: the UI says so.
        browser.find_element(By.CSS_SELECTOR, "#get-form button[type=submit]").click()
        wait(browser, EC.text_to_be_present_in_element((By.ID, "get-result"), "Queue is empty"))
        assert js_errors(browser) == []
    finally:
        channel.queue_delete(queue)


def test_exchange_add_bind_publish_unbind_delete_through_the_ui(browser, channel, broker_url, names):
    vhost = pika.URLParameters(broker_url).virtual_host
    exchange, queue = names("x"), names("q")
    channel.queue_declare(queue, auto_delete=False)
    try:
        logged_in(browser)
        goto(browser, "#/exchanges")
        open_section(browser, "Add a new exchange")
        select(browser, "add-exchange-vhost", vhost)
        fill(browser, "add-exchange-name", exchange)
        select(browser, "add-exchange-type", "topic")
        select(browser, "add-exchange-durable", "false")
        submit(browser, "add-exchange")
        flash_says(browser, f"Exchange {exchange} added.")
        # It exists with the chosen type: redeclaring it as another type is refused.
        channel.exchange_declare(exchange, "topic", passive=True)

        click(browser, (By.LINK_TEXT, exchange))
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#main[data-route^='#/exchange/']")))
        wait(browser, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#main h1"), exchange))
        open_section(browser, "Add binding from this exchange")
        fill(browser, "add-binding-destination", queue)
        fill(browser, "add-binding-routing_key", "ui.*")
        submit(browser, "add-binding")
        flash_says(browser, "Binding added.")
        wait(browser, EC.presence_of_element_located((By.XPATH, f"//tr[td[normalize-space()='ui.*']]//a[normalize-space()='{queue}']")))

        open_section(browser, "Publish message")
        fill(browser, "publish-form-routing_key", "ui.one")
        fill(browser, "publish-form-payload", "routed by topic")
        submit(browser, "publish-form")
        flash_says(browser, "Message published.")
        fill(browser, "publish-form-routing_key", "other.key")
        submit(browser, "publish-form")
        flash_says(browser, "Message published, but not routed.")
        assert channel.queue_declare(queue, passive=True).method.message_count == 1
        assert channel.basic_get(queue, auto_ack=True)[2] == b"routed by topic"

        row_button(browser, "ui.*", "Unbind")
        flash_says(browser, "Binding removed.")
        wait(browser, EC.text_to_be_present_in_element((By.ID, "main"), "No bindings"))
        channel.basic_publish(exchange, "ui.two", b"now unbound")
        assert channel.queue_declare(queue, passive=True).method.message_count == 0

        open_section(browser, "Delete this exchange")
        browser.find_element(By.XPATH, "//details[summary[normalize-space()='Delete this exchange']]//button").click()
        accept_confirm(browser)
        flash_says(browser, f"Exchange {exchange} deleted.")
        wait(browser, EC.url_contains("#/exchanges"))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.exchange_declare(exchange, "topic", passive=True)
        assert closed.value.reply_code == 404
        assert js_errors(browser) == []
    finally:
        ch = channel if channel.is_open else channel.connection.channel()
        ch.queue_delete(queue)
        ch.exchange_delete(exchange)  # deleting an exchange that is gone is not an error


def test_queue_add_with_typed_argument_purge_delete_through_the_ui(browser, connect, broker_url, names):
    vhost = pika.URLParameters(broker_url).virtual_host
    queue = names("capped")
    channel = connect().channel()
    channel.confirm_delivery()  # each publish below has reached the queue when it returns
    logged_in(browser)
    goto(browser, "#/queues")
    open_section(browser, "Add a new queue")
    select(browser, "add-queue-vhost", vhost)
    fill(browser, "add-queue-name", queue)
    select(browser, "add-queue-durable", "false")
    fill(browser, "add-queue-arguments", "x-max-length = 2")
    submit(browser, "add-queue")
    flash_says(browser, f"Queue {queue} added.")
    try:
        # The argument reached the broker as a number: the queue keeps only the last two messages.
        for body in (b"1", b"2", b"3"):
            channel.basic_publish("", queue, body)
        assert channel.queue_declare(queue, passive=True).method.message_count == 2

        click(browser, (By.LINK_TEXT, queue))
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#main[data-route^='#/queue/']")))
        wait(browser, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#main h1"), queue))
        wait(browser, EC.text_to_be_present_in_element((By.ID, "main"), "x-max-length = 2"))
        open_section(browser, "Delete or purge")
        browser.find_element(By.XPATH, "//button[normalize-space()='Purge messages']").click()
        accept_confirm(browser)
        flash_says(browser, f"Queue {queue} purged.")
        assert channel.queue_declare(queue, passive=True).method.message_count == 0

        browser.find_element(By.XPATH, "//button[normalize-space()='Delete queue']").click()
        accept_confirm(browser)
        flash_says(browser, f"Queue {queue} deleted.")
        wait(browser, EC.url_contains("#/queues"))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.queue_declare(queue, passive=True)
        assert closed.value.reply_code == 404
        assert js_errors(browser) == []
    finally:
        connect().channel().queue_delete(queue)


def test_connection_and_channel_listed_and_force_closed_through_the_ui(browser, broker_url, names):
    name = names("conn")
    conn = pika.BlockingConnection(amqp_params(broker_url, client_properties={"connection_name": name}))
    try:
        conn.channel().confirm_delivery()
        logged_in(browser)
        goto(browser, "#/channels")
        # The channel row names its connection ("<connection name> (1)"), with the confirm flag C.
        peer = "%s:%d" % conn._impl._transport._sock.getsockname()[:2]
        wait(browser, EC.presence_of_element_located(
            (By.XPATH, f"//tr[td[starts-with(normalize-space(), '{peer} ')]]//span[@class='tag' and normalize-space()='C']")))

        goto(browser, "#/connections")
        # With a vhost chosen the list comes from /api/vhosts/{vhost}/connections, which RabbitMQ
        # answers with a plain array: filtered and paged by the UI itself.
        select(browser, "vhost-filter", pika.URLParameters(broker_url).virtual_host)
        wait(browser, EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".listbar"), "matching of"))
        row_button(browser, name, "Force close")
        accept_confirm(browser)
        flash_says(browser, "closed.")
        closed = closed_by_broker(conn)
        assert (closed.reply_code, closed.reply_text) == (320, "CONNECTION_FORCED - Closed via management plugin")
        row_gone(browser, name)
        assert js_errors(browser) == []
    finally:
        if conn.is_open:
            conn.close()


def closed_by_broker(conn):
    """Runs conn's I/O until the broker closes it; returns the ConnectionClosedByBroker."""
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
    return closed.value


def test_connection_page_shows_channels_and_closes_with_a_reason(browser, broker_url, names):
    name = names("detail")
    conn = pika.BlockingConnection(amqp_params(broker_url, client_properties={"connection_name": name}))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=7)
        logged_in(browser)
        goto(browser, "#/connections")
        # The list links each connection to its page; RabbitMQ lists a new connection within seconds.
        link = (By.XPATH, f"//tr[td[contains(normalize-space(), '{name}')]]//a")
        click(browser, link)
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#main[data-route^='#/connection/']")))
        wait(browser, EC.text_to_be_present_in_element((By.ID, "main"), f'connection_name = "{name}"'))
        # Its one channel, with the prefetch pika set.
        wait(browser, EC.presence_of_element_located((By.XPATH, "//tr[td[contains(normalize-space(), ' (1)')] and td[normalize-space()='7']]")))

        open_section(browser, "Close this connection")
        fill(browser, "close-connection-reason", "closed by the UI test")
        submit(browser, "close-connection")
        accept_confirm(browser)
        flash_says(browser, "closed.")
        wait(browser, EC.url_contains("#/connections"))
        closed = closed_by_broker(conn)
        assert (closed.reply_code, closed.reply_text) == (320, "CONNECTION_FORCED - closed by the UI test")
        assert js_errors(browser) == []
    finally:
        if conn.is_open:
            conn.close()


def test_admin_user_vhost_permission_through_the_ui(browser, broker_url):
    suffix = uuid.uuid4().hex[:8]
    user, password, vhost = f"ui-user-{suffix}", f"pw-{suffix}", f"ui-vhost-{suffix}"
    as_user = amqp_params(broker_url, virtual_host=vhost, credentials=pika.PlainCredentials(user, password))
    logged_in(browser)
    try:
        goto(browser, "#/admin/vhosts")
        open_section(browser, "Add a new virtual host")
        fill(browser, "add-vhost-name", vhost)
        fill(browser, "add-vhost-description", "made by the UI test")
        submit(browser, "add-vhost")
        flash_says(browser, f"Virtual host {vhost} added.")
        wait(browser, EC.text_to_be_present_in_element((By.ID, "main"), "made by the UI test"))

        goto(browser, "#/admin/users")
        open_section(browser, "Add / update a user")
        fill(browser, "add-user-name", user)
        fill(browser, "add-user-password", password)
        fill(browser, "add-user-tags", "management")
        submit(browser, "add-user")
        flash_says(browser, f"User {user} saved.")
        wait(browser, EC.presence_of_element_located((By.XPATH, f"//tr[td[normalize-space()='{user}'] and td[normalize-space()='management']]")))

        goto(browser, "#/admin/permissions")
        open_section(browser, "Set permission")
        fill(browser, "set-permission-user", user)
        select(browser, "set-permission-vhost", vhost)
        fill(browser, "set-permission-write", "^$")
        submit(browser, "set-permission")
        flash_says(browser, f"Permission of {user} in {vhost} set.")
        # The user logs in over AMQP with the UI's password and has the UI's permissions.
        conn = pika.BlockingConnection(as_user)
        try:
            ch = conn.channel()
            q = ch.queue_declare("", exclusive=True).method.queue  # configure .* allows it
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
                ch.queue_bind(q, "amq.direct", "k")  # binding writes to the queue: write ^$ refuses it
            assert closed.value.reply_code == 403
        finally:
            if conn.is_open:
                conn.close()

        row_button(browser, user, "Clear")
        accept_confirm(browser)
        flash_says(browser, f"Permission of {user} in {vhost} cleared.")
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
            pika.BlockingConnection(as_user)

        goto(browser, "#/admin/users")
        row_button(browser, user, "Delete")
        accept_confirm(browser)
        flash_says(browser, f"User {user} deleted.")
        row_gone(browser, user)
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(as_user)

        goto(browser, "#/admin/vhosts")
        row_button(browser, vhost, "Delete")
        accept_confirm(browser)
        flash_says(browser, f"Virtual host {vhost} deleted.")
        row_gone(browser, vhost)
        assert js_errors(browser) == []
    finally:
        # Leave nothing behind on a shared broker if an assertion stopped the test early.
        login(browser)
        browser.execute_script(f"""
            const h = {{Authorization: 'Basic ' + sessionStorage.getItem('warren-mgmt-auth')}};
            fetch('api/users/{user}', {{method: 'DELETE', headers: h}});
            fetch('api/vhosts/{vhost}', {{method: 'DELETE', headers: h}});""")


def test_policy_added_applies_and_is_deleted_through_the_ui(browser, channel, broker_url, names):
    vhost = pika.URLParameters(broker_url).virtual_host
    queue = names("policed")
    policy = "ui-" + uuid.uuid4().hex[:8]
    logged_in(browser)
    goto(browser, "#/admin/policies")
    open_section(browser, "Add / update a policy")
    select(browser, "add-policy-vhost", vhost)
    fill(browser, "add-policy-name", policy)
    fill(browser, "add-policy-pattern", "^" + queue.replace(".", "\\.") + "$")
    select(browser, "add-policy-apply_to", "queues")
    fill(browser, "add-policy-definition", "max-length = 1")
    submit(browser, "add-policy")
    flash_says(browser, f"Policy {policy} saved.")
    try:
        wait(browser, EC.presence_of_element_located((By.XPATH, f"//tr[td[normalize-space()='{policy}'] and td[normalize-space()='max-length = 1']]")))
        channel.queue_declare(queue, auto_delete=False)
        channel.confirm_delivery()  # each publish below has reached the queue when it returns
        for body in (b"1", b"2", b"3"):
            channel.basic_publish("", queue, body)
        assert channel.queue_declare(queue, passive=True).method.message_count == 1

        row_button(browser, policy, "Delete")
        accept_confirm(browser)
        flash_says(browser, f"Policy {policy} deleted.")
        row_gone(browser, policy)
        assert js_errors(browser) == []
    finally:
        channel.queue_delete(queue)
        browser.execute_script(f"""
            fetch('api/policies/{quote(vhost, safe="")}/{policy}', {{method: 'DELETE',
              headers: {{Authorization: 'Basic ' + sessionStorage.getItem('warren-mgmt-auth')}}}});""")


def test_definitions_export_download_and_import_upload(browser, channel, broker_url, names, tmp_path):
    vhost = pika.URLParameters(broker_url).virtual_host
    exported, imported = names("exported"), names("imported")
    channel.queue_declare(exported, auto_delete=False)
    try:
        logged_in(browser)
        wait(browser, EC.visibility_of_element_located((By.ID, "export-form")))
        fill(browser, "export-form-filename", f"defs-{exported}.json")
        submit(browser, "export-form")
        flash_says(browser, "Definitions downloaded.")
        path = browser.downloads / f"defs-{exported}.json"
        wait(browser, lambda b: path.is_file() and path.stat().st_size > 0)
        defs = json.loads(path.read_text())
        assert {"name": exported, "vhost": vhost} in [{"name": q["name"], "vhost": q["vhost"]} for q in defs["queues"]]
        assert any(u["name"] == USER for u in defs["users"])

        upload = tmp_path / "import.json"
        upload.write_text(json.dumps({"queues": [{"name": imported, "vhost": vhost, "durable": True,
                                                  "auto_delete": False, "arguments": {"x-max-length": 7}}]}))
        browser.find_element(By.ID, "import-form-file").send_keys(str(upload))
        submit(browser, "import-form")
        flash_says(browser, "Your definitions were imported successfully.")
        channel.queue_declare(imported, passive=True)
        # Redeclaring with the imported argument is equivalent, so it was imported with it.
        channel.queue_declare(imported, durable=True, arguments={"x-max-length": 7})

        not_json = tmp_path / "broken.json"
        not_json.write_text("{not json")
        browser.find_element(By.ID, "import-form-file").send_keys(str(not_json))
        submit(browser, "import-form")
        flash_says(browser, "broken.json is not JSON")
        assert js_errors(browser) == []
    finally:
        channel.queue_delete(exported)
        channel.queue_delete(imported)


def test_user_tags_decide_what_the_ui_allows(browser, broker_url):
    vhost = pika.URLParameters(broker_url).virtual_host
    suffix = uuid.uuid4().hex[:8]
    notag, monitor = f"ui-notag-{suffix}", f"ui-monitor-{suffix}"
    logged_in(browser)
    goto(browser, "#/admin/users")
    open_section(browser, "Add / update a user")
    for user, tags in ((notag, ""), (monitor, "monitoring")):
        fill(browser, "add-user-name", user)
        fill(browser, "add-user-password", "pw-" + suffix)
        fill(browser, "add-user-tags", tags)
        submit(browser, "add-user")
        flash_says(browser, f"User {user} saved.")
    try:
        # No management tag: the API's 401 reason is shown and nothing is kept.
        login(browser, notag, "pw-" + suffix)
        wait(browser, EC.text_to_be_present_in_element((By.ID, "login-error"), "Not management user"))
        assert not browser.find_element(By.ID, "app").is_displayed()

        # monitoring: logged in, no Admin tab; a refused change is reported, the session stays.
        login(browser, monitor, "pw-" + suffix)
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#main[data-route]")))
        assert not browser.find_element(By.ID, "nav-admin").is_displayed()
        goto(browser, "#/queues")
        open_section(browser, "Add a new queue")
        select(browser, "add-queue-vhost", vhost)
        fill(browser, "add-queue-name", f"ui-refused-{suffix}")
        submit(browser, "add-queue")
        flash_says(browser, "User not authorised to access virtual host")
        assert browser.find_element(By.ID, "app").is_displayed()
        assert js_errors(browser) == []
    finally:
        logged_in(browser)
        goto(browser, "#/admin/users")
        for user in (notag, monitor):
            row_button(browser, user, "Delete")
            accept_confirm(browser)
            flash_says(browser, f"User {user} deleted.")


def test_vhost_selector_filters_the_lists(browser, channel, broker_url, names):
    vhost = pika.URLParameters(broker_url).virtual_host
    queue, other = names("filtered"), "ui-empty-" + uuid.uuid4().hex[:8]
    channel.queue_declare(queue, auto_delete=False)
    logged_in(browser)
    goto(browser, "#/admin/vhosts")
    open_section(browser, "Add a new virtual host")
    fill(browser, "add-vhost-name", other)
    submit(browser, "add-vhost")
    flash_says(browser, f"Virtual host {other} added.")
    try:
        goto(browser, "#/queues")
        select(browser, "vhost-filter", vhost)
        wait(browser, EC.element_to_be_clickable((By.LINK_TEXT, queue)))
        assert "Virtual host" not in [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#main th")]

        select(browser, "vhost-filter", other)
        wait(browser, EC.text_to_be_present_in_element((By.ID, "main"), "No queues"))
        assert not browser.find_elements(By.LINK_TEXT, queue)

        select(browser, "vhost-filter", "")
        wait(browser, EC.element_to_be_clickable((By.LINK_TEXT, queue)))
        assert "Virtual host" in [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#main th")]
        assert js_errors(browser) == []
    finally:
        channel.queue_delete(queue)
        goto(browser, "#/admin/vhosts")
        row_button(browser, other, "Delete")
        accept_confirm(browser)
        flash_says(browser, f"Virtual host {other} deleted.")


def test_list_filter_regex_sort_and_pages(browser, channel, names):
    queues = [names(f"q{i:02d}") for i in range(21)]
    prefix = queues[0].rsplit(".", 1)[0]
    for q in queues:
        channel.queue_declare(q, auto_delete=False)
    try:
        logged_in(browser)
        goto(browser, "#/queues")
        listed = lambda b: sorted(a.text for a in b.find_elements(By.CSS_SELECTOR, "#main td.name a"))  # noqa: E731
        select(browser, "list-page-size", "20")
        browser.find_element(By.CSS_SELECTOR, ".listbar input.filter").send_keys(prefix)
        wait(browser, EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".listbar"), "of 2 · 21 matching"))
        wait(browser, lambda b: listed(b) == queues[:20])

        select(browser, "list-page", "2")
        wait(browser, lambda b: listed(b) == queues[20:])

        # A regex: only names ending in 1 (q01, q11) — and page 2 no longer exists, so page 1.
        browser.find_element(By.XPATH, "//div[@class='listbar']//label[contains(., 'Regex')]/input").click()
        box = browser.find_element(By.CSS_SELECTOR, ".listbar input.filter")
        box.clear()
        box.send_keys(prefix.replace(".", "\\.") + r"\.q.1$")
        wait(browser, lambda b: listed(b) == [queues[1], queues[11]])
        assert Select(browser.find_element(By.ID, "list-page")).first_selected_option.text == "1"

        # Sorting (the API's sort / sort_reverse): by name, then the other way round; by total
        # messages, most first (the counts reach the API's stats within a few seconds).
        box = browser.find_element(By.CSS_SELECTOR, ".listbar input.filter")
        box.clear()
        box.send_keys(prefix.replace(".", "\\.") + r"\.q")
        shown = lambda b: [a.text for a in b.find_elements(By.CSS_SELECTOR, "#main td.name a")]  # noqa: E731
        wait(browser, lambda b: sorted(shown(b)) == queues[:20])
        click(browser, (By.CSS_SELECTOR, "button.sort[data-sort='name']"))
        wait(browser, lambda b: shown(b) == queues[:20])
        click(browser, (By.CSS_SELECTOR, "button.sort[data-sort='name']"))
        wait(browser, lambda b: shown(b) == queues[:0:-1])
        assert browser.find_element(By.CSS_SELECTOR, "button.sort[data-sort='name']").text.endswith("▼")
        channel.confirm_delivery()
        for q, count in ((queues[5], 3), (queues[7], 1)):
            for _ in range(count):
                channel.basic_publish("", q, b"m")
        click(browser, (By.CSS_SELECTOR, "button.sort[data-sort='messages']"))
        click(browser, (By.CSS_SELECTOR, "button.sort[data-sort='messages']"))
        wait(browser, lambda b: shown(b)[:2] == [queues[5], queues[7]], timeout=30)
        assert js_errors(browser) == []
    finally:
        for q in queues:
            channel.queue_delete(q)


def test_topic_permission_set_and_cleared_through_the_ui(browser, broker_url):
    vhost = pika.URLParameters(broker_url).virtual_host
    suffix = uuid.uuid4().hex[:8]
    user, password = f"ui-topic-{suffix}", f"pw-{suffix}"
    as_user = amqp_params(broker_url, credentials=pika.PlainCredentials(user, password))

    def publish(key):
        """Publishes to amq.topic as the user with confirms; True if accepted, False on 403."""
        conn = pika.BlockingConnection(as_user)
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("amq.topic", key, b"x")
            return True
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 403, e
            return False
        finally:
            if conn.is_open:
                conn.close()

    logged_in(browser)
    goto(browser, "#/admin/users")
    open_section(browser, "Add / update a user")
    fill(browser, "add-user-name", user)
    fill(browser, "add-user-password", password)
    submit(browser, "add-user")
    flash_says(browser, f"User {user} saved.")
    try:
        goto(browser, "#/admin/permissions")
        open_section(browser, "Set permission")
        fill(browser, "set-permission-user", user)
        select(browser, "set-permission-vhost", vhost)
        submit(browser, "set-permission")
        flash_says(browser, f"Permission of {user} in {vhost} set.")
        assert publish("denied.key")

        open_section(browser, "Set topic permission")
        fill(browser, "set-topic-permission-user", user)
        select(browser, "set-topic-permission-vhost", vhost)
        fill(browser, "set-topic-permission-write", r"^allowed\.")
        submit(browser, "set-topic-permission")
        flash_says(browser, f"Topic permission of {user} in {vhost} on amq.topic set.")
        row = f"//tr[td[normalize-space()='{user}'] and td[normalize-space()='amq.topic']]"
        wait(browser, EC.presence_of_element_located((By.XPATH, row + "/td[normalize-space()='^allowed\\.']")))
        assert publish("allowed.key")
        assert not publish("denied.key")

        click(browser, (By.XPATH, row + "//button[normalize-space()='Clear']"))
        accept_confirm(browser)
        flash_says(browser, f"Topic permission of {user} in {vhost} on amq.topic cleared.")
        row_gone(browser, "^allowed\\.")
        assert publish("denied.key")
        assert js_errors(browser) == []
    finally:
        goto(browser, "#/admin/users")
        row_button(browser, user, "Delete")
        accept_confirm(browser)
        flash_says(browser, f"User {user} deleted.")


def test_operator_policy_added_applies_and_is_deleted_through_the_ui(browser, channel, broker_url, names):
    vhost = pika.URLParameters(broker_url).virtual_host
    queue = names("operated")
    policy = "ui-op-" + uuid.uuid4().hex[:8]
    logged_in(browser)
    goto(browser, "#/admin/policies")
    open_section(browser, "Add / update an operator policy")
    select(browser, "add-operator-policy-vhost", vhost)
    fill(browser, "add-operator-policy-name", policy)
    fill(browser, "add-operator-policy-pattern", "^" + queue.replace(".", "\\.") + "$")
    fill(browser, "add-operator-policy-definition", "max-length = 1")
    submit(browser, "add-operator-policy")
    flash_says(browser, f"Operator policy {policy} saved.")
    try:
        wait(browser, EC.presence_of_element_located((By.XPATH, f"//tr[td[normalize-space()='{policy}'] and td[normalize-space()='max-length = 1']]")))
        channel.queue_declare(queue, auto_delete=False)
        channel.confirm_delivery()  # each publish below has reached the queue when it returns
        for body in (b"1", b"2", b"3"):
            channel.basic_publish("", queue, body)
        assert channel.queue_declare(queue, passive=True).method.message_count == 1

        row_button(browser, policy, "Delete")
        accept_confirm(browser)
        flash_says(browser, f"Operator policy {policy} deleted.")
        row_gone(browser, policy)
        assert js_errors(browser) == []
    finally:
        channel.queue_delete(queue)
        browser.execute_script(f"""
            fetch('api/operator-policies/{quote(vhost, safe="")}/{policy}', {{method: 'DELETE',
              headers: {{Authorization: 'Basic ' + sessionStorage.getItem('warren-mgmt-auth')}}}});""")
