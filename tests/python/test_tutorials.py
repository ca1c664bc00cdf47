"""RabbitMQ's six tutorials (https://www.rabbitmq.com/tutorials), written as pika tests."""

import threading
import time
import uuid

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from helpers import Worker, drain, pump


# --- 1. Hello world ---------------------------------------------------------------------------

def test_hello_world(connect, names):
    queue = names("hello")
    sender = connect().channel()
    sender.queue_declare(queue, auto_delete=True)
    sender.basic_publish(exchange="", routing_key=queue, body=b"Hello World!")

    conn = connect()
    receiver = conn.channel()
    received = []

    def callback(ch, method, properties, body):
        received.append((method.exchange, method.routing_key, method.redelivered, body))
        ch.stop_consuming()

    receiver.basic_consume(queue, callback, auto_ack=True)
    conn.call_later(5, receiver.stop_consuming)  # guard: never hang the suite
    receiver.start_consuming()
    assert received == [("", queue, False, b"Hello World!")]


# --- 2. Work queues ---------------------------------------------------------------------------

def test_work_queue_fair_dispatch(broker_url, connect, names):
    queue = names("task_queue")
    total = 20
    ch = connect().channel()
    ch.queue_declare(queue, durable=True)
    try:
        # The queue really is durable: redeclaring it as transient is refused.
        probe = connect().channel()
        with pytest.raises(ChannelClosedByBroker) as err:
            probe.queue_declare(queue, durable=False)
        assert err.value.reply_code == 406

        lock = threading.Lock()
        processed = {"fast": [], "slow": []}
        modes = set()
        done = threading.Event()

        def worker(name, delay):
            def on_message(channel, method, properties, body):
                time.sleep(delay)
                with lock:
                    processed[name].append(body)
                    modes.add(properties.delivery_mode)
                    if sum(len(v) for v in processed.values()) >= total:
                        done.set()
                channel.basic_ack(method.delivery_tag)
            return Worker(broker_url, queue, on_message, prefetch=1)

        workers = [worker("slow", 0.3), worker("fast", 0.0)]
        for w in workers:
            w.start()
        for w in workers:
            assert w.ready.wait(10)

        props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        for i in range(total):
            ch.basic_publish("", queue, f"task {i}".encode(), props)
        assert done.wait(15), f"only processed {processed}"
        time.sleep(0.1)  # a duplicate delivery would show up here
        for w in workers:
            w.join_checked()

        everything = processed["fast"] + processed["slow"]
        assert sorted(everything) == sorted(f"task {i}".encode() for i in range(total))
        assert len(processed["fast"]) > 2 * len(processed["slow"]), processed
        assert modes == {pika.DeliveryMode.Persistent.value}
        assert ch.queue_declare(queue, passive=True).method.message_count == 0
    finally:
        ch.queue_delete(queue)


def test_unacked_messages_are_redelivered_to_another_worker(connect, names):
    queue = names("task_queue")
    ch = connect().channel()
    ch.queue_declare(queue, durable=True)
    try:
        props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        bodies = [f"job {i}".encode() for i in range(3)]
        for body in bodies:
            ch.basic_publish("", queue, body, props)

        # Worker A takes all three and dies without acking.
        conn_a = connect()
        ch_a = conn_a.channel()
        got_a = []
        ch_a.basic_consume(queue, lambda c, m, p, b: got_a.append((m.redelivered, b)))
        assert pump(conn_a, lambda: len(got_a) == 3)
        assert got_a == [(False, b) for b in bodies]

        # Worker B is already consuming, but nothing is ready for it while A holds the messages.
        conn_b = connect()
        ch_b = conn_b.channel()
        ch_b.basic_qos(prefetch_count=10)
        got_b = []

        def on_b(channel, method, properties, body):
            got_b.append((method.redelivered, body))
            channel.basic_ack(method.delivery_tag)

        ch_b.basic_consume(queue, on_b)
        pump(conn_b, lambda: False, timeout=0.3)
        assert got_b == []

        conn_a.close()
        assert pump(conn_b, lambda: len(got_b) == 3)
        assert got_b == [(True, b) for b in bodies]
        pump(conn_b, lambda: False, timeout=0.2)
        assert len(got_b) == 3
    finally:
        ch.queue_delete(queue)


# --- 3. Publish/subscribe ---------------------------------------------------------------------

def test_fanout_with_exclusive_server_named_queues(connect, names):
    exchange = names("logs")
    publisher = connect().channel()
    publisher.exchange_declare(exchange, exchange_type="fanout", auto_delete=True)

    subscribers = []
    for _ in range(2):
        conn = connect()
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        assert queue.startswith("amq.gen-")
        ch.queue_bind(queue, exchange)
        subscribers.append((conn, ch, queue))
    assert subscribers[0][2] != subscribers[1][2]

    publisher.confirm_delivery()
    logs = [f"log line {i}".encode() for i in range(5)]
    for body in logs:
        publisher.basic_publish(exchange, "ignored-by-fanout", body)

    for _, ch, queue in subscribers:
        got = drain(ch, queue)
        assert [b for _, _, b in got] == logs
        assert {m.exchange for m, _, _ in got} == {exchange}

    # Another connection may not touch an exclusive queue while its owner lives...
    conn, ch, queue = subscribers[0]
    with pytest.raises(ChannelClosedByBroker) as err:
        connect().channel().queue_declare(queue, passive=True)
    assert err.value.reply_code == 405

    # ...and the queue is gone once that connection closes.
    conn.close()
    with pytest.raises(ChannelClosedByBroker) as err:
        connect().channel().queue_declare(queue, passive=True)
    assert err.value.reply_code == 404
    assert queue in err.value.reply_text


# --- 4. Routing -------------------------------------------------------------------------------

def test_direct_routing_by_severity(connect, names):
    exchange = names("direct_logs")
    ch = connect().channel()
    ch.exchange_declare(exchange, exchange_type="direct", auto_delete=True)
    errors_only = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(errors_only, exchange, routing_key="error")
    everything = ch.queue_declare("", exclusive=True).method.queue
    for severity in ("info", "warning", "error"):
        ch.queue_bind(everything, exchange, routing_key=severity)

    ch.confirm_delivery()
    for severity in ("info", "warning", "error", "debug", "Error"):
        ch.basic_publish(exchange, severity, f"{severity} message".encode())

    assert [(m.routing_key, b) for m, _, b in drain(ch, errors_only)] == [
        ("error", b"error message")]
    assert [(m.routing_key, b) for m, _, b in drain(ch, everything)] == [
        ("info", b"info message"), ("warning", b"warning message"), ("error", b"error message")]

    # Unbinding one key stops just that route.
    ch.queue_unbind(everything, exchange, routing_key="warning")
    ch.basic_publish(exchange, "warning", b"w2")
    ch.basic_publish(exchange, "info", b"i2")
    assert [b for _, _, b in drain(ch, everything)] == [b"i2"]


# --- 5. Topics --------------------------------------------------------------------------------

TOPIC_BINDINGS = {
    "all": ["#"],
    "orange": ["*.orange.*"],
    "lazy": ["*.*.rabbit", "lazy.#"],
    "rabbit_tail": ["#.rabbit"],
    "one_word": ["*"],
    "two_words": ["*.*"],
    "middle_hash": ["a.#.z"],
}

# routing key -> the queues that must receive it (exactly once each)
TOPIC_CASES = {
    "quick.orange.rabbit": {"all", "orange", "lazy", "rabbit_tail"},
    "lazy.orange.elephant": {"all", "orange", "lazy"},
    "quick.orange.fox": {"all", "orange"},
    "lazy.brown.fox": {"all", "lazy"},
    "lazy.pink.rabbit": {"all", "lazy", "rabbit_tail"},  # matches both lazy bindings, delivered once
    "quick.brown.fox": {"all"},
    "orange": {"all", "one_word"},
    "quick.orange.new.rabbit": {"all", "rabbit_tail"},
    "lazy.orange.new.rabbit": {"all", "lazy", "rabbit_tail"},
    "lazy": {"all", "lazy", "one_word"},  # "#" matches zero words after "lazy"
    "rabbit": {"all", "rabbit_tail", "one_word"},  # ... and zero words before "rabbit"
    "": {"all"},  # the empty key has zero words: "#" matches it, "*" does not
    ".orange.": {"all", "orange"},  # but empty words between dots are words: "*" matches them
    ".": {"all", "two_words"},
    "a.z": {"all", "two_words", "middle_hash"},
    "a.b.c.z": {"all", "middle_hash"},
    "a.b.c": {"all"},
}


def test_topic_routing(connect, names):
    exchange = names("topic_logs")
    ch = connect().channel()
    ch.exchange_declare(exchange, exchange_type="topic", auto_delete=True)
    queues = {}
    for label, patterns in TOPIC_BINDINGS.items():
        queues[label] = ch.queue_declare("", exclusive=True).method.queue
        for pattern in patterns:
            ch.queue_bind(queues[label], exchange, routing_key=pattern)

    ch.confirm_delivery()
    for key in TOPIC_CASES:
        ch.basic_publish(exchange, key, key.encode())

    for label, queue in queues.items():
        got = [b.decode() for _, _, b in drain(ch, queue)]
        expected = [key for key, labels in TOPIC_CASES.items() if label in labels]
        assert got == expected, f"queue bound with {TOPIC_BINDINGS[label]}"


# --- 6. RPC -----------------------------------------------------------------------------------

def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def test_rpc(broker_url, connect, names):
    rpc_queue = names("rpc_queue")
    setup = connect().channel()
    setup.queue_declare(rpc_queue, auto_delete=False)

    def on_request(ch, method, props, body):
        n = int(body)
        time.sleep(0.05 if n % 2 else 0)  # odd requests are slower: replies come back out of order
        ch.basic_publish(exchange="", routing_key=props.reply_to,
                         properties=pika.BasicProperties(correlation_id=props.correlation_id),
                         body=str(fib(n)).encode())
        ch.basic_ack(method.delivery_tag)

    servers = [Worker(broker_url, rpc_queue, on_request, prefetch=1) for _ in range(2)]
    try:
        for s in servers:
            s.start()
        for s in servers:
            assert s.ready.wait(10)

        conn = connect()
        client = conn.channel()
        callback_queue = client.queue_declare("", exclusive=True).method.queue
        responses = {}

        def on_response(ch, method, props, body):
            responses[props.correlation_id] = int(body)

        client.basic_consume(callback_queue, on_response, auto_ack=True)
        calls = {}
        for n in range(12):
            corr_id = str(uuid.uuid4())
            calls[corr_id] = n
            client.basic_publish(
                exchange="", routing_key=rpc_queue,
                properties=pika.BasicProperties(reply_to=callback_queue, correlation_id=corr_id),
                body=str(n).encode())
        assert pump(conn, lambda: len(responses) == len(calls), timeout=10), responses
        assert responses == {corr_id: fib(n) for corr_id, n in calls.items()}
    finally:
        for s in servers:
            s.join_checked()
        setup.queue_delete(rpc_queue)
