//! Priority queues: x-max-priority, the `priority` property, FIFO within a priority, order kept
//! across a restart. Tests pass against RabbitMQ 3.10 (WARREN_TEST_URL) and Warren.

use crate::common;

use amq_protocol::types::AMQPValue;
use common::*;
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;

fn prio(p: Option<u8>) -> BasicProperties {
    let props = BasicProperties::default().with_delivery_mode(2);
    match p {
        Some(p) => props.with_priority(p),
        None => props,
    }
}

/// Higher priorities first, publish order within a priority, no priority = 0.
#[tokio::test]
async fn delivers_by_priority_then_fifo() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("prio");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), ft(&[("x-max-priority", AMQPValue::LongInt(10))]))).await.unwrap();
    for (p, body) in [(Some(1), "a1"), (Some(5), "b1"), (None, "z"), (Some(1), "a2"), (Some(10), "c1"), (Some(5), "b2"), (Some(0), "z2")] {
        publish_c(&ch, "", &q, body.as_bytes(), prio(p)).await;
    }
    assert_eq!(drain(&ch, &q).await, vec!["c1", "b1", "b2", "a1", "a2", "z", "z2"]);
}

/// A priority above x-max-priority counts as the maximum: it queues behind earlier messages
/// of the maximum priority.
#[tokio::test]
async fn priority_above_the_maximum_is_capped() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("prio-cap");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), ft(&[("x-max-priority", AMQPValue::LongInt(3))]))).await.unwrap();
    publish_c(&ch, "", &q, b"three", prio(Some(3))).await;
    publish_c(&ch, "", &q, b"nine", prio(Some(9))).await;
    publish_c(&ch, "", &q, b"two", prio(Some(2))).await;
    assert_eq!(drain(&ch, &q).await, vec!["three", "nine", "two"]);
}

/// A queue without x-max-priority ignores the property (FIFO).
#[tokio::test]
async fn plain_queue_ignores_priority() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("fifo");
    named_queue(&ch, &q).await;
    publish_c(&ch, "", &q, b"low", prio(Some(1))).await;
    publish_c(&ch, "", &q, b"high", prio(Some(9))).await;
    assert_eq!(drain(&ch, &q).await, vec!["low", "high"]);
}

/// A durable priority queue comes back from a restart (kill -9) in the same order, with its
/// bodies paged out (a small queue_ram_limit). Warren only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_order_survives_restart_and_paging() {
    if std::env::var("WARREN_TEST_URL").is_ok_and(|u| !u.is_empty()) {
        return;
    }
    use common::process::{Server, free_port};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = confirm_channel(&conn).await;
    let o = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("pq".into(), o, ft(&[("x-max-priority", AMQPValue::LongInt(5))]))).await.unwrap();
    let mut expect: Vec<(u8, u32)> = Vec::new();
    for i in 0..300u32 {
        let p = (i * 7 % 6) as u8;
        publish_c(&ch, "", "pq", format!("{p}-{i}").as_bytes(), prio(Some(p))).await;
        expect.push((p, i));
    }
    drop(conn);
    s.kill9();
    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    expect.sort_by_key(|&(p, i)| (std::cmp::Reverse(p), i));
    let want: Vec<String> = expect.iter().map(|(p, i)| format!("{p}-{i}")).collect();
    assert_eq!(drain(&ch, "pq").await, want);
}
