"""RabbitMQ's queue features as everyday pika code uses them: a retry queue built from TTL and
dead-lettering, a priority work queue, and RPC over direct reply-to."""

import time

import pika

from helpers import drain, pump


def test_retry_queue_with_ttl_and_dead_lettering(connect, names):
    work, retry = names("work"), names("retry")
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(work, auto_delete=False, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": retry})
    ch.queue_declare(retry, arguments={
        "x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": work})
    ch.basic_publish("", work, b"flaky job")

    attempts = []

    def on_message(channel, method, properties, body):
        attempts.append(properties.headers or {})
        if len(attempts) < 3:
            channel.basic_reject(method.delivery_tag, requeue=False)  # fail: retry later
        else:
            channel.basic_ack(method.delivery_tag)

    ch.basic_consume(work, on_message)
    assert pump(conn, lambda: len(attempts) == 3), f"only {len(attempts)} attempts"
    first, last = attempts[0], attempts[-1]
    assert "x-death" not in first
    deaths = {(d["queue"], d["reason"]): d["count"] for d in last["x-death"]}
    assert deaths == {(retry, "expired"): 2, (work, "rejected"): 2}
    assert last["x-first-death-reason"] == "rejected"
    assert last["x-first-death-queue"] == work
    ch.queue_delete(work)
    ch.queue_delete(retry)


def test_priority_work_queue(connect, names):
    queue = names("jobs")
    ch = connect().channel()
    ch.queue_declare(queue, auto_delete=True, arguments={"x-max-priority": 9})
    ch.confirm_delivery()
    for prio, body in [(1, b"low-1"), (9, b"urgent"), (5, b"normal"), (1, b"low-2"), (None, b"none")]:
        ch.basic_publish("", queue, body, pika.BasicProperties(priority=prio))
    bodies = [body for _, _, body in drain(ch, queue)]
    assert bodies == [b"urgent", b"normal", b"low-1", b"low-2", b"none"]


def test_rpc_with_direct_reply_to(connect, names):
    queue = names("rpc")
    server_conn = connect()
    server = server_conn.channel()
    server.queue_declare(queue, auto_delete=True)

    conn = connect()
    client = conn.channel()
    replies = []
    client.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: replies.append((p.correlation_id, b)), auto_ack=True)
    client.basic_publish("", queue, b"6*7", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c-1"))

    deadline = time.monotonic() + 5
    while True:
        method, props, body = server.basic_get(queue, auto_ack=True)
        if method:
            break
        assert time.monotonic() < deadline, "the request never arrived"
        time.sleep(0.02)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    server.basic_publish("", props.reply_to, b"42", pika.BasicProperties(correlation_id=props.correlation_id))
    assert pump(conn, lambda: replies), "no reply"
    assert replies == [("c-1", b"42")]
