//! The prometheus plugin (`warren_prometheus`, RabbitMQ's rabbitmq_prometheus) over real
//! sockets: enabled on a running broker, scraped without credentials, values that follow lapin's
//! publishes, gets, consumes and acks, per-object labels, `/metrics/detailed` with `family` and
//! `vhost`, disable closing the port, and coexistence with the management plugin.
//!
//! With `WARREN_TEST_URL` set, the tests that do not depend on exact counter values run against
//! the reference RabbitMQ's prometheus listener (`WARREN_TEST_PROM`, default 127.0.0.1:15693).
use crate::common;
use crate::management::{Http, http};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use std::net::SocketAddr;

/// A broker with the prometheus plugin enabled through the control socket (as
/// `warren-plugins enable rabbitmq_prometheus`): (broker, metrics address).
async fn start() -> (TestBroker, SocketAddr) {
    let b = TestBroker::start_with(|c| {
        c.prometheus.port = 0;
        c.management.port = 0;
    })
    .await;
    if b.is_external() {
        let addr = std::env::var("WARREN_TEST_PROM").unwrap_or_else(|_| "127.0.0.1:15693".into());
        return (b, addr.parse().unwrap());
    }
    let r = b.admin_call("plugins_set", &["noforce", "rabbitmq_prometheus"]).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    let addr = b.server().unwrap().plugins.http_addr("warren_prometheus").expect("listener open");
    (b, addr)
}

async fn scrape(addr: SocketAddr, path: &str) -> String {
    let r = http(addr, "GET", path, None, None).await;
    assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    String::from_utf8(r.body).unwrap()
}

/// The value of sample `series` (name with its labels exactly as written, e.g.
/// `rabbitmq_queues` or `rabbitmq_queue_messages{vhost="/",queue="q"}`).
fn value(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn must(text: &str, series: &str) -> u64 {
    value(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// The metric names with a `# TYPE` line, in order, with their type.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (n, t) = l.split_once(' ').unwrap();
            (n.to_string(), t.to_string())
        })
        .collect()
}

const AMQP: &str = "{protocol=\"amqp091\"}";
const CLASSIC: &str = "{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_serves_metrics_without_credentials_and_disable_closes_the_port() {
    let (b, addr) = start().await;
    if b.is_external() {
        return;
    }
    let text = scrape(addr, "/metrics").await;
    let fams = families(&text);
    for (name, kind) in [
        ("rabbitmq_queues", "gauge"),
        ("rabbitmq_connections_opened_total", "counter"),
        ("rabbitmq_queue_messages_ready", "gauge"),
        ("rabbitmq_global_messages_received_total", "counter"),
        ("rabbitmq_build_info", "untyped"),
        ("rabbitmq_alarms_memory_used_watermark", "untyped"),
    ] {
        assert!(fams.contains(&(name.to_string(), kind.to_string())), "{name} {kind} missing:\n{text}");
    }
    assert!(text.contains("# HELP rabbitmq_queue_messages Sum of ready and unacknowledged messages - total queue depth\n"), "{text}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(text.contains(&format!("rabbitmq_build_info{{rabbitmq_version=\"{version}\",")), "{text}");
    assert!(text.contains("rabbitmq_identity_info{rabbitmq_node=\"warren@localhost\",rabbitmq_cluster=\"warren@localhost\",rabbitmq_cluster_permanent_id=\"warren-cluster-id-"), "{text}");
    // Aggregated, as rabbitmq_prometheus' default: no per-queue labels.
    assert!(!text.contains("rabbitmq_queue_messages{"), "{text}");
    assert!(must(&text, "rabbitmq_process_resident_memory_bytes") > 0);
    let started = must(&text, "process_start_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(started <= now && started + 3600 > now, "{started} vs {now}");
    // HEAD answers like GET without a body; other methods get RabbitMQ's 405.
    assert_eq!(http(addr, "HEAD", "/metrics", None, None).await.status, 200);
    let post = http(addr, "POST", "/metrics", None, None).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("HEAD, GET, OPTIONS"));
    let list = b.admin_call("plugins_list", &[]).await;
    let row = list.rows.iter().find(|r| r[1] == "warren_prometheus").unwrap();
    assert_eq!(row[0], "[E*]");
    assert_eq!(row[3], "http-handler");
    let r = b.admin_call("plugins_set", &["noforce"]).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed after disable");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_follow_publishes_gets_consumes_and_acks() {
    let (b, addr) = start().await;
    if b.is_external() {
        return;
    }
    let before = scrape(addr, "/metrics").await;
    assert_eq!(must(&before, "rabbitmq_connections"), 0);
    assert_eq!(must(&before, &format!("rabbitmq_global_messages_received_total{AMQP}")), 0);

    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("prom-q");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    for _ in 0..3 {
        publish_c(&ch, "", &q, b"m", Default::default()).await;
    }
    // Unroutable: one dropped, one returned (mandatory).
    publish_c(&ch, "amq.direct", "nowhere", b"x", Default::default()).await;
    let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
    let c = timeout(ch.basic_publish("amq.direct".into(), "nowhere".into(), opts, b"y", Default::default())).await.unwrap();
    timeout(c).await.unwrap();

    let t = scrape(addr, "/metrics").await;
    assert_eq!(must(&t, "rabbitmq_connections"), 1);
    assert_eq!(must(&t, "rabbitmq_channels"), 1);
    assert_eq!(must(&t, "rabbitmq_queues"), 1);
    assert_eq!(must(&t, "rabbitmq_connections_opened_total"), 1);
    assert_eq!(must(&t, "rabbitmq_channels_opened_total"), 1);
    assert_eq!(must(&t, "rabbitmq_queues_declared_total"), 1);
    assert_eq!(must(&t, "rabbitmq_queues_created_total"), 1);
    assert_eq!(must(&t, "rabbitmq_queue_messages_ready"), 3);
    assert_eq!(must(&t, "rabbitmq_queue_messages"), 3);
    assert_eq!(must(&t, "rabbitmq_queue_messages_published_total"), 3);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_received_total{AMQP}")), 5);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_received_confirm_total{AMQP}")), 5);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_routed_total{AMQP}")), 3);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_unroutable_dropped_total{AMQP}")), 1);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_unroutable_returned_total{AMQP}")), 1);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_confirmed_total{AMQP}")), 5);
    assert_eq!(must(&t, &format!("rabbitmq_global_publishers{AMQP}")), 1);

    // basic.get with manual ack, then an ack; a get on an empty queue later.
    let got = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })).await.unwrap().expect("a message");
    timeout(got.delivery.acker.ack(BasicAckOptions::default())).await.unwrap();
    // A consumer with automatic ack takes the other two.
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    let mut consumer = timeout(ch2.basic_consume(q.as_str().into(), "c1".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap();
    use futures_lite::StreamExt;
    for _ in 0..2 {
        timeout(consumer.next()).await.unwrap().unwrap();
    }
    assert!(timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().is_none());
    // A round trip on the acking channel: the ack has been handled by then.
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())).await.unwrap();

    let t = scrape(addr, "/metrics").await;
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_delivered_get_manual_ack_total{CLASSIC}")), 1);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_delivered_consume_auto_ack_total{CLASSIC}")), 2);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_delivered_total{CLASSIC}")), 3);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_acknowledged_total{CLASSIC}")), 1);
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_get_empty_total{CLASSIC}")), 1);
    // The aggregated per-channel families are the same sums (RabbitMQ's Overview dashboard).
    assert_eq!(must(&t, "rabbitmq_channel_messages_published_total"), 5);
    assert_eq!(must(&t, "rabbitmq_channel_get_ack_total"), 1);
    assert_eq!(must(&t, "rabbitmq_channel_messages_delivered_total"), 2);
    assert_eq!(must(&t, "rabbitmq_channel_messages_acked_total"), 1);
    assert_eq!(must(&t, "rabbitmq_channel_consumers"), 1);
    assert_eq!(must(&t, &format!("rabbitmq_global_consumers{AMQP}")), 1);
    assert_eq!(must(&t, "rabbitmq_consumers"), 1);
    assert_eq!(must(&t, "rabbitmq_queue_messages"), 0);
    assert_eq!(must(&t, "rabbitmq_channels_opened_total"), 2);
    assert_eq!(must(&t, "rabbitmq_queues_declared_total"), 1, "a passive declare does not count (RabbitMQ)");

    timeout(ch2.close(200, "bye".into())).await.unwrap();
    timeout(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).await.unwrap();
    timeout(conn.close(200, "bye".into())).await.unwrap();
    let t = scrape(addr, "/metrics").await;
    assert_eq!(must(&t, "rabbitmq_queues_deleted_total"), 1);
    assert_eq!(must(&t, "rabbitmq_channels_closed_total"), 2);
    assert_eq!(must(&t, "rabbitmq_queues"), 0);
    assert_eq!(must(&t, &format!("rabbitmq_global_publishers{AMQP}")), 0, "a closed channel publishes no more");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_object_metrics_carry_queue_and_connection_labels() {
    let (b, addr) = start().await;
    if b.is_external() {
        return;
    }
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let (q1, q2) = (uniq("prom-a"), uniq("prom-b\"quoted"));
    for q in [&q1, &q2] {
        timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    }
    publish_c(&ch, "", &q1, b"1", Default::default()).await;
    publish_c(&ch, "", &q1, b"2", Default::default()).await;
    let t = scrape(addr, "/metrics/per-object").await;
    assert_eq!(must(&t, &format!("rabbitmq_queue_messages_ready{{vhost=\"/\",queue=\"{q1}\"}}")), 2);
    assert_eq!(must(&t, &format!("rabbitmq_queue_messages_published_total{{queue_vhost=\"/\",queue=\"{q1}\"}}")), 2);
    // Label values are escaped as the text format wants.
    let escaped = q2.replace('"', "\\\"");
    assert_eq!(must(&t, &format!("rabbitmq_queue_messages{{vhost=\"/\",queue=\"{escaped}\"}}")), 0);
    assert_eq!(must(&t, &format!("rabbitmq_queue_consumers{{vhost=\"/\",queue=\"{q1}\"}}")), 0);
    let chans: Vec<&str> = t.lines().filter(|l| l.starts_with("rabbitmq_connection_channels{channel=\"<0.")).collect();
    assert_eq!(chans.len(), 1, "{t}");
    assert!(chans[0].ends_with("} 1"), "{t}");
    // The publishing channel's samples (per-channel families: see the next test).
    let conn_label = chans[0].split('"').nth(1).unwrap();
    let ch_label = conn_label.replace(".0>", ".1>");
    assert_eq!(must(&t, &format!("rabbitmq_channel_messages_published_total{{channel=\"{ch_label}\",vhost=\"/\"}}")), 2, "{t}");
    // The global counters are there too, as RabbitMQ's per-object endpoint has them.
    assert_eq!(must(&t, &format!("rabbitmq_global_messages_routed_total{AMQP}")), 2);
    b.stop().await;
}

/// The connection id in `rabbitmq_connection_channels{channel="<0.ID.0>"}` of the only
/// connection in `text`: channel N of it is labelled `<0.ID.N>`.
fn channel_of(text: &str, n: u16) -> String {
    let line = text.lines().find(|l| l.starts_with("rabbitmq_connection_channels{channel=\"<0.")).unwrap_or_else(|| panic!("no connection in:\n{text}"));
    let id = line.split('"').nth(1).unwrap().trim_start_matches("<0.").trim_end_matches(".0>").to_string();
    format!("<0.{id}.{n}>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_object_and_detailed_metrics_have_per_channel_samples() {
    let (b, addr) = start().await;
    if b.is_external() {
        return;
    }
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("prom-ch");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    for _ in 0..3 {
        publish_c(&ch, "", &q, b"m", Default::default()).await;
    }
    let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
    let c = timeout(ch.basic_publish("amq.direct".into(), "nowhere".into(), opts, b"y", Default::default())).await.unwrap();
    timeout(c).await.unwrap();
    let got = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })).await.unwrap().expect("a message");
    // A consumer channel with a prefetch of 5 takes the other two and holds them unacked.
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    timeout(ch2.basic_qos(5, BasicQosOptions::default())).await.unwrap();
    let mut consumer = timeout(ch2.basic_consume(q.as_str().into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())).await.unwrap();
    use futures_lite::StreamExt;
    for _ in 0..2 {
        timeout(consumer.next()).await.unwrap().unwrap();
    }
    // A third channel that does nothing.
    let _ch3 = timeout(conn.create_channel()).await.unwrap();

    let t = scrape(addr, "/metrics/per-object").await;
    let (c1, c2, c3) = (channel_of(&t, 1), channel_of(&t, 2), channel_of(&t, 3));
    let g = |name: &str, ch: &str| must(&t, &format!("rabbitmq_{name}{{channel=\"{ch}\"}}"));
    let c = |name: &str, ch: &str| value(&t, &format!("rabbitmq_{name}{{channel=\"{ch}\",vhost=\"/\"}}"));
    assert_eq!([g("channel_consumers", &c1), g("channel_consumers", &c2), g("channel_consumers", &c3)], [0, 1, 0]);
    assert_eq!([g("channel_messages_unacked", &c1), g("channel_messages_unacked", &c2)], [1, 2]);
    assert_eq!([g("consumer_prefetch", &c1), g("consumer_prefetch", &c2)], [0, 5]);
    assert_eq!(g("channel_prefetch", &c2), 0);
    assert_eq!(g("channel_messages_unconfirmed", &c1), 0);
    assert_eq!(g("channel_messages_uncommitted", &c1), 0);
    assert_eq!(g("channel_acks_uncommitted", &c1), 0);
    // Publish side: only the channel that published.
    assert_eq!(c("channel_messages_published_total", &c1), Some(4));
    assert_eq!(c("channel_messages_confirmed_total", &c1), Some(4));
    assert_eq!(c("channel_messages_unroutable_returned_total", &c1), Some(1));
    assert_eq!(c("channel_messages_unroutable_dropped_total", &c1), Some(0));
    assert_eq!(c("channel_messages_published_total", &c2), None, "{t}");
    // Delivery side: the channels that fetched or consumed.
    assert_eq!(c("channel_get_ack_total", &c1), Some(1));
    assert_eq!(c("channel_get_total", &c1), Some(0));
    assert_eq!(c("channel_messages_delivered_ack_total", &c2), Some(2));
    assert_eq!(c("channel_messages_delivered_total", &c2), Some(0));
    assert_eq!(c("channel_messages_acked_total", &c2), Some(0));
    assert_eq!(c("channel_get_ack_total", &c3), None, "{t}");
    for (name, kind) in [("channel_consumers", "gauge"), ("consumer_prefetch", "gauge"), ("channel_get_empty_total", "counter")] {
        assert!(families(&t).contains(&(format!("rabbitmq_{name}"), kind.into())), "{name}:\n{t}");
    }
    assert!(t.contains("# HELP rabbitmq_channel_messages_delivered_ack_total Total number of messages delivered to consumers in manual acknowledgement mode\n"));

    // The aggregated endpoint sums the open channels (as RabbitMQ's).
    timeout(got.delivery.acker.ack(BasicAckOptions::default())).await.unwrap();
    let agg = scrape(addr, "/metrics").await;
    assert_eq!(must(&agg, "rabbitmq_channel_messages_unacked"), 2);
    assert_eq!(must(&agg, "rabbitmq_consumer_prefetch"), 5);
    assert_eq!(must(&agg, "rabbitmq_channel_messages_published_total"), 4);
    assert_eq!(must(&agg, "rabbitmq_channel_messages_acked_total"), 1);
    assert!(!agg.contains("rabbitmq_channel_consumers{"), "{agg}");

    // Detailed: only the families asked for, named rabbitmq_detailed_*.
    let d = scrape(addr, "/metrics/detailed?family=channel_metrics").await;
    assert_eq!(must(&d, &format!("rabbitmq_detailed_channel_consumers{{channel=\"{c2}\"}}")), 1);
    assert!(!d.contains("channel_messages_published_total"), "{d}");
    let d = scrape(addr, "/metrics/detailed?family=channel_exchange_metrics&family=channel_queue_metrics").await;
    assert_eq!(must(&d, &format!("rabbitmq_detailed_channel_messages_published_total{{channel=\"{c1}\",vhost=\"/\"}}")), 4);
    assert_eq!(must(&d, &format!("rabbitmq_detailed_channel_messages_acked_total{{channel=\"{c1}\",vhost=\"/\"}}")), 1);
    assert!(!d.contains("channel_consumers"), "{d}");

    // A closed channel has no samples any more.
    timeout(ch2.close(200, "bye".into())).await.unwrap();
    let t = scrape(addr, "/metrics/per-object").await;
    assert!(!t.contains(&format!("channel=\"{c2}\"")), "{t}");
    assert_eq!(must(&t, &format!("rabbitmq_channel_consumers{{channel=\"{c1}\"}}")), 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detailed_takes_family_and_vhost_as_rabbitmq() {
    let (b, addr) = start().await;
    let q = uniq("prom-d");
    let (_c, ch) = b.channel().await;
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions { auto_delete: true, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap();
    let t = scrape(addr, "/metrics/detailed?family=queue_coarse_metrics&family=connection_churn_metrics&vhost=%2F").await;
    let names: Vec<String> = families(&t).into_iter().map(|(n, _)| n).collect();
    for n in [
        "rabbitmq_detailed_connections_opened_total",
        "rabbitmq_detailed_queues_deleted_total",
        "rabbitmq_detailed_queue_messages_ready",
        "rabbitmq_detailed_queue_messages_unacked",
        "rabbitmq_detailed_queue_messages",
        "rabbitmq_build_info",
        "rabbitmq_identity_info",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing:\n{t}");
    }
    assert!(!names.iter().any(|n| n == "rabbitmq_queues" || n.starts_with("rabbitmq_global_")), "only what was asked for:\n{t}");
    if !b.is_external() {
        // (RabbitMQ's queue stats appear after its 5 s emission interval.)
        assert_eq!(must(&t, &format!("rabbitmq_detailed_queue_messages_ready{{vhost=\"/\",queue=\"{q}\"}}")), 0);
    }
    // Another vhost: the families, without samples.
    let t = scrape(addr, "/metrics/detailed?family=queue_coarse_metrics&vhost=no-such-vhost").await;
    assert!(t.contains("# TYPE rabbitmq_detailed_queue_messages_ready gauge\n"), "{t}");
    assert!(!t.contains("rabbitmq_detailed_queue_messages_ready{"), "{t}");
    // An unknown family, or none, is ignored as RabbitMQ does: only the info families.
    for path in ["/metrics/detailed?family=no_such_family", "/metrics/detailed"] {
        let t = scrape(addr, path).await;
        let names: Vec<String> = families(&t).into_iter().map(|(n, _)| n).filter(|n| !n.starts_with("telemetry_")).collect();
        assert_eq!(names, ["rabbitmq_build_info", "rabbitmq_identity_info"], "{path}:\n{t}");
    }
    // Exchanges and vhosts (cluster-wide families keep their names).
    let t = scrape(addr, "/metrics/detailed?family=exchange_names&family=vhost_status&vhost=%2F").await;
    assert_eq!(must(&t, "rabbitmq_cluster_exchange_name{vhost=\"/\",exchange=\"amq.topic\",type=\"topic\"}"), 1);
    assert_eq!(must(&t, "rabbitmq_cluster_vhost_status{vhost=\"/\"}"), 1);
    // Per-channel families (the channel `_c`/`ch` is open).
    let t = scrape(addr, "/metrics/detailed?family=channel_metrics").await;
    assert!(t.contains("# TYPE rabbitmq_detailed_channel_consumers gauge\n"), "{t}");
    assert!(t.contains("# TYPE rabbitmq_detailed_consumer_prefetch gauge\n"), "{t}");
    assert!(t.lines().any(|l| l.starts_with("rabbitmq_detailed_channel_consumers{channel=\"<0.")), "{t}");
    // An unknown path under /metrics and elsewhere: RabbitMQ's two 404s.
    let r = http(addr, "GET", "/metrics/nope", None, None).await;
    assert_eq!((r.status, r.body.as_slice()), (404, &b"Unknown Registry"[..]));
    let r = http(addr, "GET", "/nope", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "Object Not Found");
    if !b.is_external() {
        // A family RabbitMQ has and Warren cannot fill is refused, not answered empty.
        let r = http(addr, "GET", "/metrics/detailed?family=channel_process_metrics", None, None).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coexists_with_the_management_plugin_and_guests_cannot_write() {
    let (b, _) = start().await;
    if b.is_external() {
        return;
    }
    let r = b.admin_call("plugins_set", &["noforce", "rabbitmq_management", "rabbitmq_prometheus"]).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    let plugins = &b.server().unwrap().plugins;
    let (mgmt, prom) = (plugins.http_addr("warren_management").unwrap(), plugins.http_addr("warren_prometheus").unwrap());
    assert_ne!(mgmt.port(), prom.port());
    let o: Http = http(mgmt, "GET", "/api/overview", Some(("guest", "guest")), None).await;
    assert_eq!(o.status, 200);
    // The management API still wants credentials; the metrics do not.
    assert_eq!(http(mgmt, "GET", "/api/queues", None, None).await.status, 401);
    let t = scrape(prom, "/metrics").await;
    assert_eq!(must(&t, "rabbitmq_queues"), 0);
    // Disabling one leaves the other serving.
    let r = b.admin_call("plugins_set", &["noforce", "rabbitmq_management"]).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(tokio::net::TcpStream::connect(prom).await.is_err());
    assert_eq!(http(mgmt, "GET", "/api/overview", Some(("guest", "guest")), None).await.status, 200);
    b.stop().await;
}

/// The global message counters are sums of the channels' and queues' counters: closing
/// channels and connections and deleting queues must not lower them, and an ack that arrives
/// after its queue was deleted still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_totals_survive_closed_channels_and_deleted_queues() {
    let (b, addr) = start().await;
    if b.is_external() {
        return;
    }
    let series: Vec<String> = [
        ("received", AMQP),
        ("received_confirm", AMQP),
        ("routed", AMQP),
        ("unroutable_dropped", AMQP),
        ("confirmed", AMQP),
        ("delivered_get_manual_ack", CLASSIC),
        ("delivered_consume_auto_ack", CLASSIC),
        ("delivered", CLASSIC),
        ("redelivered", CLASSIC),
        ("acknowledged", CLASSIC),
    ]
    .iter()
    .map(|(n, l)| format!("rabbitmq_global_messages_{n}_total{l}"))
    .collect();
    let read = |t: &str| series.iter().map(|s| must(t, s)).collect::<Vec<u64>>();

    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let (q1, q2) = (uniq("prom-keep-a"), uniq("prom-keep-b"));
    for q in [&q1, &q2] {
        timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    }
    for q in [&q1, &q1, &q1, &q2] {
        publish_c(&ch, "", q, b"m", Default::default()).await;
    }
    publish_c(&ch, "amq.direct", "nowhere", b"x", Default::default()).await;
    // q1: one get, nacked back (a redelivery follows), then got again and held unacked;
    // a consumer on a second channel takes the rest without acks.
    let got = timeout(ch.basic_get(q1.as_str().into(), BasicGetOptions { no_ack: false })).await.unwrap().expect("a message");
    timeout(got.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() })).await.unwrap();
    let held = timeout(ch.basic_get(q1.as_str().into(), BasicGetOptions { no_ack: false })).await.unwrap().expect("a message");
    assert!(held.delivery.redelivered);
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    let mut consumer = timeout(ch2.basic_consume(q1.as_str().into(), "c".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap();
    use futures_lite::StreamExt;
    for _ in 0..2 {
        timeout(consumer.next()).await.unwrap().unwrap();
    }
    let t = scrape(addr, "/metrics").await;
    let before = read(&t);
    assert_eq!(before, [5, 5, 4, 1, 5, 2, 2, 4, 1, 0], "{series:?}");

    // q1 goes while a message of it is unacked; the ack afterwards still counts.
    timeout(ch.queue_delete(q1.as_str().into(), QueueDeleteOptions::default())).await.unwrap();
    assert_eq!(read(&scrape(addr, "/metrics").await), before, "{series:?}");
    timeout(held.delivery.acker.ack(BasicAckOptions::default())).await.unwrap();
    timeout(ch.queue_declare(q2.as_str().into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())).await.unwrap();
    let mut after_ack = before.clone();
    after_ack[9] += 1;
    assert_eq!(read(&scrape(addr, "/metrics").await), after_ack, "{series:?}");

    // Channels, the connection and the last queue go: nothing is lost.
    timeout(ch2.close(200, "bye".into())).await.unwrap();
    assert_eq!(read(&scrape(addr, "/metrics").await), after_ack, "{series:?}");
    timeout(ch.queue_delete(q2.as_str().into(), QueueDeleteOptions::default())).await.unwrap();
    timeout(conn.close(200, "bye".into())).await.unwrap();
    let t = scrape(addr, "/metrics").await;
    assert_eq!(must(&t, "rabbitmq_queues"), 0);
    assert_eq!(must(&t, "rabbitmq_channels"), 0);
    assert_eq!(read(&t), after_ack, "{series:?}");
    b.stop().await;
}
