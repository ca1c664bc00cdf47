"""`stop_app` / `start_app` as pika sees them: the open connection is closed with RabbitMQ's
320 CONNECTION_FORCED "shutdown", new connections are refused while the app is stopped, and after
`start_app` a durable queue still holds its persistent message while a non-durable queue is gone
(as after a restart).

Stopping the app of a shared reference node would disturb everyone using it: with WARREN_TEST_URL
this runs only when WARREN_TEST_ALLOW_STOP_APP=1 says the node (WARREN_TEST_CTL) is a private one."""

import os
import time

import pika
import pytest

SHUTDOWN = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"


def test_stop_app_closes_connections_with_320_and_start_app_serves_again(connect, broker_ctl, broker_url, names):
    if os.environ.get("WARREN_TEST_URL") and os.environ.get("WARREN_TEST_ALLOW_STOP_APP") != "1":
        pytest.skip("stops the broker's app: needs a private node (WARREN_TEST_ALLOW_STOP_APP=1)")
    queue = names("q")
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(queue, durable=True)
    ch.queue_declare(names("transient"))
    ch.basic_publish("", queue, b"kept", pika.BasicProperties(delivery_mode=2))
    out = broker_ctl("stop_app")
    try:
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("Stopping rabbit application on node "), out.stdout
        deadline = time.monotonic() + 5
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.1)
        assert (closed.value.reply_code, closed.value.reply_text) == (320, SHUTDOWN)
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika.URLParameters(broker_url))
        refused = broker_ctl("list_queues")
        assert refused.returncode == 64, refused
        assert "this command requires the 'rabbit' app to be running on the target node" in refused.stderr
    finally:
        started = broker_ctl("start_app")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("Starting node "), started.stdout
    ch = connect().channel()
    _, _, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"kept"
    ch.queue_delete(queue)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        ch.queue_declare(names("transient"), passive=True)
    assert gone.value.reply_code == 404
