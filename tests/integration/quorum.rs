//! x-queue-type quorum on one node: durable-only with RabbitMQ's errors, x-delivery-limit with
//! the x-delivery-count header, no global qos. Passes against RabbitMQ 3.10 (WARREN_TEST_URL)
//! and Warren.

use crate::common;

use amq_protocol::types::AMQPValue;
use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions};

fn quorum() -> (&'static str, AMQPValue) {
    ("x-queue-type", lstr("quorum"))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

#[tokio::test]
async fn quorum_queues_are_durable_and_refuse_classic_only_arguments() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let cases = [
        (QueueDeclareOptions::default(), vec![quorum()], "invalid property 'non-durable' for queue '{q}' in vhost '/'"),
        (QueueDeclareOptions { durable: true, exclusive: true, ..Default::default() }, vec![quorum()], "invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
        (QueueDeclareOptions { durable: true, auto_delete: true, ..Default::default() }, vec![quorum()], "invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
        (durable(), vec![quorum(), ("x-max-priority", AMQPValue::LongInt(5))], "invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
    ];
    for (opts, args, text) in cases {
        let ch = timeout(conn.create_channel()).await.unwrap();
        let q = uniq("qq-bad");
        let r = timeout(ch.queue_declare(q.as_str().into(), opts, ft(&args))).await;
        assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - {}", text.replace("{q}", &q)));
    }
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = uniq("qq");
    timeout(ch.queue_declare(q.as_str().into(), durable(), ft(&[quorum()]))).await.expect("a durable quorum queue");
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
}

/// Each return adds to x-delivery-count; past x-delivery-limit the message is dead-lettered
/// with reason delivery_limit.
#[tokio::test]
async fn delivery_limit_dead_letters_poison_messages() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("qq-limit");
    let dead = uniq("dead");
    named_queue(&ch, &dead).await;
    let args = [quorum(), ("x-delivery-limit", AMQPValue::LongInt(1)), ("x-dead-letter-exchange", lstr("")), ("x-dead-letter-routing-key", lstr(&dead))];
    timeout(ch.queue_declare(q.as_str().into(), durable(), ft(&args))).await.unwrap();
    publish_c(&ch, "", &q, b"poison", BasicProperties::default()).await;
    let get = || async { timeout(ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await.unwrap().expect("message") };
    let m = get().await;
    assert!(!m.delivery.redelivered);
    let count = m.delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-delivery-count").cloned());
    assert!(matches!(count, Some(AMQPValue::LongLongInt(0)) | Some(AMQPValue::LongInt(0))), "{count:?}");
    timeout(m.delivery.acker.nack(BasicNackOptions { requeue: true, multiple: false })).await.unwrap();
    let m = get().await;
    assert!(m.delivery.redelivered);
    let count = m.delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-delivery-count").cloned());
    assert!(matches!(count, Some(AMQPValue::LongLongInt(1)) | Some(AMQPValue::LongInt(1))), "{count:?}");
    timeout(m.delivery.acker.nack(BasicNackOptions { requeue: true, multiple: false })).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let d = loop {
        if let Some(d) = timeout(ch.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap() {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(&d.delivery.data[..], b"poison");
    let h = d.delivery.properties.headers().clone().unwrap();
    assert_eq!(h.inner().get("x-first-death-reason"), Some(&lstr("delivery_limit")));
    assert_eq!(timeout(ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await.unwrap().map(|_| ()), None);
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
}

/// Consuming from a quorum queue on a channel with global qos is 540 NOT_IMPLEMENTED.
#[tokio::test]
async fn global_qos_is_refused() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = uniq("qq-qos");
    timeout(ch.queue_declare(q.as_str().into(), durable(), ft(&[quorum()]))).await.unwrap();
    timeout(ch.basic_qos(10, BasicQosOptions { global: true })).await.unwrap();
    let r = timeout(ch.basic_consume(q.as_str().into(), "".into(), Default::default(), Default::default())).await;
    assert_amqp_err(r, 540, &format!("NOT_IMPLEMENTED - queue '{q}' in vhost '/' does not support global qos"));
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
}

/// The persisted x-delivery-count costs the normal path nothing: publishing, delivering and
/// acking N messages writes N records and removes N (the store's own counters); only a return
/// rewrites its message (one more remove and append). Warren only (`store_status`).
#[tokio::test]
async fn delivery_count_is_written_only_on_returns() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return;
    }
    let stat = |r: &warren::admin::Response, key: &str| -> u64 {
        r.rows.iter().find(|row| row[0] == key).and_then(|row| row[1].as_u64()).unwrap()
    };
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    let q = uniq("qq-cost");
    timeout(ch.queue_declare(q.as_str().into(), durable(), ft(&[quorum()]))).await.unwrap();
    let before = b.admin_call("store_status", &[]).await;
    const N: u64 = 200;
    for i in 0..N {
        let c = timeout(ch.basic_publish("".into(), q.as_str().into(), Default::default(), i.to_string().as_bytes(), BasicProperties::default())).await.unwrap();
        assert!(timeout(c).await.unwrap().is_ack());
    }
    for _ in 0..N {
        let m = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await.unwrap().unwrap();
        timeout(m.delivery.acker.ack(Default::default())).await.unwrap();
    }
    // One more message, returned once, then acked.
    let c = timeout(ch.basic_publish("".into(), q.as_str().into(), Default::default(), b"last", BasicProperties::default())).await.unwrap();
    assert!(timeout(c).await.unwrap().is_ack());
    let m = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await.unwrap().unwrap();
    timeout(m.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() })).await.unwrap();
    let m = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await.unwrap().unwrap();
    timeout(m.delivery.acker.ack(Default::default())).await.unwrap();
    // Wait until the writer has taken every op (the ack of the last message is the newest).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let after = b.admin_call("store_status", &[]).await;
        let (appends, removes) = (stat(&after, "appends") - stat(&before, "appends"), stat(&after, "removes") - stat(&before, "removes"));
        if removes >= N + 2 || tokio::time::Instant::now() > deadline {
            assert_eq!((appends, removes), (N + 2, N + 2), "N+1 publishes + 1 rewrite; N+1 acks + 1 rewrite");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
