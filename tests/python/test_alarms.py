"""The free disk space alarm as pika sees it: connection.blocked / unblocked callbacks on a
publishing connection, none on a consume-only one, and no message lost. The limit is driven with
`warrenctl set_disk_free_limit` (`rabbitmqctl set_disk_free_limit` against RabbitMQ)."""

import time

from helpers import pump

HUGE = "1000000GB"  # far above any disk's free space
DEFAULT = "50MB"  # RabbitMQ's default limit


def connection_states(broker_ctl):
    out = broker_ctl("list_connections", "state")
    assert out.returncode == 0, out.stderr
    return sorted(line for line in out.stdout.split() if line in ("running", "blocking", "blocked"))


def wait_states(broker_ctl, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        states = connection_states(broker_ctl)
        if predicate(states) or time.monotonic() > deadline:
            return states
        time.sleep(0.05)


def test_disk_alarm_blocks_publisher_not_consumer(connect, broker_ctl, names):
    queue = names("q")
    publisher = connect()
    pch = publisher.channel()
    pch.queue_declare(queue)
    for i in range(3):
        pch.basic_publish("", queue, f"before-{i}".encode())

    consumer = connect()
    cch = consumer.channel()
    cch.basic_qos(prefetch_count=1)  # each further delivery needs the previous ack to be read

    events = {"publisher": [], "consumer": []}
    for name, conn in (("publisher", publisher), ("consumer", consumer)):
        conn.add_on_connection_blocked_callback(
            lambda _c, frame, name=name: events[name].append(("blocked", frame.method.reason)))
        conn.add_on_connection_unblocked_callback(
            lambda _c, _frame, name=name: events[name].append(("unblocked",)))

    got = []

    def on_message(ch, method, _props, body):
        got.append(body.decode())
        ch.basic_ack(method.delivery_tag)

    try:
        out = broker_ctl("set_disk_free_limit", HUGE)
        assert out.returncode == 0, out.stderr
        assert f"to {HUGE} bytes ..." in out.stdout
        status = broker_ctl("status")
        assert status.returncode == 0, status.stderr
        assert "Free disk space alarm on node" in status.stdout, status.stdout
        states = wait_states(broker_ctl, lambda s: s and set(s) == {"blocking"})
        assert states and set(states) == {"blocking"}, states

        for i in range(5):
            pch.basic_publish("", queue, f"during-{i}".encode())
        assert pump(publisher, lambda: events["publisher"]), "no connection.blocked"
        assert events["publisher"] == [("blocked", "low on disk")]
        states = wait_states(broker_ctl, lambda s: s.count("blocked") == 1)
        assert states.count("blocked") == 1 and set(states) == {"blocked", "blocking"}, states

        # The consume-only connection keeps receiving (and its acks are read) and is not told.
        cch.basic_consume(queue, on_message)
        assert pump(consumer, lambda: len(got) == 3), got
        pump(consumer, lambda: False, timeout=0.3)
        assert got == [f"before-{i}" for i in range(3)], "a blocked publisher's message got through"
        assert events["consumer"] == []

        out = broker_ctl("set_disk_free_limit", DEFAULT)
        assert out.returncode == 0, out.stderr
        assert pump(publisher, lambda: len(events["publisher"]) == 2), events
        assert events["publisher"][1] == ("unblocked",)
        assert pump(consumer, lambda: len(got) == 8), got
        assert got == [f"before-{i}" for i in range(3)] + [f"during-{i}" for i in range(5)]
        assert events["consumer"] == []
        status = broker_ctl("status")
        assert "Free disk space alarm" not in status.stdout, status.stdout
    finally:
        broker_ctl("set_disk_free_limit", DEFAULT)
    pch.queue_delete(queue)


def test_memory_alarm_blocks_publisher_with_low_on_memory(connect, broker_ctl, names):
    """`set_vm_memory_high_watermark 0.0001` puts the watermark below the broker's footprint (as
    it does for RabbitMQ): a publisher gets connection.blocked "low on memory" in pika's callback,
    a consume-only connection keeps receiving, and 0.4 unblocks with nothing lost."""
    queue = names("q")
    publisher = connect()
    pch = publisher.channel()
    pch.queue_declare(queue)
    pch.basic_publish("", queue, b"before")
    consumer = connect()
    cch = consumer.channel()

    events = {"publisher": [], "consumer": []}
    for name, conn in (("publisher", publisher), ("consumer", consumer)):
        conn.add_on_connection_blocked_callback(
            lambda _c, frame, name=name: events[name].append(("blocked", frame.method.reason)))
        conn.add_on_connection_unblocked_callback(
            lambda _c, _frame, name=name: events[name].append(("unblocked",)))
    got = []

    def on_message(ch, method, _props, body):
        got.append(body.decode())
        ch.basic_ack(method.delivery_tag)

    try:
        out = broker_ctl("set_vm_memory_high_watermark", "0.0001")
        assert out.returncode == 0, out.stderr
        assert "Setting memory threshold on" in out.stdout and "to 0.0001 ..." in out.stdout, out.stdout
        status = broker_ctl("status")
        assert "Memory alarm on node" in status.stdout, status.stdout
        assert "Memory high watermark setting: 0.0001 of available memory" in status.stdout, status.stdout
        states = wait_states(broker_ctl, lambda s: s and set(s) == {"blocking"})
        assert states and set(states) == {"blocking"}, states

        for i in range(3):
            pch.basic_publish("", queue, f"during-{i}".encode())
        assert pump(publisher, lambda: events["publisher"]), "no connection.blocked"
        assert events["publisher"] == [("blocked", "low on memory")]

        cch.basic_consume(queue, on_message)
        assert pump(consumer, lambda: len(got) == 1), got
        pump(consumer, lambda: False, timeout=0.3)
        assert got == ["before"], "a blocked publisher's message got through"
        assert events["consumer"] == []

        out = broker_ctl("set_vm_memory_high_watermark", "0.4")
        assert out.returncode == 0, out.stderr
        assert pump(publisher, lambda: len(events["publisher"]) == 2), events
        assert events["publisher"][1] == ("unblocked",)
        assert pump(consumer, lambda: len(got) == 4), got
        assert got == ["before"] + [f"during-{i}" for i in range(3)]
        assert events["consumer"] == []
    finally:
        broker_ctl("set_vm_memory_high_watermark", "0.4")
    pch.queue_delete(queue)
