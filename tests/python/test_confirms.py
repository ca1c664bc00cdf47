"""Publisher confirms and basic.return as pika's BlockingChannel reports them."""

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, UnroutableError

from helpers import drain, pump


def test_confirmed_publish_is_enqueued(channel, names):
    queue = names("q")
    channel.queue_declare(queue, auto_delete=True)
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"confirmed")  # raises if nacked or returned
    assert [b for _, _, b in drain(channel, queue)] == [b"confirmed"]


def test_mandatory_unroutable_publish_is_returned(channel, names):
    exchange = names("direct")
    channel.exchange_declare(exchange, exchange_type="direct", auto_delete=True)
    bound = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(bound, exchange, routing_key="routed")
    channel.confirm_delivery()

    with pytest.raises(UnroutableError) as err:
        channel.basic_publish(exchange, "nowhere", b"lost", mandatory=True)
    [returned] = err.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.method.exchange == exchange
    assert returned.method.routing_key == "nowhere"
    assert returned.body == b"lost"

    # Unroutable without mandatory is simply confirmed (and dropped); routable mandatory works.
    channel.basic_publish(exchange, "nowhere", b"dropped")
    channel.basic_publish(exchange, "routed", b"kept", mandatory=True)
    assert [b for _, _, b in drain(channel, bound)] == [b"kept"]


def test_mandatory_return_without_confirms(connect, names):
    conn = connect()
    channel = conn.channel()
    returns = []
    channel.add_on_return_callback(lambda ch, method, props, body: returns.append(
        (method.reply_code, method.reply_text, method.exchange, method.routing_key,
         props.message_id, body)))
    key = names("no-such-queue")
    channel.basic_publish("", key, b"back", pika.BasicProperties(message_id="m-1"), mandatory=True)
    assert pump(conn, lambda: returns)
    assert returns == [(312, "NO_ROUTE", "", key, "m-1", b"back")]


def test_publish_to_missing_exchange_closes_channel(connect, names):
    conn = connect()
    channel = conn.channel()
    channel.confirm_delivery()
    exchange = names("missing")
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_publish(exchange, "key", b"x")
    assert err.value.reply_code == 404
    assert err.value.reply_text == f"NOT_FOUND - no exchange '{exchange}' in vhost '/'"
    assert channel.is_closed
    # Only the channel is closed: the connection goes on.
    assert conn.is_open
    other = conn.channel()
    other.queue_declare("", exclusive=True)
