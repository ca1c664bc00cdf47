"""An asynchronous pika client (SelectConnection) that redeclares its exclusive queue with other
flags right after the declare-ok, as pika's own acceptance test TestQueueRedeclareWithDifferentValues
does. The long queue name makes RabbitMQ's 405 text longer than a short string can hold: the broker
must cut it to 255 bytes as RabbitMQ does. Warren used to get no answer to this client at all (the
over-long text could not be encoded), while blocking pika with short names got its 405."""

import uuid

import pika


def test_select_connection_exclusive_redeclare_gets_405(broker_url):
    queue = "TestQueueRedeclareWithDifferentValues:" + uuid.uuid1().hex
    result = {}

    def on_open(connection):
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel):
        def on_closed(_channel, reason):
            result["closed"] = reason
            conn.close()

        def on_declared(frame):
            result["declare_ok"] = frame.method.queue
            channel.queue_declare(queue, durable=True, exclusive=False, auto_delete=True,
                                  arguments={"x-expires": 15000},
                                  callback=lambda f: result.setdefault("unexpected", f.method))

        channel.add_on_close_callback(on_closed)
        channel.queue_declare(queue, durable=False, exclusive=True, auto_delete=True,
                              arguments={"x-expires": 15000}, callback=on_declared)

    conn = pika.SelectConnection(pika.URLParameters(broker_url), on_open_callback=on_open)
    conn.add_on_close_callback(lambda _c, _r: conn.ioloop.stop())
    conn.ioloop.call_later(10, conn.ioloop.stop)
    conn.ioloop.start()

    assert result.get("declare_ok") == queue
    assert "unexpected" not in result
    reason = result.get("closed")
    assert isinstance(reason, pika.exceptions.ChannelClosedByBroker), f"no answer: {result}"
    text = (f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{queue}' in vhost '/'. "
            "It could be originally declared on another connection or the exclusive property value "
            "does not match that of the original declaration.")
    assert reason.reply_code == 405
    assert len(reason.reply_text.encode()) == 255
    assert reason.reply_text == text[:252] + "..."
