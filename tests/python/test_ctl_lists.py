"""The operator CLI's listings with pika-made state: the same commands and the same expected
lines for warrenctl (the session's warren-server) and rabbitmqctl 3.10 (WARREN_TEST_URL with
WARREN_TEST_CTL, e.g. `rabbitmqctl -n ref@localhost`). Rows are picked by this test's own
names (the reference node's default vhost holds other tests' queues too, and RabbitMQ lists rows
in no set order).
"""

import json
import re

import pika


def lines(out, prefix):
    return sorted(line for line in out.stdout.splitlines() if line.startswith(prefix))


def test_list_queues_exchanges_bindings_consumers(connect, names, broker_ctl):
    conn = connect()
    ch = conn.channel()
    q, x = names("q"), names("x")
    # x-arguments in key order: Warren prints field tables sorted by key, RabbitMQ as declared.
    ch.queue_declare(q, durable=True, arguments={"x-dead-letter-exchange": "dlx", "x-max-length": 10})
    ch.exchange_declare(x, "headers", arguments={"alternate-exchange": q})
    ch.queue_bind(q, x, "", arguments={"k": "v", "x-match": "all"})
    for _ in range(2):
        ch.basic_publish("", q, b"0123456789", pika.BasicProperties(delivery_mode=2))
    cch = conn.channel()
    cch.basic_qos(prefetch_count=5)
    cch.basic_consume(q, lambda *a: None, consumer_tag="ctag-py", arguments={"x-priority": 2})
    # Until both messages are delivered and unacknowledged.
    while True:
        conn.process_data_events(0.05)
        out = broker_ctl("list_queues", "-s", "name", "messages_unacknowledged")
        if f"{q}\t2" in out.stdout.splitlines():
            break

    out = broker_ctl("list_queues", "name", "messages", "consumers", "durable", "arguments", "policy",
                     "message_bytes", "messages_persistent", "slave_pids", "type")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Timeout: 60.0 seconds ...\nListing queues for vhost / ...\n"
                                 "name\tmessages\tconsumers\tdurable\targuments\tpolicy\tmessage_bytes\t"
                                 "messages_persistent\tslave_pids\ttype\n"), out.stdout
    assert lines(out, q) == [f'{q}\t2\t1\ttrue\t[{{"x-dead-letter-exchange","dlx"}},{{"x-max-length",10}}]\t\t20\t2\t\tclassic']

    out = broker_ctl("list_queues", "--formatter", "json", "name", "arguments", "owner_pid")
    row = next(r for r in json.loads(out.stdout) if r["name"] == q)
    assert row == {"name": q, "arguments": [["x-dead-letter-exchange", "longstr", "dlx"], ["x-max-length", "signedint", 10]],
                   "owner_pid": ""}

    out = broker_ctl("list_exchanges", "-q", "name", "type", "arguments")
    assert out.stdout.startswith("name\ttype\targuments\n") and "\tdirect\t[]" in out.stdout.splitlines(), out.stdout
    assert lines(out, x) == [f'{x}\theaders\t[{{"alternate-exchange","{q}"}}]']

    out = broker_ctl("list_bindings", "-s")
    assert lines(out, x) == [f'{x}\texchange\t{q}\tqueue\t\t[{{"k","v"}},{{"x-match","all"}}]']

    out = broker_ctl("list_consumers")
    assert out.stdout.startswith("Listing consumers in vhost / ...\nqueue_name\tchannel_pid\tconsumer_tag\t"
                                 "ack_required\tprefetch_count\tactive\targuments\n"), out.stdout
    [mine] = lines(out, q)
    assert re.fullmatch(re.escape(q) + r'\t<[^>]+\.\d+\.\d+>\tctag-py\ttrue\t5\ttrue\t\[\{"x-priority",2\}\]', mine), mine
    out = broker_ctl("list_consumers", "--formatter", "json", "queue_name", "channel_pid", "arguments")
    row = next(r for r in json.loads(out.stdout) if r["queue_name"] == q)
    assert re.fullmatch(r"#PID<\d+\.\d+\.\d+>", row["channel_pid"]), row
    assert row["arguments"] == [["x-priority", "signedint", 2]]

    out = broker_ctl("list_queues", "name", "no_such_key")
    assert (out.returncode, out.stdout) == (64, "")
    assert out.stderr.startswith("Error (argument validation): Info key(s) no_such_key are not supported\n"), out.stderr

    ch.queue_delete(q)
    ch.exchange_delete(x)
