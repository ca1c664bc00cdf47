//! Dead-lettering: rejected and expired messages go to the queue's dead-letter exchange with
//! RabbitMQ's `x-death` and `x-first-death-*` headers; cycles of automatic dead-lettering are
//! dropped. Each test passes against RabbitMQ 3.10 (WARREN_TEST_URL) and Warren.

use crate::common;

use amq_protocol::types::{AMQPValue, FieldTable};
use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicNackOptions, BasicRejectOptions, QueueDeclareOptions};
use std::time::Duration;

async fn declare(ch: &lapin::Channel, name: &str, args: &[(&str, AMQPValue)]) {
    timeout(ch.queue_declare(name.into(), QueueDeclareOptions::default(), ft(args))).await.expect("declare");
}

/// basic.get (no-ack) within WAIT: the next message of `q`.
async fn wait_get(ch: &lapin::Channel, q: &str) -> lapin::message::BasicGetMessage {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = timeout(ch.basic_get(q.into(), BasicGetOptions { no_ack: true })).await.expect("get") {
            return m;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing arrived on {q}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn headers(m: &lapin::message::BasicGetMessage) -> FieldTable {
    m.delivery.properties.headers().clone().expect("headers")
}

fn s(t: &FieldTable, k: &str) -> String {
    match t.inner().get(k) {
        Some(AMQPValue::LongString(v)) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        other => panic!("{k}: {other:?}"),
    }
}

fn deaths(h: &FieldTable) -> Vec<FieldTable> {
    match h.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|d| match d {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry {other:?}"),
            })
            .collect(),
        other => panic!("x-death: {other:?}"),
    }
}

fn count(t: &FieldTable) -> i64 {
    match t.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("count: {other:?}"),
    }
}

fn keys(t: &FieldTable) -> Vec<String> {
    match t.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|k| match k {
                AMQPValue::LongString(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
                other => panic!("routing key {other:?}"),
            })
            .collect(),
        other => panic!("routing-keys: {other:?}"),
    }
}

/// reject(requeue=false) sends the message to the DLX (fanout here), keeping its routing key,
/// with one x-death entry and the x-first-death-* headers.
#[tokio::test]
async fn rejected_message_goes_to_the_dlx_with_x_death() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let dlx = uniq("dlx");
    let dead = uniq("dead");
    let q = uniq("work");
    timeout(ch.exchange_declare(dlx.as_str().into(), lapin::ExchangeKind::Fanout, Default::default(), Default::default())).await.unwrap();
    declare(&ch, &dead, &[]).await;
    timeout(ch.queue_bind(dead.as_str().into(), dlx.as_str().into(), "".into(), Default::default(), Default::default())).await.unwrap();
    declare(&ch, &q, &[("x-dead-letter-exchange", lstr(&dlx))]).await;
    let props = BasicProperties::default().with_headers(ft(&[("app", lstr("mine"))])).with_correlation_id("c1".into());
    publish_c(&ch, "", &q, b"job", props).await;
    let m = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await.unwrap().expect("message");
    timeout(m.delivery.acker.reject(BasicRejectOptions { requeue: false })).await.unwrap();

    let d = wait_get(&ch, &dead).await;
    assert_eq!(&d.delivery.data[..], b"job");
    assert_eq!(d.delivery.exchange.as_str(), dlx);
    assert_eq!(d.delivery.routing_key.as_str(), q, "no x-dead-letter-routing-key: the original key");
    assert_eq!(d.delivery.properties.correlation_id().as_ref().map(|c| c.as_str()), Some("c1"));
    let h = headers(&d);
    assert_eq!(s(&h, "app"), "mine");
    let x = deaths(&h);
    assert_eq!(x.len(), 1);
    assert_eq!(count(&x[0]), 1);
    assert_eq!(s(&x[0], "reason"), "rejected");
    assert_eq!(s(&x[0], "queue"), q);
    assert_eq!(s(&x[0], "exchange"), "");
    assert_eq!(keys(&x[0]), vec![q.clone()]);
    assert!(matches!(x[0].inner().get("time"), Some(AMQPValue::Timestamp(_))), "{:?}", x[0]);
    assert!(!x[0].inner().contains_key("original-expiration"));
    assert_eq!(s(&h, "x-first-death-reason"), "rejected");
    assert_eq!(s(&h, "x-first-death-queue"), q);
    assert_eq!(s(&h, "x-first-death-exchange"), "");
    assert_eq!(timeout(ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await.unwrap().map(|_| ()), None);
}

/// An expired message goes to the DLX with x-dead-letter-routing-key; its expiration moves to
/// x-death's original-expiration.
#[tokio::test]
async fn expired_message_is_dead_lettered_without_its_expiration() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let dead = uniq("dead");
    let q = uniq("expiring");
    declare(&ch, &dead, &[]).await;
    declare(&ch, &q, &[("x-dead-letter-exchange", lstr("")), ("x-dead-letter-routing-key", lstr(&dead))]).await;
    publish_c(&ch, "", &q, b"late", BasicProperties::default().with_expiration("20".into())).await;
    let d = wait_get(&ch, &dead).await;
    assert_eq!(&d.delivery.data[..], b"late");
    assert_eq!(d.delivery.routing_key.as_str(), dead);
    assert_eq!(d.delivery.properties.expiration(), &None);
    let h = headers(&d);
    let x = deaths(&h);
    assert_eq!(x.len(), 1);
    assert_eq!(s(&x[0], "reason"), "expired");
    assert_eq!(s(&x[0], "queue"), q);
    assert_eq!(s(&x[0], "original-expiration"), "20");
    assert_eq!(keys(&x[0]), vec![q.clone()]);
    assert_eq!(s(&h, "x-first-death-reason"), "expired");
}

/// A queue-TTL retry loop (work → wait with TTL → back to work) records each hop once per
/// (queue, reason), counting repeats; client rejections make the cycle legal.
#[tokio::test]
async fn retry_loop_counts_deaths_per_queue_and_reason() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let work = uniq("work");
    let wait = uniq("wait");
    declare(&ch, &work, &[("x-dead-letter-exchange", lstr("")), ("x-dead-letter-routing-key", lstr(&wait))]).await;
    declare(
        &ch,
        &wait,
        &[("x-message-ttl", AMQPValue::LongInt(20)), ("x-dead-letter-exchange", lstr("")), ("x-dead-letter-routing-key", lstr(&work))],
    )
    .await;
    publish_c(&ch, "", &work, b"retry me", BasicProperties::default()).await;
    for round in 1..=3i64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        let m = loop {
            if let Some(m) = timeout(ch.basic_get(work.as_str().into(), BasicGetOptions::default())).await.unwrap() {
                break m;
            }
            assert!(tokio::time::Instant::now() < deadline, "round {round}: nothing came back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if round > 1 {
            let x = deaths(m.delivery.properties.headers().as_ref().unwrap());
            assert_eq!(x.len(), 2, "one entry per (queue, reason)");
            // Newest first: expired from wait, then rejected from work.
            assert_eq!((s(&x[0], "queue"), s(&x[0], "reason")), (wait.clone(), "expired".into()));
            assert_eq!((s(&x[1], "queue"), s(&x[1], "reason")), (work.clone(), "rejected".into()));
            assert_eq!(count(&x[0]), round - 1);
            assert_eq!(count(&x[1]), round - 1);
            assert_eq!(s(m.delivery.properties.headers().as_ref().unwrap(), "x-first-death-reason"), "rejected");
        }
        timeout(m.delivery.acker.nack(BasicNackOptions { requeue: false, multiple: false })).await.unwrap();
    }
}

/// Expiry that would dead-letter a message back into a queue it already died in, with no
/// rejection in between, is a cycle: the message is dropped.
#[tokio::test]
async fn automatic_dead_letter_cycle_is_dropped() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let a = uniq("cyc-a");
    let z = uniq("cyc-b");
    let ttl = AMQPValue::LongInt(10);
    declare(&ch, &a, &[("x-message-ttl", ttl.clone()), ("x-dead-letter-exchange", lstr("")), ("x-dead-letter-routing-key", lstr(&z))]).await;
    declare(&ch, &z, &[("x-message-ttl", ttl), ("x-dead-letter-exchange", lstr("")), ("x-dead-letter-routing-key", lstr(&a))]).await;
    publish_c(&ch, "", &a, b"round and round", BasicProperties::default()).await;
    // a → z (expired) → a would be a cycle: dropped there. Wait until both are empty.
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let na = timeout(ch.queue_declare(a.as_str().into(), passive, Default::default())).await.unwrap().message_count();
        let nz = timeout(ch.queue_declare(z.as_str().into(), passive, Default::default())).await.unwrap().message_count();
        if na + nz == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the message keeps cycling ({na}, {nz})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it stays gone.
    tokio::time::sleep(QUIET).await;
    assert_eq!(timeout(ch.basic_get(a.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().map(|_| ()), None);
    assert_eq!(timeout(ch.basic_get(z.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().map(|_| ()), None);
}
