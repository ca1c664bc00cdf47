#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/*), encoded by pika 1.3.2, an
independent AMQP implementation: every client method Warren handles, with and without field
tables, content headers with every property, bodies, heartbeats, and a whole client session.

    python3 tests/fuzz/seeds.py      (needs pika: pip install pika==1.3.2)
"""
import datetime
import hashlib
import os

from pika import frame, spec

HERE = os.path.dirname(os.path.abspath(__file__))

NESTED = {
    "x-death": [{"count": 1, "reason": "expired", "queue": "q", "time": datetime.datetime(2026, 1, 1),
                 "exchange": "", "routing-keys": ["q"], "original-expiration": "1000"}],
    "int": 1, "long": 2**40, "neg": -5, "bool": True, "str": "text", "bytes": b"\x00\xff",
    "none": None, "list": [1, "a", [2, [3]], {"k": {"k": {}}}], "dec": __import__("decimal").Decimal("1.25"),
}
ARGS = {"x-message-ttl": 1000, "x-dead-letter-exchange": "dlx", "x-max-length": 10,
        "x-overflow": "reject-publish", "x-max-priority": 5, "x-queue-type": "classic"}

METHODS = [
    spec.Connection.StartOk(client_properties={"product": "seed", "capabilities": {"publisher_confirms": True,
                            "consumer_cancel_notify": True, "connection.blocked": True}},
                            mechanism="PLAIN", response="\0guest\0guest", locale="en_US"),
    spec.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60),
    spec.Connection.Open(virtual_host="/"),
    spec.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0),
    spec.Connection.CloseOk(),
    spec.Connection.UpdateSecret(new_secret=b"token", reason="refresh"),
    spec.Connection.Blocked(reason="low on memory"),
    spec.Channel.Open(), spec.Channel.Flow(active=False), spec.Channel.FlowOk(active=True),
    spec.Channel.Close(reply_code=200, reply_text="ok", class_id=0, method_id=0), spec.Channel.CloseOk(),
    spec.Exchange.Declare(exchange="x", type="topic", durable=True, arguments={"alternate-exchange": "ae"}),
    spec.Exchange.Declare(exchange="h", type="headers", passive=True, arguments=NESTED),
    spec.Exchange.Delete(exchange="x", if_unused=True),
    spec.Exchange.Bind(destination="d", source="s", routing_key="a.*", arguments={"x-match": "any"}),
    spec.Exchange.Unbind(destination="d", source="s", routing_key="a.*"),
    spec.Queue.Declare(queue="q", durable=True, arguments=ARGS),
    spec.Queue.Declare(queue="", exclusive=True, auto_delete=True),
    spec.Queue.Declare(queue="q", passive=True),
    spec.Queue.Bind(queue="q", exchange="x", routing_key="#", arguments=NESTED),
    spec.Queue.Unbind(queue="q", exchange="x", routing_key="#"),
    spec.Queue.Purge(queue="q"), spec.Queue.Delete(queue="q", if_unused=True, if_empty=True),
    spec.Basic.Qos(prefetch_count=10, global_qos=True),
    spec.Basic.Consume(queue="q", consumer_tag="c1", no_ack=False, exclusive=True,
                       arguments={"x-priority": 5, "x-cancel-on-ha-failover": True}),
    spec.Basic.Cancel(consumer_tag="c1"),
    spec.Basic.Publish(exchange="", routing_key="q", mandatory=True),
    spec.Basic.Get(queue="q", no_ack=True),
    spec.Basic.Ack(delivery_tag=5, multiple=True), spec.Basic.Reject(delivery_tag=1, requeue=False),
    spec.Basic.Nack(delivery_tag=2, multiple=True, requeue=True),
    spec.Basic.Recover(requeue=True), spec.Basic.RecoverAsync(requeue=False),
    spec.Confirm.Select(), spec.Tx.Select(), spec.Tx.Commit(), spec.Tx.Rollback(),
]

PROPS = [
    spec.BasicProperties(),
    spec.BasicProperties(content_type="application/json", content_encoding="gzip", headers=NESTED,
                         delivery_mode=2, priority=9, correlation_id="c", reply_to="amq.rabbitmq.reply-to",
                         expiration="60000", message_id="m", timestamp=1700000000, type="t",
                         user_id="guest", app_id="a", cluster_id=""),
    spec.BasicProperties(headers={"x-delay": 5000, "nested": {"a": {"b": [{"c": []}]}}}),
]


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name + "-" + hashlib.sha1(data).hexdigest()[:12]), "wb") as f:
        f.write(data)


def framed(channel, method):
    return frame.Method(channel, method).marshal()


def main():
    for i, m in enumerate(METHODS):
        write("frames", "m%02d-%s" % (i, m.NAME.replace(".", "-").lower()), b"\x01" + framed(0 if m.INDEX >> 16 == 10 else 1, m))
    for i, p in enumerate(PROPS):
        body = b"hello world" * (i + 1)
        data = framed(1, spec.Basic.Publish(exchange="x", routing_key="rk")) + frame.Header(1, len(body), p).marshal()
        data += frame.Body(1, body).marshal()
        write("frames", "publish%d" % i, b"\x01" + data)
        if p.headers:
            table = b"".join(spec.Queue.Declare(queue="q", arguments=p.headers).encode())[9:]  # the table body, without queue.declare's fields and the length
            write("field_table", "headers%d" % i, table)
    write("frames", "heartbeat", b"\x01" + frame.Heartbeat().marshal())
    session = b"".join(framed(0 if m.INDEX >> 16 == 10 else 1, m) for m in METHODS[:3] + METHODS[7:8] + METHODS[12:])
    write("frames", "session", b"\x01" + session)
    write("frames", "session-small-frame-max", b"\x00" + session)
    for name, args in (("args", ARGS), ("nested", NESTED)):
        table = b"".join(spec.Queue.Declare(queue="q", arguments=args).encode())[9:]  # the table body, without queue.declare's fields and the length
        write("field_table", name, table)


if __name__ == "__main__":
    main()
