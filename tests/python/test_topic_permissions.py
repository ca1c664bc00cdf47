"""Topic permissions with pika: set through the operator CLI and through the management HTTP API
(RabbitMQ's status codes and rows), enforced on publish and bind with RabbitMQ's 403 text, carried
by definitions export and import. Runs against the session's warren-server, or the reference
node with WARREN_TEST_URL (+ WARREN_TEST_CTL for the CLI test).
"""

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pika
import pytest


def http(management_url, method, path, body=None):
    """(status, parsed JSON or None) of an API call as guest."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(management_url + "/api" + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def q(s):
    return urllib.parse.quote(s, safe="")


@pytest.fixture
def user_and_vhost(management_url):
    """A fresh user (password "pw", all permissions) in a fresh vhost; deleted afterwards."""
    suffix = uuid.uuid4().hex[:8]
    user, vhost = f"tp-user-{suffix}", f"tp-vhost-{suffix}"
    assert http(management_url, "PUT", f"/users/{q(user)}", {"password": "pw", "tags": ""})[0] == 201
    assert http(management_url, "PUT", f"/vhosts/{q(vhost)}")[0] == 201
    perm = {"configure": ".*", "write": ".*", "read": ".*"}
    assert http(management_url, "PUT", f"/permissions/{q(vhost)}/{q(user)}", perm)[0] == 201
    yield user, vhost
    http(management_url, "DELETE", f"/users/{q(user)}")
    http(management_url, "DELETE", f"/vhosts/{q(vhost)}")


def connect_as(broker_url, user, vhost):
    params = pika.URLParameters(broker_url)
    params.credentials = pika.PlainCredentials(user, "pw")
    params.virtual_host = vhost
    return pika.BlockingConnection(params)


def refusal(user, vhost, key):
    return (f"ACCESS_REFUSED - access to topic '{key}' in exchange 'amq.topic' in vhost '{vhost}' "
            f"refused for user '{user}'")


def publish(conn, key):
    """Publishes to amq.topic with confirms: None if accepted, else (code, text) of the close."""
    ch = conn.channel()
    ch.confirm_delivery()
    try:
        ch.basic_publish("amq.topic", key, b"x")
        return None
    except pika.exceptions.ChannelClosedByBroker as e:
        return e.reply_code, e.reply_text


def test_api_status_codes_rows_and_enforcement(broker_url, management_url, user_and_vhost):
    user, vhost = user_and_vhost
    at = f"/topic-permissions/{q(vhost)}/{q(user)}"
    assert http(management_url, "GET", at) == (404, {"error": "Object Not Found", "reason": "Not Found"})
    # Bodies without the three keys, unknown user or vhost: 400 with RabbitMQ's reasons.
    assert http(management_url, "PUT", at, {"read": "x"}) == (
        400, {"error": "bad_request", "reason": "[{key_missing,exchange},{key_missing,write}]"})
    unknown = {"exchange": "amq.topic", "write": "a", "read": "b"}
    assert http(management_url, "PUT", f"/topic-permissions/{q(vhost)}/no-such-user", unknown) == (
        400, {"error": "bad_request", "reason": "vhost_or_user_not_found"})
    assert http(management_url, "PUT", f"/topic-permissions/no-such-vhost/{q(user)}", unknown) == (
        400, {"error": "bad_request", "reason": "vhost_or_user_not_found"})
    assert http(management_url, "PUT", at, {"exchange": "amq.topic", "write": "(", "read": ""})[0] == 400

    # 201 for the user's first topic permission in the vhost, 204 afterwards.
    body = {"exchange": "amq.topic", "write": "^{username}\\.", "read": "^{vhost}\\."}
    assert http(management_url, "PUT", at, body) == (201, None)
    assert http(management_url, "PUT", at, {"exchange": "other", "write": "", "read": ""}) == (204, None)
    row = {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": "^{username}\\.", "read": "^{vhost}\\."}
    other = {"user": user, "vhost": vhost, "exchange": "other", "write": "", "read": ""}
    status, rows = http(management_url, "GET", at)
    assert status == 200 and sorted(rows, key=lambda r: r["exchange"]) == [row, other]
    for path in (f"/users/{q(user)}/topic-permissions", f"/vhosts/{q(vhost)}/topic-permissions"):
        status, rows = http(management_url, "GET", path)
        assert status == 200 and sorted(rows, key=lambda r: r["exchange"]) == [row, other], path
    status, rows = http(management_url, "GET", "/topic-permissions")
    assert status == 200 and row in rows and other in rows
    assert http(management_url, "GET", "/users/no-such-user/topic-permissions")[0] == 404
    assert http(management_url, "GET", "/vhosts/no-such-vhost/topic-permissions")[0] == 404

    # Enforced on publish (write) and bind (read), with {username} and {vhost} expanded.
    conn = connect_as(broker_url, user, vhost)
    try:
        assert publish(conn, f"{user}.a") is None
        assert publish(conn, "other.a") == (403, refusal(user, vhost, "other.a"))
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, "amq.topic", f"{vhost}.b")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_bind(queue, "amq.topic", f"{user}.b")
        assert (e.value.reply_code, e.value.reply_text) == (403, refusal(user, vhost, f"{user}.b"))

        # DELETE .../EXCHANGE clears one row, DELETE on the pair all of them; then 404.
        assert http(management_url, "DELETE", at + "/other") == (204, None)
        status, rows = http(management_url, "GET", at)
        assert (status, rows) == (200, [row])
        assert http(management_url, "DELETE", at) == (204, None)
        assert http(management_url, "DELETE", at) == (404, {"error": "Object Not Found", "reason": "Not Found"})
        assert publish(conn, "other.a") is None, "cleared: every routing key again"
    finally:
        conn.close()


def test_definitions_carry_topic_permissions(management_url, user_and_vhost):
    user, vhost = user_and_vhost
    row = {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": "^w", "read": "^r"}
    assert http(management_url, "PUT", f"/topic-permissions/{q(vhost)}/{q(user)}", row)[0] == 201
    status, defs = http(management_url, "GET", "/definitions")
    assert status == 200 and row in defs["topic_permissions"]
    assert http(management_url, "DELETE", f"/topic-permissions/{q(vhost)}/{q(user)}")[0] == 204
    # Importing RabbitMQ's format brings the row back.
    doc = {"topic_permissions": [row]}
    assert http(management_url, "POST", "/definitions", doc)[0] in (201, 204)
    status, rows = http(management_url, "GET", f"/topic-permissions/{q(vhost)}/{q(user)}")
    assert (status, rows) == (200, [row])


def test_cli_set_list_and_clear(broker_url, broker_ctl, user_and_vhost):
    user, vhost = user_and_vhost
    r = broker_ctl("set_topic_permissions", "-p", vhost, user, "amq.topic", "^allowed\\.", ".*")
    assert r.returncode == 0, r.stdout + r.stderr
    r = broker_ctl("list_topic_permissions", "-q", "-p", vhost)
    assert r.stdout == f"user\texchange\twrite\tread\n{user}\tamq.topic\t^allowed\\.\t.*\n"
    conn = connect_as(broker_url, user, vhost)
    try:
        assert publish(conn, "allowed.1") is None
        assert publish(conn, "denied.1") == (403, refusal(user, vhost, "denied.1"))
        assert broker_ctl("clear_topic_permissions", "-p", vhost, user, "amq.topic").returncode == 0
        assert publish(conn, "denied.1") is None
    finally:
        conn.close()
    r = broker_ctl("list_topic_permissions", "-p", "no-such-vhost")
    assert (r.returncode, r.stderr) == (65, "Virtual host 'no-such-vhost' does not exist\n")
