"""Token login with pika through the shipped warren_auth_backend_oauth2 plugin (tokens minted
here with PyJWT, HS256): scopes as permissions with RabbitMQ's texts, refused tokens, the
internal users asked first, connection.update_secret.

Warren only (RabbitMQ's reference node has no OAuth 2 backend enabled): skipped with
WARREN_TEST_URL. Starts its own warren-server with an [auth_oauth2] config.
"""

import base64
import os
import time

import jwt
import pika
import pytest

from conftest import REPO_ROOT, _free_port, _port_open, _stop

SECRET = b"pika-test-secret-0123456789abcdef"


def token(sub, scope, **extra):
    claims = {"sub": sub, "aud": "rabbitmq", "scope": scope, "exp": int(time.time()) + 3600}
    claims.update(extra)
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def oauth2_port(tmp_path_factory):
    if os.environ.get("WARREN_TEST_URL"):
        pytest.skip("needs Warren's oauth2 plugin")
    import subprocess
    tmp = tmp_path_factory.mktemp("oauth2")
    k = base64.urlsafe_b64encode(SECRET).decode().rstrip("=")
    (tmp / "warren.toml").write_text(f"""
[auth]
backends = ["internal", "rabbitmq_auth_backend_oauth2"]
[auth_oauth2]
resource_server_id = "rabbitmq"
default_key = "id1"
[auth_oauth2.signing_keys]
id1 = {{ kty = "oct", k = "{k}" }}
""")
    binary = os.environ.get("WARREN_SERVER_BIN", str(REPO_ROOT / "target/debug/warren-server"))
    port = _free_port()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([binary, "--config", str(tmp / "warren.toml"), "--amqp-port", str(port),
                             "--bind", "127.0.0.1", "--data-dir", str(tmp / "data")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    deadline = time.monotonic() + 20
    while not _port_open(port):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp / "server.log").read_text()
        time.sleep(0.05)
    yield port
    _stop(proc)
    log.close()


def connect(port, user, password):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, "/", pika.PlainCredentials(user, password)))


def test_read_only_token_is_refused_on_declare_and_publish(oauth2_port):
    admin = connect(oauth2_port, "guest", "guest")
    admin.channel().queue_declare("pika-oauth2-shared")
    c = connect(oauth2_port, "ignored", token("reader", "rabbitmq.read:*/*"))
    ch = c.channel()
    ch.basic_get("pika-oauth2-shared")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("pika-oauth2-mine")
    assert (e.value.reply_code, e.value.reply_text) == (
        403, "ACCESS_REFUSED - access to queue 'pika-oauth2-mine' in vhost '/' refused for user 'reader'")
    ch = c.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_publish("", "pika-oauth2-shared", b"x")
    assert (e.value.reply_code, e.value.reply_text) == (
        403, "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'reader'")
    c.close()
    admin.close()


def test_narrowed_patterns(oauth2_port):
    c = connect(oauth2_port, "", token("narrow", "rabbitmq.configure:%2F/pq-* rabbitmq.write:%2F/pq-* rabbitmq.read:%2F/pq-*"))
    ch = c.channel()
    ch.queue_declare("pq-1", auto_delete=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("other-1")
    assert e.value.reply_code == 403
    c.close()


@pytest.mark.parametrize("what", ["expired", "forged", "wrong audience"])
def test_bad_tokens_are_refused(oauth2_port, what):
    all_ = "rabbitmq.read:*/* rabbitmq.write:*/* rabbitmq.configure:*/*"
    t = {
        "expired": lambda: token("a", all_, exp=int(time.time()) - 5),
        "forged": lambda: jwt.encode({"sub": "a", "aud": "rabbitmq", "scope": all_}, b"wrong-secret-0123456789abcdefgh", algorithm="HS256"),
        "wrong audience": lambda: token("a", all_, aud=["other"]),
    }[what]()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as e:
        connect(oauth2_port, "a", t)
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in str(e.value)


def test_internal_users_come_first(oauth2_port):
    connect(oauth2_port, "guest", "guest").close()
    c = connect(oauth2_port, "guest", token("svc", "rabbitmq.write:*/*"))
    ch = c.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "nowhere", b"x", pika.BasicProperties(user_id="svc"))
    c.close()


def test_update_secret(oauth2_port):
    c = connect(oauth2_port, "", token("rotating", "rabbitmq.read:*/*"))
    c.update_secret(token("rotating", "rabbitmq.read:*/* rabbitmq.write:*/*"), "refresh")
    ch = c.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "nowhere", b"x")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        c.update_secret("not-a-token", "refresh")
        c.process_data_events(1)
    assert (e.value.reply_code, e.value.reply_text) == (530, "NOT_ALLOWED - New secret was refused by one of the backends")
