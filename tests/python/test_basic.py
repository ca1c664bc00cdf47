"""basic.get, nack/reject, purge and the content properties, through pika."""

from datetime import datetime
from decimal import Decimal

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from helpers import drain


@pytest.fixture
def queue(channel, names):
    """A fresh auto-delete queue; the channel is in confirm mode so a publish is enqueued
    by the time basic_publish returns."""
    name = names("q")
    channel.queue_declare(name, auto_delete=True)
    channel.confirm_delivery()
    return name


def test_basic_get_and_get_empty(channel, queue):
    assert channel.basic_get(queue) == (None, None, None)
    for i in range(3):
        channel.basic_publish("", queue, f"m{i}".encode())

    method, props, body = channel.basic_get(queue)
    assert isinstance(method, pika.spec.Basic.GetOk)
    assert (method.exchange, method.routing_key, method.redelivered) == ("", queue, False)
    assert method.message_count == 2  # messages left after this one
    assert body == b"m0"
    channel.basic_ack(method.delivery_tag)

    rest = drain(channel, queue)
    assert [(m.message_count, b) for m, _, b in rest] == [(1, b"m1"), (0, b"m2")]
    assert channel.basic_get(queue) == (None, None, None)
    assert channel.queue_declare(queue, passive=True).method.message_count == 0


def test_nack_with_requeue_redelivers_in_place(channel, queue):
    for body in (b"first", b"second"):
        channel.basic_publish("", queue, body)
    method, _, body = channel.basic_get(queue)
    assert (body, method.redelivered) == (b"first", False)
    channel.basic_nack(method.delivery_tag, requeue=True)

    # Back at its original position (ahead of "second"), flagged redelivered.
    method, _, body = channel.basic_get(queue)
    assert (body, method.redelivered) == (b"first", True)
    channel.basic_ack(method.delivery_tag)
    method, _, body = channel.basic_get(queue)
    assert (body, method.redelivered) == (b"second", False)
    channel.basic_ack(method.delivery_tag)


def test_reject_without_requeue_drops(channel, queue):
    channel.basic_publish("", queue, b"doomed")
    method, _, body = channel.basic_get(queue)
    assert body == b"doomed"
    channel.basic_reject(method.delivery_tag, requeue=False)
    assert channel.basic_get(queue) == (None, None, None)
    assert channel.queue_declare(queue, passive=True).method.message_count == 0


def test_purge_returns_count(channel, queue):
    for i in range(5):
        channel.basic_publish("", queue, f"m{i}".encode())
    assert channel.queue_declare(queue, passive=True).method.message_count == 5
    assert channel.queue_purge(queue).method.message_count == 5
    assert channel.basic_get(queue) == (None, None, None)
    assert channel.queue_purge(queue).method.message_count == 0


def test_properties_round_trip(channel, queue):
    headers = {
        "str": "héllo wörld",
        "int": 42,
        "negative": -7,
        "big": 2**40,
        "bool_true": True,
        "bool_false": False,
        "bytes": b"\x00\x01\xfe\xff",
        "decimal": Decimal("3.14"),
        "timestamp": datetime(2024, 2, 29, 12, 34, 56),
        "void": None,
        "list": [1, "two", False, b"\x03", [4, "five"], {"six": 6}],
        "table": {"nested": {"deeper": "yes", "n": 1}, "empty": {}, "list": []},
    }
    sent = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        delivery_mode=pika.DeliveryMode.Persistent,
        priority=5,
        correlation_id="corr-123",
        reply_to="reply-queue",
        expiration="60000",
        message_id="msg-456",
        timestamp=1700000000,
        type="example.type",
        user_id="guest",
        app_id="warren-tests",
    )
    body = bytes(range(256)) * 4
    channel.basic_publish("", queue, body, sent)
    _, got, got_body = channel.basic_get(queue, auto_ack=True)
    assert got_body == body
    for field in ("content_type", "content_encoding", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                  "type", "user_id", "app_id"):
        assert getattr(got, field) == getattr(sent, field), field
    assert got.headers == headers
    assert got.cluster_id is None


def test_empty_properties_and_body(channel, queue):
    channel.basic_publish("", queue, b"")
    _, got, body = channel.basic_get(queue, auto_ack=True)
    assert body == b""
    assert (got.headers, got.content_type, got.delivery_mode, got.user_id) == (None, None, None, None)


def test_user_id_must_match_the_login(connect, names):
    channel = connect().channel()
    channel.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_publish("", names("q"), b"x", pika.BasicProperties(user_id="mallory"))
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'")
