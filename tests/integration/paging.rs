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
