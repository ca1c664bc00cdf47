"""The management web UI (plugins/management-ui/) in headless Chromium: login, overview and its
charts, queues (publish, get, purge, delete, arguments), exchanges and bindings, the list controls,
the vhost selector, definitions export and import. Every effect is checked through pika.
How to run it: tests/python/ui_browser.py.
"""

import json
import re
import uuid
from urllib.parse import quote

import pika
import pytest

from ui_browser import (
    skip_without_ui, UI, USER, PASSWORD, wait, login, goto, logged_in, js_errors, flash_says,
    open_section, accept_confirm, select, fill, submit, row_button, click, shot,
)

pytestmark = skip_without_ui

if UI:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select


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
