//! Message TTL: `x-message-ttl`, the `expiration` property, TTL 0, expiry at the head only.
//! Each test passes against RabbitMQ 3.10 (WARREN_TEST_URL) and Warren.

use crate::common;

use amq_protocol::types::AMQPValue;
use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, QueueDeclareOptions};
use std::time::Duration;

async fn declare(ch: &lapin::Channel, name: &str, args: &[(&str, AMQPValue)]) {
    timeout(ch.queue_declare(name.into(), QueueDeclareOptions::default(), ft(args))).await.expect("declare");
}

async fn count(ch: &lapin::Channel, name: &str) -> u32 {
    let o = QueueDeclareOptions { passive: true, ..Default::default() };
    timeout(ch.queue_declare(name.into(), o, Default::default())).await.expect("passive declare").message_count()
}

/// Polls until the queue holds `n` messages (panics after WAIT).
async fn wait_count(ch: &lapin::Channel, name: &str, n: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let c = count(ch, name).await;
        if c == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "queue {name} still has {c} messages, expected {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_body(ch: &lapin::Channel, q: &str) -> Option<String> {
    let m = timeout(ch.basic_get(q.into(), BasicGetOptions { no_ack: true })).await.expect("get");
    m.map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
}

fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms.into())
}

/// Messages of a queue with x-message-ttl go away unconsumed, persistent or not, in a durable
/// queue or not.
#[tokio::test]
async fn queue_ttl_expires_unconsumed_messages() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    for durable in [false, true] {
        let q = uniq("ttl-q");
        let o = QueueDeclareOptions { durable, ..Default::default() };
        timeout(ch.queue_declare(q.as_str().into(), o, ft(&[("x-message-ttl", AMQPValue::LongInt(150))]))).await.unwrap();
        publish_c(&ch, "", &q, b"a", BasicProperties::default()).await;
        publish_c(&ch, "", &q, b"b", BasicProperties::default().with_delivery_mode(2)).await;
        assert_eq!(count(&ch, &q).await, 2, "still there right after publishing");
        wait_count(&ch, &q, 0).await;
        assert_eq!(get_body(&ch, &q).await, None);
        timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    }
}

/// The `expiration` property expires one message; the other stays.
#[tokio::test]
async fn per_message_expiration() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("ttl-msg");
    declare(&ch, &q, &[]).await;
    publish_c(&ch, "", &q, b"short", expiring("100")).await;
    publish_c(&ch, "", &q, b"forever", BasicProperties::default()).await;
    wait_count(&ch, &q, 1).await;
    assert_eq!(get_body(&ch, &q).await.as_deref(), Some("forever"));
    // The smaller of queue TTL and message TTL wins.
    let q2 = uniq("ttl-min");
    declare(&ch, &q2, &[("x-message-ttl", AMQPValue::LongInt(600_000))]).await;
    publish_c(&ch, "", &q2, b"short", expiring("50")).await;
    wait_count(&ch, &q2, 0).await;
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    timeout(ch.queue_delete(q2.as_str().into(), Default::default())).await.unwrap();
}

/// x-message-ttl 0: delivered if a consumer can take it now, otherwise dropped at once.
#[tokio::test]
async fn ttl_zero_is_deliver_now_or_never() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("ttl-zero");
    declare(&ch, &q, &[("x-message-ttl", AMQPValue::LongInt(0))]).await;
    publish_c(&ch, "", &q, b"nobody", BasicProperties::default()).await;
    assert_eq!(get_body(&ch, &q).await, None, "no consumer: dropped");
    let cch = timeout(conn.create_channel()).await.unwrap();
    let mut consumer = timeout(cch.basic_consume(q.as_str().into(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, Default::default()))
        .await
        .unwrap();
    publish_c(&ch, "", &q, b"taken", BasicProperties::default()).await;
    let d = next_delivery(&mut consumer, WAIT).await.expect("delivered to the waiting consumer");
    assert_eq!(&d.data[..], b"taken");
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
}

/// As RabbitMQ: an expired message behind an unexpired head stays (and is counted) until it
/// reaches the head; then it is dropped, not delivered.
#[tokio::test]
async fn expired_message_behind_the_head_waits_for_the_head() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("ttl-behind");
    declare(&ch, &q, &[]).await;
    publish_c(&ch, "", &q, b"head", BasicProperties::default()).await;
    publish_c(&ch, "", &q, b"behind", expiring("1")).await;
    // Let "behind" expire; a head-less clock check would drop it by now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count(&ch, &q).await, 2);
    assert_eq!(get_body(&ch, &q).await.as_deref(), Some("head"));
    assert_eq!(get_body(&ch, &q).await, None, "the expired message is dropped at the head");
    assert_eq!(count(&ch, &q).await, 0);
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
}

/// A message rejected back to the queue keeps its original expiry.
#[tokio::test]
async fn requeued_message_keeps_its_expiry() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("ttl-requeue");
    declare(&ch, &q, &[("x-message-ttl", AMQPValue::LongInt(200))]).await;
    publish_c(&ch, "", &q, b"m", BasicProperties::default()).await;
    let m = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })).await.unwrap().expect("message");
    timeout(m.delivery.acker.nack(lapin::options::BasicNackOptions { requeue: true, multiple: false })).await.unwrap();
    wait_count(&ch, &q, 0).await;
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
}

/// Passive declare on a fresh channel: does the queue exist?
async fn exists(conn: &lapin::Connection, name: &str) -> bool {
    let ch = timeout(conn.create_channel()).await.unwrap();
    let o = QueueDeclareOptions { passive: true, ..Default::default() };
    match timeout(ch.queue_declare(name.into(), o, Default::default())).await {
        Ok(_) => {
            let _ = ch.close(200, "".into()).await;
            true
        }
        Err(e) => {
            assert_eq!(amqp_error(&e).map(|(c, _)| c), Some(404), "{e:?}");
            false
        }
    }
}

/// Waits for x-expires to delete the queue. A passive declare counts as use (it restarts the
/// period, as in RabbitMQ), so it looks less often than the 200-300 ms periods of these tests.
async fn wait_gone(conn: &lapin::Connection, name: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(450)).await;
        if !exists(conn, name).await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "queue {name} was not deleted by x-expires");
    }
}

/// x-expires: an unused queue is deleted, messages and all; a consumer keeps it alive, and the
/// period restarts when the consumer leaves.
#[tokio::test]
async fn unused_queue_expires() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("expires");
    declare(&ch, &q, &[("x-expires", AMQPValue::LongInt(200))]).await;
    publish_c(&ch, "", &q, b"m", BasicProperties::default()).await;
    wait_gone(&conn, &q).await;

    let q = uniq("expires-consumed");
    declare(&ch, &q, &[("x-expires", AMQPValue::LongInt(200))]).await;
    let cch = timeout(conn.create_channel()).await.unwrap();
    let c = timeout(cch.basic_consume(q.as_str().into(), "keep".into(), Default::default(), Default::default())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(exists(&conn, &q).await, "a queue with a consumer does not expire");
    timeout(cch.basic_cancel(c.tag().as_str().into(), Default::default())).await.unwrap();
    wait_gone(&conn, &q).await;
}

/// basic.get and redeclare count as use: a queue used more often than its x-expires stays.
#[tokio::test]
async fn get_and_redeclare_reset_x_expires() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = uniq("expires-reset");
    let args = [("x-expires", AMQPValue::LongInt(300))];
    declare(&ch, &q, &args).await;
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        if i % 2 == 0 {
            assert_eq!(get_body(&ch, &q).await, None);
        } else {
            declare(&ch, &q, &args).await;
        }
    }
    assert!(exists(&conn, &q).await, "used every 120 ms, so not expired after 720 ms");
    wait_gone(&conn, &q).await;
}

/// Durable queues keep their messages' TTL across a restart (kill -9): the expiry counts from
/// the publish, not from the recovery. Warren only (it restarts the server process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_survives_restart() {
    if std::env::var("WARREN_TEST_URL").is_ok_and(|u| !u.is_empty()) {
        return;
    }
    use common::process::{Server, free_port};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = confirm_channel(&conn).await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("qttl".into(), durable, ft(&[("x-message-ttl", AMQPValue::LongInt(3000))]))).await.unwrap();
    timeout(ch.queue_declare("mttl".into(), durable, Default::default())).await.unwrap();
    let persistent = BasicProperties::default().with_delivery_mode(2);
    publish_c(&ch, "", "qttl", b"q", persistent.clone()).await;
    publish_c(&ch, "", "mttl", b"short", persistent.clone().with_expiration("3000".into())).await;
    publish_c(&ch, "", "mttl", b"forever", persistent).await;
    drop(conn);
    s.kill9();
    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while count(&ch, "qttl").await + count(&ch, "mttl").await > 1 {
        assert!(tokio::time::Instant::now() < deadline, "recovered messages did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_body(&ch, "mttl").await.as_deref(), Some("forever"));
}

/// Ten thousand messages expiring together (more than one expiry batch) all go.
#[tokio::test]
async fn many_messages_expire_together() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("ttl-many");
    declare(&ch, &q, &[("x-message-ttl", AMQPValue::LongInt(300))]).await;
    let mut confirms = Vec::new();
    for _ in 0..10_000 {
        confirms.push(timeout(ch.basic_publish("".into(), q.as_str().into(), Default::default(), b"x", BasicProperties::default())).await.unwrap());
    }
    for c in confirms {
        assert!(timeout(c).await.unwrap().is_ack());
    }
    wait_count(&ch, &q, 0).await;
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
}

/// A bad `expiration` closes the channel with RabbitMQ's reason.
#[tokio::test]
async fn bad_expiration_gets_rabbitmqs_406() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    for (exp, why) in [("-1", "{value_negative,-1}"), ("1.5", "{leftover_string,\".5\"}"), ("99999999999999", "{value_too_large,99999999999999}"), ("abc", "no_integer")] {
        let ch = timeout(conn.create_channel()).await.unwrap();
        let q = temp_queue(&ch).await;
        let props = BasicProperties::default().with_expiration(exp.into());
        let (code, text) = error_after(&ch, ch.basic_publish("".into(), q.as_str().into(), Default::default(), b"x", props)).await;
        assert_eq!((code, text), (406, format!("PRECONDITION_FAILED - invalid expiration '{exp}': {why}")));
    }
}
