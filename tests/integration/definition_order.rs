//! Definition changes racing each other on several connections: whatever order they reach the
//! broker in, the durable definitions it holds are exactly those a restart after `kill -9`
//! recovers (the store applied them in the broker's order).
use crate::common;
use common::timeout;
use lapin::Connection;
use lapin::options::*;
use lapin::types::FieldTable;

use common::process::{Server, free_port};

/// A small xorshift generator: each task's own reproducible sequence of choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15u64 ^ (seed + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What `declare_or_delete_storm` leaves: per name, whether the queue / exchange exists and is
/// durable (a passive declare for existence, then a durable declare, refused with 406 if the
/// object is transient). A refused declare closes the channel: a new one is opened.
async fn durable_state(conn: &Connection, names: &[String]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for n in names {
        for is_queue in [true, false] {
            let ch = timeout(conn.create_channel()).await.unwrap();
            let exists = if is_queue {
                let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                timeout(ch.queue_declare(n.as_str().into(), passive, FieldTable::default())).await.is_ok()
            } else {
                let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
                timeout(ch.exchange_declare(n.as_str().into(), lapin::ExchangeKind::Direct, passive, FieldTable::default())).await.is_ok()
            };
            let durable = exists && {
                let ch = timeout(conn.create_channel()).await.unwrap();
                if is_queue {
                    let d = QueueDeclareOptions { durable: true, ..Default::default() };
                    timeout(ch.queue_declare(n.as_str().into(), d, FieldTable::default())).await.is_ok()
                } else {
                    let d = ExchangeDeclareOptions { durable: true, ..Default::default() };
                    timeout(ch.exchange_declare(n.as_str().into(), lapin::ExchangeKind::Direct, d, FieldTable::default())).await.is_ok()
                }
            };
            out.push((format!("{} {n}", if is_queue { "queue" } else { "exchange" }), durable));
        }
    }
    out
}

/// Four connections declare (durable or not) and delete queues and exchanges of the same four
/// names at once; afterwards, the durable ones the broker has are exactly those a restart
/// after `kill -9` recovers: the store applied the definition changes in the broker's order
/// (a delete and a declare of the same name that follows it; a durable declare whose name a
/// transient one took while its definition was being committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_declares_and_deletes_leave_the_store_as_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start_quiet(dir.path(), port).await;
    let names: Vec<String> = (0..4).map(|i| format!("storm-{i}")).collect();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let conn = s.connect().await;
        let names = names.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(t);
            let mut ch = timeout(conn.create_channel()).await.unwrap();
            for _ in 0..300 {
                let rng = rng.next();
                let name = names[(rng >> 8) as usize % names.len()].as_str();
                let durable = rng & 1 == 0;
                let ok = match (rng >> 1) % 4 {
                    0 => {
                        let o = QueueDeclareOptions { durable, ..Default::default() };
                        timeout(ch.queue_declare(name.into(), o, FieldTable::default())).await.is_ok()
                    }
                    1 => timeout(ch.queue_delete(name.into(), Default::default())).await.is_ok(),
                    2 => {
                        let o = ExchangeDeclareOptions { durable, ..Default::default() };
                        timeout(ch.exchange_declare(name.into(), lapin::ExchangeKind::Direct, o, FieldTable::default())).await.is_ok()
                    }
                    _ => timeout(ch.exchange_delete(name.into(), Default::default())).await.is_ok(),
                };
                if !ok {
                    // 406 (the other durability) closed the channel.
                    ch = timeout(conn.create_channel()).await.unwrap();
                }
            }
            drop(conn);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let conn = s.connect().await;
    let before = durable_state(&conn, &names).await;
    assert!(before.iter().any(|(_, d)| *d), "the storm left no durable object: it tests nothing ({before:?})");
    drop(conn);
    s.kill9();
    let s = Server::start_quiet(dir.path(), port).await;
    let conn = s.connect().await;
    let after = durable_state(&conn, &names).await;
    assert_eq!(after, before, "durable definitions after kill -9 differ from the broker's before it");
}

/// Four connections bind and unbind the same durable bindings at once (a durable exchange to a
/// durable queue with 40 keys): in each of 200 rounds, started together, all four bind or unbind
/// the round's key; afterwards the bindings the broker routes by are exactly those a restart
/// after `kill -9` recovers. (A binding the store kept while the broker dropped it, or the
/// reverse, is what this catches: it takes the last two changes of a key reaching the store in
/// the other order.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_binds_and_unbinds_leave_the_store_as_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start_quiet(dir.path(), port).await;
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    {
        let conn = s.connect().await;
        let ch = timeout(conn.create_channel()).await.unwrap();
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        timeout(ch.exchange_declare("bstorm".into(), lapin::ExchangeKind::Direct, durable, FieldTable::default())).await.unwrap();
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        timeout(ch.queue_declare("bstorm-q".into(), durable, FieldTable::default())).await.unwrap();
    }
    let mut tasks = Vec::new();
    let round = std::sync::Arc::new(tokio::sync::Barrier::new(4));
    for t in 0..4u64 {
        let conn = s.connect().await;
        let keys = keys.clone();
        let round = round.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(t);
            let ch = timeout(conn.create_channel()).await.unwrap();
            for r in 0..200 {
                round.wait().await;
                let key = keys[r % keys.len()].as_str();
                if rng.next() & 1 == 0 {
                    timeout(ch.queue_bind("bstorm-q".into(), "bstorm".into(), key.into(), Default::default(), FieldTable::default())).await.unwrap();
                } else {
                    timeout(ch.queue_unbind("bstorm-q".into(), "bstorm".into(), key.into(), FieldTable::default())).await.unwrap();
                }
            }
            drop(conn);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let conn = s.connect().await;
    let before = routed_keys(&conn, &keys).await;
    assert!(!before.is_empty() && before.len() < keys.len(), "the storm left all or no bindings: {before:?}");
    drop(conn);
    s.kill9();
    let s = Server::start_quiet(dir.path(), port).await;
    let conn = s.connect().await;
    let after = routed_keys(&conn, &keys).await;
    assert_eq!(after, before, "durable bindings after kill -9 differ from the broker's before it");
}

/// The routing keys exchange `bstorm` routes to `bstorm-q` by: one message per key, then the
/// queue emptied with basic.get.
async fn routed_keys(conn: &Connection, keys: &[String]) -> Vec<String> {
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.queue_purge("bstorm-q".into(), Default::default())).await.unwrap();
    for key in keys {
        let p = timeout(ch.basic_publish("bstorm".into(), key.as_str().into(), Default::default(), key.as_bytes(), Default::default())).await;
        drop(p.unwrap());
    }
    let mut out = Vec::new();
    let get = BasicGetOptions { no_ack: true };
    while let Some(m) = timeout(ch.basic_get("bstorm-q".into(), get)).await.unwrap() {
        out.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    out.sort();
    out
}
