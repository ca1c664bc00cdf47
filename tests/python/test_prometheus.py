"""The prometheus plugin's output read by a real Prometheus text parser (prometheus_client), and
its metric families, types and label names compared with rabbitmq_prometheus 3.10's.

The expected tables below are RabbitMQ's: the same tests pass against the reference node
(WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5673/%2f, metrics on WARREN_TEST_PROM_URL,
default http://127.0.0.1:15693), which is how they were checked.
"""

import os
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

# Families Warren serves on /metrics (aggregated): name as in the `# TYPE` line, type, label names.
AGGREGATED = [
    ("process_start_time_seconds", "gauge", set()),
    ("rabbitmq_alarms_file_descriptor_limit", "untyped", set()),
    ("rabbitmq_alarms_free_disk_space_watermark", "untyped", set()),
    ("rabbitmq_alarms_memory_used_watermark", "untyped", set()),
    ("rabbitmq_connections_opened_total", "counter", set()),
    ("rabbitmq_connections_closed_total", "counter", set()),
    ("rabbitmq_channels_opened_total", "counter", set()),
    ("rabbitmq_channels_closed_total", "counter", set()),
    ("rabbitmq_queues_declared_total", "counter", set()),
    ("rabbitmq_queues_created_total", "counter", set()),
    ("rabbitmq_queues_deleted_total", "counter", set()),
    ("rabbitmq_process_open_fds", "gauge", set()),
    ("rabbitmq_process_resident_memory_bytes", "gauge", set()),
    ("rabbitmq_disk_space_available_bytes", "gauge", set()),
    ("rabbitmq_process_max_fds", "gauge", set()),
    ("rabbitmq_resident_memory_limit_bytes", "gauge", set()),
    ("rabbitmq_disk_space_available_limit_bytes", "gauge", set()),
    ("rabbitmq_queue_messages_ready", "gauge", set()),
    ("rabbitmq_queue_messages_unacked", "gauge", set()),
    ("rabbitmq_queue_messages", "gauge", set()),
    ("rabbitmq_queue_consumers", "gauge", set()),
    ("rabbitmq_channel_consumers", "gauge", set()),
    ("rabbitmq_channel_messages_unacked", "gauge", set()),
    ("rabbitmq_channel_messages_unconfirmed", "gauge", set()),
    ("rabbitmq_channel_messages_uncommitted", "gauge", set()),
    ("rabbitmq_channel_acks_uncommitted", "gauge", set()),
    ("rabbitmq_consumer_prefetch", "gauge", set()),
    ("rabbitmq_channel_prefetch", "gauge", set()),
    ("rabbitmq_channel_messages_published_total", "counter", set()),
    ("rabbitmq_channel_messages_confirmed_total", "counter", set()),
    ("rabbitmq_channel_messages_unroutable_returned_total", "counter", set()),
    ("rabbitmq_channel_messages_unroutable_dropped_total", "counter", set()),
    ("rabbitmq_channel_get_ack_total", "counter", set()),
    ("rabbitmq_channel_get_total", "counter", set()),
    ("rabbitmq_channel_messages_delivered_ack_total", "counter", set()),
    ("rabbitmq_channel_messages_delivered_total", "counter", set()),
    ("rabbitmq_channel_messages_redelivered_total", "counter", set()),
    ("rabbitmq_channel_messages_acked_total", "counter", set()),
    ("rabbitmq_channel_get_empty_total", "counter", set()),
    ("rabbitmq_connection_channels", "gauge", set()),
    ("rabbitmq_queue_messages_published_total", "counter", set()),
    ("rabbitmq_connections", "gauge", set()),
    ("rabbitmq_channels", "gauge", set()),
    ("rabbitmq_consumers", "gauge", set()),
    ("rabbitmq_queues", "gauge", set()),
    ("rabbitmq_build_info", "untyped",
     {"rabbitmq_version", "prometheus_plugin_version", "prometheus_client_version", "erlang_version"}),
    ("rabbitmq_identity_info", "untyped", {"rabbitmq_node", "rabbitmq_cluster", "rabbitmq_cluster_permanent_id"}),
    ("rabbitmq_global_consumers", "gauge", {"protocol"}),
    ("rabbitmq_global_messages_acknowledged_total", "counter", {"protocol", "queue_type"}),
    ("rabbitmq_global_messages_confirmed_total", "counter", {"protocol"}),
    ("rabbitmq_global_messages_delivered_consume_auto_ack_total", "counter", {"protocol", "queue_type"}),
    ("rabbitmq_global_messages_delivered_consume_manual_ack_total", "counter", {"protocol", "queue_type"}),
    ("rabbitmq_global_messages_delivered_get_auto_ack_total", "counter", {"protocol", "queue_type"}),
    ("rabbitmq_global_messages_delivered_get_manual_ack_total", "counter", {"protocol", "queue_type"}),
    ("rabbitmq_global_messages_delivered_total", "counter", {"protocol", "queue_type"}),
    ("rabbitmq_global_messages_get_empty_total", "counter", {"protocol", "queue_type"}),
    ("rabbitmq_global_messages_received_confirm_total", "counter", {"protocol"}),
    ("rabbitmq_global_messages_received_total", "counter", {"protocol"}),
    ("rabbitmq_global_messages_redelivered_total", "counter", {"protocol", "queue_type"}),
    ("rabbitmq_global_messages_routed_total", "counter", {"protocol"}),
    ("rabbitmq_global_messages_unroutable_dropped_total", "counter", {"protocol"}),
    ("rabbitmq_global_messages_unroutable_returned_total", "counter", {"protocol"}),
    ("rabbitmq_global_publishers", "gauge", {"protocol"}),
]

# Per object: the families whose samples carry labels, with RabbitMQ's label names.
PER_OBJECT = {
    "rabbitmq_queue_messages_ready": {"vhost", "queue"},
    "rabbitmq_queue_messages_unacked": {"vhost", "queue"},
    "rabbitmq_queue_messages": {"vhost", "queue"},
    "rabbitmq_queue_consumers": {"vhost", "queue"},
    "rabbitmq_connection_channels": {"channel"},
    "rabbitmq_channel_consumers": {"channel"},
    "rabbitmq_channel_messages_unacked": {"channel"},
    "rabbitmq_channel_messages_unconfirmed": {"channel"},
    "rabbitmq_channel_prefetch": {"channel"},
    "rabbitmq_consumer_prefetch": {"channel"},
}

# RabbitMQ counts a channel's publishes per exchange (labels channel, vhost, exchange); Warren per
# channel, so its samples carry channel and vhost and are the sums over exchanges.
CHANNEL_EXCHANGE = ["rabbitmq_channel_messages_published_total", "rabbitmq_channel_messages_confirmed_total"]

# RabbitMQ counts publishes into queues per (channel, queue, exchange); Warren per queue, so its
# samples carry a subset of these labels.
PUBLISHED_LABELS = {"channel", "queue_vhost", "queue", "exchange_vhost", "exchange"}


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.headers.get("content-type"), r.read().decode()


def parse(text):
    """{name as in `# TYPE`: (type, [sample label dicts])} from prometheus_client's parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        # The parser names counter families without `_total`; the samples keep it.
        kind = "untyped" if fam.type == "unknown" else fam.type
        for s in fam.samples:
            out.setdefault(s.name, (kind, []))[1].append(s.labels)
        if not fam.samples:
            out.setdefault(fam.name + ("_total" if kind == "counter" else ""), (kind, []))
    return out


def type_lines(text):
    return {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_metrics_parse_with_rabbitmq_names_types_and_labels(prometheus_url):
    status, ctype, text = get(prometheus_url + "/metrics")
    assert status == 200
    assert ctype == "text/plain; version=0.0.4"
    fams = parse(text)
    types = type_lines(text)
    for name, kind, labels in AGGREGATED:
        assert types.get(name) == kind, f"{name}: {types.get(name)} (want {kind})"
        assert name in fams and fams[name][1], f"{name} has no sample"
        for sample_labels in fams[name][1]:
            assert set(sample_labels) == labels, f"{name}: {sample_labels}"


def test_per_object_samples_carry_rabbitmq_labels(prometheus_url, connect, names):
    conn = connect()
    ch = conn.channel()
    q = names("q")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"m")
    # RabbitMQ emits per-object stats every 5 s: wait (bounded) for this queue to show up.
    deadline = time.monotonic() + 15
    while True:
        _, _, text = get(prometheus_url + "/metrics/per-object")
        fams = parse(text)
        mine = [s for s in fams.get("rabbitmq_queue_messages_ready", ("", []))[1] if s.get("queue") == q]
        chans = fams.get("rabbitmq_channel_messages_published_total", ("", []))[1]
        if (mine and fams.get("rabbitmq_connection_channels", ("", []))[1] and chans) or time.monotonic() > deadline:
            break
        conn.process_data_events(0.5)
    assert mine == [{"vhost": "/", "queue": q}], mine
    for name, labels in PER_OBJECT.items():
        samples = fams[name][1]
        assert samples, f"{name} has no sample"
        for s in samples:
            assert set(s) == labels, f"{name}: {s}"
    for name in CHANNEL_EXCHANGE:
        samples = fams[name][1]
        assert samples, f"{name} has no sample"
        for s in samples:
            assert {"channel", "vhost"} <= set(s) <= {"channel", "vhost", "exchange"}, f"{name}: {s}"
    for s in fams["rabbitmq_queue_messages_published_total"][1]:
        assert {"queue"} <= set(s) <= PUBLISHED_LABELS, s
    # The global counters are in the per-object output as well.
    assert "rabbitmq_global_messages_received_total" in fams
    conn.close()


def test_detailed_serves_the_families_asked_for(prometheus_url):
    url = prometheus_url + "/metrics/detailed?family=queue_coarse_metrics&family=connection_churn_metrics&vhost=%2F"
    _, ctype, text = get(url)
    assert ctype == "text/plain; version=0.0.4"
    names = {n for n in type_lines(text) if not n.startswith("telemetry_")}
    assert names == {
        "rabbitmq_detailed_connections_opened_total", "rabbitmq_detailed_connections_closed_total",
        "rabbitmq_detailed_channels_opened_total", "rabbitmq_detailed_channels_closed_total",
        "rabbitmq_detailed_queues_declared_total", "rabbitmq_detailed_queues_created_total",
        "rabbitmq_detailed_queues_deleted_total",
        "rabbitmq_detailed_queue_messages_ready", "rabbitmq_detailed_queue_messages_unacked",
        "rabbitmq_detailed_queue_messages",
        # RabbitMQ's Erlang reductions of each queue process; Warren has no such thing.
        *({"rabbitmq_detailed_queue_process_reductions_total"} if os.environ.get("WARREN_TEST_URL") else set()),
        "rabbitmq_build_info", "rabbitmq_identity_info",
    }, names
    for s in parse(text).get("rabbitmq_detailed_queue_messages_ready", ("", []))[1]:
        assert s["vhost"] == "/" and set(s) == {"vhost", "queue"}, s
    # An unknown family is ignored: only the info families.
    _, _, text = get(prometheus_url + "/metrics/detailed?family=no_such_family")
    assert {n for n in type_lines(text) if not n.startswith("telemetry_")} == {"rabbitmq_build_info", "rabbitmq_identity_info"}
    parse(text)


def test_unknown_paths_get_rabbitmq_404s(prometheus_url):
    with pytest.raises(urllib.error.HTTPError) as e:
        get(prometheus_url + "/metrics/nope")
    assert e.value.code == 404 and e.value.read() == b"Unknown Registry"
    with pytest.raises(urllib.error.HTTPError) as e:
        get(prometheus_url + "/nope")
    assert e.value.code == 404
