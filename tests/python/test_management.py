"""The management plugin through RabbitMQ 3.10's own `rabbitmqadmin`, downloaded from the
broker's /cli/rabbitmqadmin as a RabbitMQ user does, and a pika client on the AMQP side.

Runs against the session's warren-server (management enabled with `warren-plugins enable
rabbitmq_management`) or, with WARREN_TEST_URL, against the reference RabbitMQ's management
listener (WARREN_TEST_HTTP_URL, default http://127.0.0.1:15673).
"""

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest


@pytest.fixture(scope="module")
def admin(management_url, tmp_path_factory):
    """admin(*args) runs rabbitmqadmin against the broker and returns its CompletedProcess;
    admin.json(*args) parses `-f raw_json` output."""
    script = tmp_path_factory.mktemp("cli") / "rabbitmqadmin"
    with urllib.request.urlopen(management_url + "/cli/rabbitmqadmin", timeout=10) as r:
        assert r.status == 200
        script.write_bytes(r.read())
    u = urllib.parse.urlparse(management_url)
    base = [sys.executable, str(script), "-H", u.hostname, "-P", str(u.port), "-u", "guest", "-p", "guest"]

    class Admin:
        def __call__(self, *args, check=True):
            r = subprocess.run(base + list(args), capture_output=True, text=True, timeout=60)
            if check:
                assert r.returncode == 0, f"rabbitmqadmin {args}: {r.stdout}{r.stderr}"
            return r

        def json(self, *args):
            return json.loads(self("-f", "raw_json", *args).stdout)

    return Admin()


def test_declare_list_show_publish_get_purge_delete_queue(admin, channel, names):
    q = names("q")
    assert "queue declared" in admin("declare", "queue", f"name={q}", "durable=false").stdout
    rows = [r for r in admin.json("list", "queues", "name", "durable", "messages") if r["name"] == q]
    # RabbitMQ adds "messages" once its stats collector has seen the queue.
    assert [(r["name"], r["durable"], r.get("messages", 0)) for r in rows] == [(q, False, 0)]
    shown = admin.json("show", "overview")
    assert "object_totals" in shown[0]

    assert "Message published" in admin("publish", "exchange=amq.default", f"routing_key={q}", "payload=hello").stdout
    got = admin.json("get", f"queue={q}", "ackmode=ack_requeue_true")
    assert got[0]["payload"] == "hello" and got[0]["redelivered"] is False
    # Requeued: pika sees it again, redelivered.
    method, _props, body = channel.basic_get(q, auto_ack=True)
    assert body == b"hello" and method.redelivered

    admin("publish", f"routing_key={q}", "payload=two")
    assert "queue purged" in admin("purge", "queue", f"name={q}").stdout
    assert channel.queue_declare(q, passive=True).method.message_count == 0
    assert "queue deleted" in admin("delete", "queue", f"name={q}").stdout
    r = admin("delete", "queue", f"name={q}", check=False)
    assert r.returncode != 0 and "not found" in (r.stdout + r.stderr).lower()


def test_exchanges_and_bindings(admin, channel, names):
    x, q = names("x"), names("q")
    admin("declare", "exchange", f"name={x}", "type=topic", "durable=false")
    admin("declare", "queue", f"name={q}", "durable=false")
    assert "binding declared" in admin("declare", "binding", f"source={x}", f"destination={q}", "routing_key=a.#").stdout
    rows = [r for r in admin.json("list", "bindings", "source", "destination", "routing_key") if r["source"] == x]
    assert rows == [{"source": x, "destination": q, "routing_key": "a.#"}]
    assert any(e["name"] == x and e["type"] == "topic" for e in admin.json("list", "exchanges", "name", "type"))
    admin("publish", f"exchange={x}", "routing_key=a.b.c", "payload=routed")
    assert channel.queue_declare(q, passive=True).method.message_count == 1
    got = admin.json("get", f"queue={q}", "ackmode=ack_requeue_false")
    assert got[0]["payload"] == "routed" and got[0]["routing_key"] == "a.b.c"
    assert channel.queue_declare(q, passive=True).method.message_count == 0
    admin("delete", "binding", f"source={x}", f"destination={q}", "destination_type=queue", "properties_key=a.%23")
    assert [r for r in admin.json("list", "bindings", "source") if r["source"] == x] == []
    admin("delete", "exchange", f"name={x}")
    admin("delete", "queue", f"name={q}")


def test_export_and_import_definitions(admin, names, tmp_path):
    q = names("defq")
    admin("declare", "queue", f"name={q}", "durable=true", 'arguments={"x-max-length": 7}')
    path = tmp_path / "defs.json"
    assert "Exported definitions" in admin("export", str(path)).stdout
    defs = json.loads(path.read_text())
    assert any(d["name"] == q and d["arguments"] == {"x-max-length": 7} for d in defs["queues"])
    admin("delete", "queue", f"name={q}")
    # Import only what this test made: the queue comes back with its arguments.
    mine = {"queues": [d for d in defs["queues"] if d["name"] == q]}
    path.write_text(json.dumps(mine))
    assert "Uploaded definitions" in admin("import", str(path)).stdout
    rows = [r for r in admin.json("list", "queues", "name", "arguments") if r["name"] == q]
    assert rows == [{"name": q, "arguments": {"x-max-length": 7}}]
    admin("delete", "queue", f"name={q}")


def test_close_connection(admin, connect):
    conn = connect()
    conn.channel()
    port = conn._impl._transport._sock.getsockname()[1]
    # RabbitMQ lists a connection once its stats collector has seen it (a few seconds).
    for _ in range(100):
        names_ = [c["name"] for c in admin.json("list", "connections", "name", "peer_port") if c.get("peer_port") == port]
        if names_:
            break
        conn.process_data_events(time_limit=0.2)
    assert names_, "the pika connection is listed"
    assert "connection closed" in admin("close", "connection", f"name={names_[0]}").stdout
    # The broker closes it with 320 CONNECTION_FORCED.
    import pika.exceptions
    with pytest.raises((pika.exceptions.ConnectionClosedByBroker, pika.exceptions.StreamLostError, pika.exceptions.AMQPConnectionError)):
        for _ in range(50):
            conn.process_data_events(time_limit=0.1)


def test_vhost_limits_and_parameters(admin, names):
    vhost = names("lim")
    admin("declare", "vhost", f"name={vhost}")
    try:
        assert "vhost_limit declared" in admin("declare", "vhost_limit", f"vhost={vhost}", "name=max-queues", "value=100").stdout
        assert {"vhost": vhost, "value": {"max-queues": 100}} in admin.json("list", "vhost_limits")
        rows = [r for r in admin.json("list", "parameters") if r["vhost"] == vhost]
        assert rows == [{"vhost": vhost, "component": "vhost-limits", "name": "limits", "value": {"max-queues": 100}}], rows
        # A component the broker does not have (no federation plugin): RabbitMQ's refusal.
        r = admin("-V", vhost, "declare", "parameter", "component=federation-upstream", "name=up",
                  'value={"uri": "amqp://"}', check=False)
        assert r.returncode != 0 and "component federation-upstream not found" in r.stdout + r.stderr
        assert "vhost_limit deleted" in admin("delete", "vhost_limit", f"vhost={vhost}", "name=max-queues").stdout \
            or os.environ.get("WARREN_TEST_URL")  # RabbitMQ 3.10 answers this DELETE with a 500
    finally:
        admin("delete", "vhost", f"name={vhost}")
