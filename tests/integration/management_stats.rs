//! The management API's channel registry and message statistics: every open channel (idle ones
//! too) under `/api/channels`, `/api/channels/{name}`, `/api/connections/{name}/channels` and
//! `/api/vhosts/{vhost}/channels` with RabbitMQ's fields; `message_stats` counters of channels,
//! queues, exchanges and the overview; connection byte counters; honest node figures; and
//! `warrenctl list_channels`.
//!
//! With `WARREN_TEST_URL` the same requests go to the reference RabbitMQ (its statistics are
//! emitted every 5 s, so the checks poll until the expected rows are there).
use crate::common;
use crate::management::{Http, http, start};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use std::net::SocketAddr;

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

async fn get(addr: SocketAddr, path: &str) -> Http {
    http(addr, "GET", path, GUEST, None).await
}

/// Polls `path` until `pred` holds for its JSON (RabbitMQ's statistics lag by up to 5 s; Warren's
/// are there at once, so against Warren the first read must already pass).
async fn until(b: &TestBroker, addr: SocketAddr, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let tries = if b.is_external() { 40 } else { 1 };
    let mut last = Value::Null;
    for _ in 0..tries {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
        last = r.json();
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("{path} never matched; last answer: {last:#}");
}

/// A lapin connection whose `connection_name` client property is `name`.
async fn named_connection(b: &TestBroker, name: &str) -> Connection {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    timeout(Connection::connect(&b.uri(), props)).await.expect("connect")
}

/// The management name of the connection whose `connection_name` is `name`.
async fn connection_name(b: &TestBroker, addr: SocketAddr, name: &str) -> String {
    let conns = until(b, addr, "/api/connections", |v| {
        v.as_array().unwrap().iter().any(|c| c["client_properties"]["connection_name"] == name)
    })
    .await;
    let c = conns.as_array().unwrap().iter().find(|c| c["client_properties"]["connection_name"] == name).unwrap();
    c["name"].as_str().unwrap().to_string()
}

fn of_conn<'a>(list: &'a Value, conn: &str) -> Vec<&'a Value> {
    list.as_array().unwrap().iter().filter(|c| c["connection_details"]["name"] == conn).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_open_channel_is_listed_with_rabbitmq_fields() {
    let (b, addr) = start().await;
    let label = uniq("chan-registry");
    let conn = named_connection(&b, &label).await;
    let idle = conn.create_channel().await.unwrap();
    let confirming = conn.create_channel().await.unwrap();
    confirming.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    confirming.basic_qos(7, BasicQosOptions::default()).await.unwrap();
    let q = uniq("chan-registry-q");
    confirming.queue_declare(q.as_str().into(), QueueDeclareOptions { auto_delete: true, ..Default::default() }, FieldTable::default()).await.unwrap();
    let _consumer = confirming.basic_consume(q.as_str().into(), "c1".into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap();
    for _ in 0..3 {
        confirming.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"m", BasicProperties::default()).await.unwrap().await.unwrap();
    }
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    tx.basic_qos(3, BasicQosOptions { global: true }).await.unwrap();
    let name = connection_name(&b, addr, &label).await;

    let all = until(&b, addr, "/api/channels", |v| {
        of_conn(v, &name).len() == 3 && of_conn(v, &name).iter().any(|c| c["messages_unacknowledged"] == 3)
    })
    .await;
    let mine = of_conn(&all, &name);
    let by_number = |n: u64| *mine.iter().find(|c| c["number"] == n).unwrap_or_else(|| panic!("channel {n} in {mine:?}"));
    let (n_idle, n_conf, n_tx) = (idle.id() as u64, confirming.id() as u64, tx.id() as u64);
    let i = by_number(n_idle);
    assert_eq!(i["name"], format!("{name} ({n_idle})"));
    assert_eq!(i["user"], "guest");
    assert_eq!(i["vhost"], "/");
    assert_eq!(i["state"], "running");
    assert_eq!(i["connection_details"]["peer_port"].as_u64().is_some(), true);
    for key in ["consumer_count", "messages_unacknowledged", "messages_unconfirmed", "prefetch_count", "global_prefetch_count"] {
        assert_eq!(i[key], 0, "{key} of an idle channel");
    }
    assert_eq!((i["confirm"].as_bool(), i["transactional"].as_bool()), (Some(false), Some(false)));
    assert!(i.get("message_stats").is_none(), "an idle channel has no message_stats (as RabbitMQ): {i}");

    let c = by_number(n_conf);
    assert_eq!((c["confirm"].as_bool(), c["prefetch_count"].as_u64(), c["consumer_count"].as_u64()), (Some(true), Some(7), Some(1)));
    assert_eq!(c["messages_unacknowledged"], 3);
    assert_eq!(c["messages_unconfirmed"], 0);
    let ms = &c["message_stats"];
    for (key, n) in [("publish", 3), ("confirm", 3), ("deliver", 3), ("deliver_get", 3), ("deliver_no_ack", 0), ("ack", 0), ("get", 0), ("redeliver", 0), ("return_unroutable", 0), ("drop_unroutable", 0)] {
        assert_eq!(ms[key], n, "message_stats.{key}: {ms}");
        assert!(ms[format!("{key}_details")]["rate"].is_number(), "{key}_details.rate: {ms}");
    }
    let t = by_number(n_tx);
    assert_eq!((t["transactional"].as_bool(), t["global_prefetch_count"].as_u64()), (Some(true), Some(3)));

    // The same rows per connection, per vhost, and one by name (with its consumers).
    let per_conn = get(addr, &format!("/api/connections/{}/channels", enc(&name))).await.json();
    assert_eq!(per_conn.as_array().unwrap().len(), 3);
    let per_vhost = get(addr, "/api/vhosts/%2F/channels").await.json();
    assert_eq!(of_conn(&per_vhost, &name).len(), 3);
    let one = get(addr, &format!("/api/channels/{}", enc(&format!("{name} ({n_conf})")))).await;
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!(one["consumer_details"][0]["consumer_tag"], "c1");
    assert_eq!(one["consumer_details"][0]["queue"]["name"], q.as_str());
    assert_eq!(get(addr, &format!("/api/channels/{}", enc(&format!("{name} (99)")))).await.status, 404);
    if !b.is_external() {
        // RabbitMQ 3.10 crashes on this one (500 with no body); Warren says 404.
        assert_eq!(get(addr, "/api/connections/nope/channels").await.status, 404);
    }

    // A closed channel leaves the list.
    idle.close(200, "bye".into()).await.unwrap();
    let after = until(&b, addr, "/api/channels", |v| of_conn(v, &name).len() == 2).await;
    assert!(of_conn(&after, &name).iter().all(|c| c["number"] != n_idle));

    // warrenctl list_channels lists idle channels too, with rabbitmqctl's keys and texts.
    if let Some(out) = b.ctl_ok(&["list_channels", "name", "number", "confirm", "transactional", "prefetch_count", "consumer_count", "messages_unacknowledged"]).await {
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with(&format!("{name} ("))).collect();
        assert_eq!(rows.len(), 2, "{out}");
        assert!(out.starts_with("Listing channels ...\nname\tnumber\tconfirm\ttransactional\tprefetch_count\tconsumer_count\tmessages_unacknowledged\n"), "{out}");
        assert!(rows.contains(&format!("{name} ({n_conf})\t{n_conf}\ttrue\tfalse\t7\t1\t3").as_str()), "{out}");
        assert!(rows.contains(&format!("{name} ({n_tx})\t{n_tx}\tfalse\ttrue\t0\t0\t0").as_str()), "{out}");
        let (code, _, err) = b.ctl(&["list_channels", "name", "state"]).await.unwrap();
        assert_eq!(code, 64);
        assert!(err.starts_with("Error (argument validation): Info key(s) state are not supported"), "{err}");
    }
    conn.close(200, "bye".into()).await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stats_count_queues_exchanges_channels_and_the_overview() {
    let (b, addr) = start().await;
    let before = get(addr, "/api/overview").await.json();
    let count = |o: &Value, k: &str| o["message_stats"][k].as_u64().unwrap_or(0);
    let (conn, ch) = b.channel().await;
    let q = uniq("stats-q");
    let x = uniq("stats-x");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions { auto_delete: false, ..Default::default() }, FieldTable::default()).await.unwrap();
    ch.exchange_declare(x.as_str().into(), lapin::ExchangeKind::Fanout, ExchangeDeclareOptions { auto_delete: false, ..Default::default() }, FieldTable::default()).await.unwrap();
    ch.queue_bind(q.as_str().into(), x.as_str().into(), "".into(), QueueBindOptions::default(), FieldTable::default()).await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for _ in 0..4 {
        ch.basic_publish(x.as_str().into(), "".into(), BasicPublishOptions::default(), b"m", BasicProperties::default()).await.unwrap().await.unwrap();
    }
    // One unroutable mandatory message (returned), one unroutable plain one (dropped).
    let nowhere = uniq("nowhere");
    ch.basic_publish("".into(), nowhere.as_str().into(), BasicPublishOptions { mandatory: true, ..Default::default() }, b"r", BasicProperties::default()).await.unwrap().await.unwrap();
    ch.basic_publish("".into(), nowhere.as_str().into(), BasicPublishOptions::default(), b"d", BasicProperties::default()).await.unwrap().await.unwrap();
    // Two gets (one acked, one without ack), one get on the empty queue later.
    let g1 = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().expect("a message");
    g1.delivery.ack(BasicAckOptions::default()).await.unwrap();
    ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("a message");
    // A consumer takes the other two; one is rejected with requeue (redelivered), then both acked.
    ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch.basic_consume(q.as_str().into(), "st".into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap();
    use futures_lite::StreamExt;
    let mut seen = 0;
    let mut rejected = false;
    while seen < 2 {
        let d = timeout(consumer.next()).await.unwrap().unwrap();
        if !rejected {
            rejected = true;
            d.reject(BasicRejectOptions { requeue: true }).await.unwrap();
            continue;
        }
        d.ack(BasicAckOptions::default()).await.unwrap();
        seen += 1;
    }
    ch.basic_cancel("st".into(), BasicCancelOptions::default()).await.unwrap();
    assert!(ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().is_none());

    let qs = until(&b, addr, &format!("/api/queues/%2F/{}", enc(&q)), |v| v["message_stats"]["ack"] == 3).await;
    let ms = &qs["message_stats"];
    for (key, n) in [("publish", 4), ("deliver", 3), ("deliver_no_ack", 0), ("get", 1), ("get_no_ack", 1), ("deliver_get", 5), ("ack", 3), ("redeliver", 1)] {
        assert_eq!(ms[key], n, "queue message_stats.{key}: {ms}");
        assert!(ms[format!("{key}_details")]["rate"].is_number());
    }
    if !b.is_external() {
        // (RabbitMQ adds the queue-length rates to the row a few seconds later.)
        assert!(qs["messages_details"]["rate"].is_number() && qs["messages_ready_details"]["rate"].is_number());
    }
    let xs = until(&b, addr, &format!("/api/exchanges/%2F/{}", enc(&x)), |v| v["message_stats"]["publish_in"] == 4).await;
    assert_eq!(xs["message_stats"]["publish_out"], 4, "{xs}");
    assert!(xs["message_stats"]["publish_in_details"]["rate"].is_number());

    // The channel's counters, while it is open, then the overview's totals after it closed.
    let chans = until(&b, addr, "/api/channels", |v| {
        v.as_array().unwrap().iter().any(|c| c["message_stats"]["ack"] == 3 && c["message_stats"]["publish"] == 6)
    })
    .await;
    let c = chans.as_array().unwrap().iter().find(|c| c["message_stats"]["publish"] == 6).unwrap();
    let cms = &c["message_stats"];
    for (key, n) in [("publish", 6), ("confirm", 6), ("return_unroutable", 1), ("deliver", 3), ("get", 1), ("get_no_ack", 1), ("ack", 3), ("redeliver", 1)] {
        assert_eq!(cms[key], n, "channel message_stats.{key}: {cms}");
    }
    if !b.is_external() {
        // RabbitMQ 3.10 shows 0 for these two whatever happens (it never reports basic.get-empty,
        // nor unroutable messages dropped by the default exchange); Warren counts them.
        assert_eq!((cms["get_empty"].as_u64(), cms["drop_unroutable"].as_u64()), (Some(1), Some(1)), "{cms}");
        assert_eq!(qs["message_stats"]["get_empty"], 1);
    }
    conn.close(200, "bye".into()).await.unwrap();
    if !b.is_external() {
        // No other client runs on this broker: the overview's totals grew by exactly this.
        let after = get(addr, "/api/overview").await.json();
        for (key, n) in [("publish", 6), ("confirm", 6), ("ack", 3), ("deliver_get", 5), ("return_unroutable", 1), ("drop_unroutable", 1)] {
            assert_eq!(count(&after, key) - count(&before, key), n, "overview message_stats.{key}: {}", after["message_stats"]);
        }
        assert!(after["queue_totals"]["messages_details"]["rate"].is_number());
    }
    let (conn, ch) = b.channel().await;
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_count_socket_bytes_and_nodes_report_the_process() {
    let (b, addr) = start().await;
    let label = uniq("octets");
    let conn = named_connection(&b, &label).await;
    let ch = conn.create_channel().await.unwrap();
    let q = uniq("octets-q");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions { auto_delete: true, exclusive: true, ..Default::default() }, FieldTable::default()).await.unwrap();
    ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), &[7u8; 10_000], BasicProperties::default()).await.unwrap();
    let name = connection_name(&b, addr, &label).await;
    let c = until(&b, addr, &format!("/api/connections/{}", enc(&name)), |v| v["recv_oct"].as_u64().unwrap_or(0) > 10_000).await;
    assert!(c["send_oct"].as_u64().unwrap() > 0, "{c}");
    assert!(c["recv_oct_details"]["rate"].is_number() && c["send_oct_details"]["rate"].is_number());
    assert!(c["recv_cnt"].as_u64().unwrap() > 0);
    assert_eq!(c["auth_mechanism"], "PLAIN");
    assert!(c["connected_at"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(c["frame_max"].as_u64().unwrap() >= 4096);

    let nodes = get(addr, "/api/nodes").await.json();
    let n = &nodes[0];
    for key in ["uptime", "mem_used", "fd_used", "fd_total", "sockets_used", "proc_used", "proc_total", "processors", "disk_free", "mem_limit", "disk_free_limit"] {
        assert!(n[key].as_u64().is_some_and(|v| v > 0), "node {key} must be a positive number: {}", n[key]);
    }
    assert!(n["run_queue"].as_u64().is_some(), "{}", n["run_queue"]);
    if !b.is_external() {
        // This test's own AMQP connection and the HTTP request are open sockets of the broker.
        assert!(n["sockets_used"].as_u64().unwrap() >= 2);
        assert!(n["fd_used"].as_u64().unwrap() >= n["sockets_used"].as_u64().unwrap());
    }
    conn.close(200, "bye".into()).await.unwrap();
    b.stop().await;
}
