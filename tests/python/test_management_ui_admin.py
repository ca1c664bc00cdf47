"""The management web UI (plugins/management-ui/) in headless Chromium: connections and
channels, users, vhosts, permissions, topic permissions, user tags, policies and operator
policies. Every effect is checked through pika. How to run it: tests/python/ui_browser.py.
"""

import os
import uuid
from urllib.parse import quote

import pika
import pytest

from ui_browser import (
    skip_without_ui, UI, wait, login, goto, logged_in, js_errors, flash_says, open_section,
    accept_confirm, select, fill, submit, row_button, click, row_gone, amqp_params,
    closed_by_broker,
)

pytestmark = skip_without_ui

# Pages whose API Warren's management plugin does not serve yet. strict: once the feature is
# built the test passes, the XPASS fails the run, and the mark must go. Against another
# management API (WARREN_MGMT_URL, e.g. RabbitMQ's) they run normally.
_OWN = not os.environ.get("WARREN_MGMT_URL")

if UI:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC


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

def test_vhost_and_user_limits_set_and_cleared_through_the_ui(browser, broker_url, names):
    vhost = pika.URLParameters(broker_url).virtual_host
    auth = "{Authorization: 'Basic ' + sessionStorage.getItem('warren-mgmt-auth')}"
    logged_in(browser)
    goto(browser, "#/admin/limits")
    open_section(browser, "Set / update a virtual host limit")
    select(browser, "set-vhost-limit-on", vhost)
    select(browser, "set-vhost-limit-name", "max-queues")
    fill(browser, "set-vhost-limit-value", "0")
    submit(browser, "set-vhost-limit")
    flash_says(browser, f"Limit max-queues of virtual host {vhost} set.")
    conn = pika.BlockingConnection(amqp_params(broker_url))
    try:
        wait(browser, EC.presence_of_element_located((By.XPATH, "//tr[td[normalize-space()='max-queues'] and td[normalize-space()='0']]")))
        # The broker enforces it: no new queue in that vhost.
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            conn.channel().queue_declare(names("limited"))
        assert refused.value.reply_code == 406 and "queue limit in vhost" in refused.value.reply_text, refused.value
        row_button(browser, "max-queues", "Clear")
        accept_confirm(browser)
        flash_says(browser, f"Limit max-queues of virtual host {vhost} cleared.")
        q = names("unlimited")
        ch = conn.channel()
        ch.queue_declare(q)
        ch.queue_delete(q)

        open_section(browser, "Set / update a user limit")
        fill(browser, "set-user-limit-on", "guest")
        select(browser, "set-user-limit-name", "max-channels")
        fill(browser, "set-user-limit-value", "5000")
        submit(browser, "set-user-limit")
        flash_says(browser, "Limit max-channels of user guest set.")
        wait(browser, EC.presence_of_element_located((By.XPATH, "//tr[td[normalize-space()='guest'] and td[normalize-space()='max-channels'] and td[normalize-space()='5,000']]")))
        row_button(browser, "max-channels", "Clear")
        accept_confirm(browser)
        flash_says(browser, "Limit max-channels of user guest cleared.")
        row_gone(browser, "max-channels")
        assert js_errors(browser) == []
    finally:
        if conn.is_open:
            conn.close()
        browser.execute_script(f"""
            fetch('api/vhost-limits/{quote(vhost, safe="")}/max-queues', {{method: 'DELETE', headers: {auth}}});
            fetch('api/user-limits/guest/max-channels', {{method: 'DELETE', headers: {auth}}});""")


@pytest.mark.skipif(not _OWN, reason="renames the cluster: not on a shared reference node")
def test_cluster_renamed_through_the_ui(browser):
    auth = "{Authorization: 'Basic ' + sessionStorage.getItem('warren-mgmt-auth')}"
    name = "ui-cluster-" + uuid.uuid4().hex[:6]
    logged_in(browser)
    goto(browser, "#/admin/cluster")
    wait(browser, EC.text_to_be_present_in_element((By.ID, "main"), "Cluster name"))
    open_section(browser, "Rename the cluster")
    fill(browser, "cluster-name-name", name)
    submit(browser, "cluster-name")
    try:
        flash_says(browser, f"Cluster renamed to {name}.")
        wait(browser, EC.presence_of_element_located((By.XPATH, f"//table[contains(@class, 'kv')]//td[normalize-space()='{name}']")))
        assert js_errors(browser) == []
    finally:
        browser.execute_script(f"fetch('api/global-parameters/cluster_name', {{method: 'DELETE', headers: {auth}}});")
