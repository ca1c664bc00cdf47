//! Length limits: x-max-length, x-max-length-bytes, x-overflow drop-head / reject-publish /
//! reject-publish-dlx. Each test passes against RabbitMQ 3.10 (WARREN_TEST_URL) and Warren.

use crate::common;

use amq_protocol::types::AMQPValue;
use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};

async fn declare(ch: &lapin::Channel, name: &str, durable: bool, args: &[(&str, AMQPValue)]) {
    let o = QueueDeclareOptions { durable, ..Default::default() };
    timeout(ch.queue_declare(name.into(), o, ft(args))).await.expect("declare");
}

/// Publishes and returns whether the publisher confirm was an ack.
async fn publish_acked(ch: &lapin::Channel, q: &str, body: &str, props: BasicProperties) -> bool {
    let c = timeout(ch.basic_publish("".into(), q.into(), Default::default(), body.as_bytes(), props)).await.expect("publish");
    timeout(c).await.expect("confirm").is_ack()
}

fn n(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

/// drop-head (the default): the oldest ready messages make room, by count and by body bytes.
#[tokio::test]
async fn drop_head_keeps_the_newest() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("maxlen");
    declare(&ch, &q, false, &[("x-max-length", n(2))]).await;
    for i in 1..=5 {
        assert!(publish_acked(&ch, &q, &i.to_string(), Default::default()).await);
    }
    assert_eq!(drain(&ch, &q).await, vec!["4", "5"]);

    let q = uniq("maxbytes");
    declare(&ch, &q, false, &[("x-max-length-bytes", n(10))]).await;
    for body in ["12345", "67890", "abc"] {
        assert!(publish_acked(&ch, &q, body, Default::default()).await);
    }
    assert_eq!(drain(&ch, &q).await, vec!["67890", "abc"]);
}

/// Unacknowledged messages do not count towards the limit.
#[tokio::test]
async fn unacked_messages_do_not_count() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("maxlen-unacked");
    declare(&ch, &q, false, &[("x-max-length", n(1)), ("x-overflow", lstr("reject-publish"))]).await;
    assert!(publish_acked(&ch, &q, "a", Default::default()).await);
    let _held = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await.unwrap().expect("a");
    assert!(publish_acked(&ch, &q, "b", Default::default()).await, "the queue has no ready message");
    assert!(!publish_acked(&ch, &q, "c", Default::default()).await);
}

/// drop-head with a dead-letter exchange dead-letters the dropped messages, reason maxlen.
#[tokio::test]
async fn dropped_heads_are_dead_lettered_as_maxlen() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let dead = uniq("dead");
    let q = uniq("maxlen-dlx");
    declare(&ch, &dead, false, &[]).await;
    declare(&ch, &q, false, &[("x-max-length", n(1)), ("x-dead-letter-exchange", lstr("")), ("x-dead-letter-routing-key", lstr(&dead))]).await;
    assert!(publish_acked(&ch, &q, "old", Default::default()).await);
    assert!(publish_acked(&ch, &q, "new", Default::default()).await);
    let m = timeout(ch.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().expect("dead-lettered");
    assert_eq!(&m.delivery.data[..], b"old");
    let h = m.delivery.properties.headers().clone().unwrap();
    assert_eq!(h.inner().get("x-first-death-reason"), Some(&lstr("maxlen")));
    assert_eq!(drain(&ch, &q).await, vec!["new"]);
}

/// reject-publish: a full queue refuses new messages; the publisher gets a nack (transient or
/// persistent, durable queue or not) and the queue keeps the old ones.
#[tokio::test]
async fn reject_publish_nacks_when_full() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    for durable in [false, true] {
        let q = uniq("reject");
        declare(&ch, &q, durable, &[("x-max-length", n(2)), ("x-overflow", lstr("reject-publish"))]).await;
        let p = BasicProperties::default().with_delivery_mode(if durable { 2 } else { 1 });
        assert!(publish_acked(&ch, &q, "1", p.clone()).await);
        assert!(publish_acked(&ch, &q, "2", p.clone()).await);
        assert!(!publish_acked(&ch, &q, "3", p.clone()).await, "full: nacked");
        assert_eq!(drain(&ch, &q).await, vec!["1", "2"]);
        assert!(publish_acked(&ch, &q, "4", p).await, "room again");
        timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    }
}

/// reject-publish-dlx: the refused message is nacked and dead-lettered (reason maxlen).
#[tokio::test]
async fn reject_publish_dlx_dead_letters_the_refused_message() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let dead = uniq("dead");
    let q = uniq("reject-dlx");
    declare(&ch, &dead, false, &[]).await;
    declare(
        &ch,
        &q,
        false,
        &[
            ("x-max-length", n(1)),
            ("x-overflow", lstr("reject-publish-dlx")),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dead)),
        ],
    )
    .await;
    assert!(publish_acked(&ch, &q, "kept", Default::default()).await);
    assert!(!publish_acked(&ch, &q, "refused", Default::default()).await);
    assert_eq!(drain(&ch, &q).await, vec!["kept"]);
    let m = timeout(ch.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().expect("dead-lettered");
    assert_eq!(&m.delivery.data[..], b"refused");
    assert_eq!(m.delivery.properties.headers().as_ref().unwrap().inner().get("x-first-death-reason"), Some(&lstr("maxlen")));
}
