//! Durable queues with a backlog larger than their memory budget keep the bodies of persistent
//! messages on disk: a real `warren-server` process with a small `storage.queue_ram_limit`,
//! observed through `warrenctl list_queues` and real consumers, across a kill -9.
use crate::common;
use common::process::{Server, free_port};
use common::timeout;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;
use std::path::Path;

const SIZE: usize = 4096;
const COUNT: u32 = 3000;

fn body(i: u32) -> Vec<u8> {
    let mut b = format!("{i:08}").into_bytes();
    b.resize(SIZE, b'a' + (i % 26) as u8);
    b
}

fn number(b: &[u8]) -> u32 {
    assert_eq!(b.len(), SIZE);
    let n: u32 = std::str::from_utf8(&b[..8]).unwrap().parse().unwrap();
    assert_eq!(b[SIZE - 1], b'a' + (n % 26) as u8, "body of message {n} intact");
    n
}

/// The numeric `columns` of queue `q` in `warrenctl list_queues`.
fn queue_columns(data: &Path, q: &str, columns: &[&str]) -> Vec<u64> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .arg("--data-dir")
        .arg(data)
        .args(["-q", "list_queues", "name"])
        .args(columns)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "warrenctl: {text} {}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.split('\t').next() == Some(q)).unwrap_or_else(|| panic!("no {q} in {text}"));
    line.split('\t').skip(1).map(|f| f.trim().parse().unwrap()).collect()
}

/// (messages, messages_ram, message_bytes_ram, messages_paged_out) of queue `q`.
fn queue_memory(data: &Path, q: &str) -> (u64, u64, u64, u64) {
    let v = queue_columns(data, q, &["messages", "messages_ram", "message_bytes_ram", "messages_paged_out"]);
    (v[0], v[1], v[2], v[3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_bodies_stay_on_disk_and_come_back_in_order_after_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("warren.toml");
    // 64 KiB of bodies in memory per queue: 16 of the 3,000 4-KiB messages.
    std::fs::write(&config, "[storage]\nqueue_ram_limit = 65536\n").unwrap();
    let cfg = config.to_str().unwrap();
    let port = free_port();
    let s = Server::start_with(&data, port, &["--config", cfg]).await;

    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("backlog".into(), durable, FieldTable::default())).await.unwrap();
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut confirms = Vec::new();
    for i in 0..COUNT {
        let c = timeout(ch.basic_publish("".into(), "backlog".into(), Default::default(), &body(i), props.clone())).await.unwrap();
        confirms.push(c);
    }
    for c in confirms {
        assert!(timeout(c).await.unwrap().is_ack());
    }
    // A passive declare runs after the last commit callback: the tail is paged out by then.
    let (n, ram, ram_bytes, paged) = queue_memory(&data, "backlog");
    assert_eq!(n, COUNT as u64);
    assert!(ram_bytes <= 65536 + 256 * SIZE as u64, "{ram_bytes} body bytes in memory ({ram} messages)");
    assert!(paged >= (COUNT - 300) as u64, "only {paged} of {COUNT} messages paged out");

    // Consume the first 1,000 with manual acks and prefetch 50: bodies are read back in order.
    timeout(ch.basic_qos(50, Default::default())).await.unwrap();
    let mut consumer = timeout(ch.basic_consume("backlog".into(), "c1".into(), Default::default(), FieldTable::default())).await.unwrap();
    for expect in 0..1000 {
        let d = timeout(consumer.next()).await.unwrap().unwrap();
        assert_eq!(number(&d.data), expect);
        assert!(!d.redelivered);
        timeout(d.acker.ack(Default::default())).await.unwrap();
    }
    // 50 more are out (prefetch), unacked: messages = ready + unacknowledged, as RabbitMQ.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let depth = queue_columns(&data, "backlog", &["messages", "messages_ready", "messages_unacknowledged"]);
        if depth == [2000, 1950, 50] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "queue depth {depth:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Closing the channel puts its prefetched, unacked messages back at the head.
    timeout(ch.close(200, "bye".into())).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while queue_memory(&data, "backlog").0 != (COUNT - 1000) as u64 {
        assert!(std::time::Instant::now() < deadline, "acks not applied: {:?}", queue_memory(&data, "backlog"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Let the acks' removals commit (the store writer flushes continuously).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.kill9();

    // After the restart: only the index is in memory; the rest arrives in order, redelivered.
    let s = Server::start_with(&data, port, &["--config", cfg]).await;
    let (n, ram, _, paged) = queue_memory(&data, "backlog");
    assert_eq!((n, ram, paged), ((COUNT - 1000) as u64, 0, (COUNT - 1000) as u64));
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let mut expect = 1000;
    while let Some(m) = timeout(ch.basic_get("backlog".into(), BasicGetOptions { no_ack: true })).await.unwrap() {
        assert_eq!(number(&m.delivery.data), expect);
        assert!(m.delivery.redelivered);
        expect += 1;
    }
    assert_eq!(expect, COUNT);
}

/// Bytes of the files in `<data>/transient` (transient messages paged out) and how many exist.
fn transient_files(data: &Path) -> (u64, usize) {
    let Ok(dir) = std::fs::read_dir(data.join("transient")) else { return (0, 0) };
    dir.map(|e| e.unwrap().metadata().unwrap().len()).fold((0, 0), |(b, n), len| (b + len, n + 1))
}

/// Polls `list_queues` until queue `q` holds `n` messages.
async fn wait_messages(data: &Path, q: &str, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got = queue_memory(data, q).0;
        if got == n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "queue {q} holds {got} messages, expected {n}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

const BIG_COUNT: u32 = 128 * 1024;

/// Body of transient message `i` of the big backlog: 2 KiB, numbered, with a checkable tail.
fn big_body(i: u32) -> Vec<u8> {
    let mut b = format!("{i:08}").into_bytes();
    b.resize(2048, b'a' + (i % 26) as u8);
    b
}

/// A backlog of transient messages in a non-durable queue, 256 MiB of bodies with a 1 MiB
/// memory budget and no consumer: the bodies go to page files, the broker's resident memory
/// stays far below the backlog, and a consumer then gets every message in order and intact.
/// Drained, the page files are gone; a transient backlog in a durable queue does not survive a
/// restart, and neither do its page files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_backlog_far_above_the_ram_budget_keeps_rss_bounded_and_comes_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("warren.toml");
    std::fs::write(&config, "[storage]\nqueue_ram_limit = 1048576\n").unwrap();
    let cfg = config.to_str().unwrap();
    let port = free_port();
    let s = Server::start_with(&data, port, &["--config", cfg]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.queue_declare("big".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    let before = s.rss_kib();
    let mut peak = before;
    for i in 0..BIG_COUNT {
        timeout(ch.basic_publish("".into(), "big".into(), Default::default(), &big_body(i), BasicProperties::default())).await.unwrap();
        if i % 4096 == 0 {
            peak = peak.max(s.rss_kib());
        }
    }
    wait_messages(&data, "big", BIG_COUNT as u64).await;
    peak = peak.max(s.rss_kib());
    let (n, ram, ram_bytes, paged) = queue_memory(&data, "big");
    assert_eq!(n, BIG_COUNT as u64);
    assert!(ram_bytes <= 1 << 20, "{ram_bytes} body bytes in memory ({ram} messages)");
    assert_eq!(ram + paged, n);
    let (file_bytes, _) = transient_files(&data);
    assert!(file_bytes >= 240 << 20, "only {file_bytes} bytes in page files");
    // 256 MiB of bodies; without paging the broker holds all of them (and more).
    let grew = peak.saturating_sub(before);
    assert!(grew < 64 << 10, "RSS grew by {grew} KiB for a 256 MiB backlog (from {before} KiB)");

    let mut consumer = timeout(ch.basic_consume("big".into(), "c".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())).await.unwrap();
    for expect in 0..BIG_COUNT {
        let d = timeout(consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.data.len(), 2048);
        let got: u32 = std::str::from_utf8(&d.data[..8]).unwrap().parse().unwrap();
        assert_eq!(got, expect);
        assert_eq!(d.data[2047], b'a' + (got % 26) as u8, "body of message {got} intact");
    }
    wait_messages(&data, "big", 0).await;
    assert_eq!(transient_files(&data).0, 0, "page files hold nothing once the backlog is drained");
    timeout(ch.queue_delete("big".into(), Default::default())).await.unwrap();
    assert_eq!(transient_files(&data), (0, 0), "deleting the queue deletes its page files");

    // A durable queue's transient backlog is paged too, and gone after a restart.
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("kept".into(), durable, FieldTable::default())).await.unwrap();
    for i in 0..2000 {
        timeout(ch.basic_publish("".into(), "kept".into(), Default::default(), &body(i), BasicProperties::default())).await.unwrap();
    }
    wait_messages(&data, "kept", 2000).await;
    assert!(queue_memory(&data, "kept").3 > 1500, "transient messages of a durable queue paged out");
    assert!(transient_files(&data).0 > 0);
    s.kill9();
    let _s = Server::start_with(&data, port, &["--config", cfg]).await;
    assert_eq!(queue_memory(&data, "kept").0, 0, "transient messages do not survive a restart");
    assert_eq!(transient_files(&data), (0, 0), "the previous run's page files are removed");
}

/// Paged transient messages keep priority order (each level pages on its own), expire with
/// their TTL, and are dead-lettered with their bodies: a small memory budget, an in-process
/// broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_transient_messages_keep_priorities_ttl_and_dead_lettering() {
    let b = common::TestBroker::start_with(|c| c.storage.queue_ram_limit = 64 << 10).await;
    let Some(data) = b.data_dir() else { return };
    let (_conn, ch) = b.channel().await;
    // Priorities: 3,000 messages of 4 KiB over priorities 0..=4, published in turn.
    let args = common::ft(&[("x-max-priority", lapin::types::AMQPValue::ShortShortUInt(4))]);
    timeout(ch.queue_declare("prio".into(), QueueDeclareOptions::default(), args)).await.unwrap();
    for i in 0..COUNT {
        let props = BasicProperties::default().with_priority((i % 5) as u8);
        timeout(ch.basic_publish("".into(), "prio".into(), Default::default(), &body(i), props)).await.unwrap();
    }
    wait_messages(data, "prio", COUNT as u64).await;
    assert!(queue_memory(data, "prio").3 > (COUNT - 500) as u64, "paged out: {:?}", queue_memory(data, "prio"));
    let mut got = Vec::new();
    while let Some(m) = timeout(ch.basic_get("prio".into(), BasicGetOptions { no_ack: true })).await.unwrap() {
        got.push(number(&m.delivery.data));
    }
    let mut expect: Vec<u32> = (0..COUNT).collect();
    expect.sort_by_key(|i| (std::cmp::Reverse(i % 5), *i));
    assert_eq!(got, expect, "highest priority first, FIFO within a priority");
    assert_eq!(transient_files(data).0, 0);

    // TTL and dead-lettering: every message of "short" expires after 1 s, most of them while
    // paged out, and is dead-lettered to "dead" (itself paging) with its body.
    let args = common::ft(&[
        ("x-message-ttl", lapin::types::AMQPValue::LongInt(1000)),
        ("x-dead-letter-exchange", common::lstr("")),
        ("x-dead-letter-routing-key", common::lstr("dead")),
    ]);
    timeout(ch.queue_declare("dead".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_declare("short".into(), QueueDeclareOptions::default(), args)).await.unwrap();
    for i in 0..COUNT {
        timeout(ch.basic_publish("".into(), "short".into(), Default::default(), &body(i), BasicProperties::default())).await.unwrap();
    }
    wait_messages(data, "dead", COUNT as u64).await;
    assert_eq!(queue_memory(data, "short").0, 0);
    for expect in 0..COUNT {
        let m = timeout(ch.basic_get("dead".into(), BasicGetOptions { no_ack: true })).await.unwrap().expect("dead-lettered message");
        assert_eq!(number(&m.delivery.data), expect);
        let death = m.delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-first-death-reason").cloned());
        assert_eq!(death, Some(common::lstr("expired")));
    }
    assert_eq!(transient_files(data).0, 0);
}

/// A backlog of 20,000 small persistent messages far past a 16 KiB memory budget is held as
/// runs of consecutive messages; some carry their own expiry (an entry of their own), some are
/// transient (page file). Consumed in part, killed with SIGKILL and restarted: the persistent
/// ones not consumed are all there, counted, and arrive in order, redelivered; the transient
/// ones are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_message_backlog_in_runs_survives_kill9_in_order_with_counts() {
    const N: u32 = 20_000;
    const TAKEN: u32 = 2_000;
    let small = |i: u32| {
        let mut b = format!("{i:08}").into_bytes();
        b.resize(32, b'a' + (i % 26) as u8);
        b
    };
    let transient = |i: u32| i % 250 == 100;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("warren.toml");
    std::fs::write(&config, "[storage]\nqueue_ram_limit = 16384\n").unwrap();
    let cfg = config.to_str().unwrap();
    let port = free_port();
    let s = Server::start_with(&data, port, &["--config", cfg]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("runs".into(), durable, FieldTable::default())).await.unwrap();
    let mut confirms = Vec::new();
    for i in 0..N {
        let mut props = BasicProperties::default().with_delivery_mode(if transient(i) { 1 } else { 2 });
        if i % 1000 == 999 {
            props = props.with_expiration("3600000".into());
        }
        confirms.push(timeout(ch.basic_publish("".into(), "runs".into(), Default::default(), &small(i), props)).await.unwrap());
    }
    for c in confirms {
        assert!(timeout(c).await.unwrap().is_ack());
    }
    let (n, _, ram_bytes, paged) = queue_memory(&data, "runs");
    assert_eq!(n, N as u64);
    assert!(paged >= (N - 1000) as u64, "only {paged} of {N} paged out ({ram_bytes} body bytes in memory)");
    for expect in 0..TAKEN {
        let m = timeout(ch.basic_get("runs".into(), BasicGetOptions { no_ack: true })).await.unwrap().expect("message");
        assert_eq!(m.delivery.data, small(expect));
        assert!(!m.delivery.redelivered);
    }
    assert_eq!(queue_memory(&data, "runs").0, (N - TAKEN) as u64);
    // Let the no-ack removals commit (the store writer flushes continuously).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.kill9();

    let s = Server::start_with(&data, port, &["--config", cfg]).await;
    let expect: Vec<u32> = (TAKEN..N).filter(|&i| !transient(i)).collect();
    let (n, ram, _, paged) = queue_memory(&data, "runs");
    assert_eq!((n, ram, paged), (expect.len() as u64, 0, expect.len() as u64));
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.basic_qos(1000, Default::default())).await.unwrap();
    let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumer = timeout(ch.basic_consume("runs".into(), "c".into(), opts, FieldTable::default())).await.unwrap();
    for &i in &expect {
        let d = timeout(consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.data, small(i), "message {i}");
        assert!(d.redelivered);
    }
    wait_messages(&data, "runs", 0).await;
}
