//! Queues: declare-ok counts, server names, exclusivity, auto-delete, equivalence,
//! bind/unbind, purge, delete, and server-sent basic.cancel.
use crate::common;
use amq_protocol::protocol::{AMQPClass, basic, queue};
use amq_protocol::types::AMQPValue;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions { passive: true, ..Default::default() }
}

async fn qdeclare(ch: &lapin::Channel, name: &str, o: QueueDeclareOptions, args: FieldTable) -> lapin::Result<lapin::Queue> {
    timeout(ch.queue_declare(name.into(), o, args)).await
}

#[tokio::test]
async fn declare_ok_reports_ready_messages_and_consumers() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("counts");
    let d = qdeclare(&ch, &q, Default::default(), FieldTable::default()).await.unwrap();
    assert_eq!((d.message_count(), d.consumer_count()), (0, 0));
    for i in 0..5 {
        publish_c(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
    }
    let d = qdeclare(&ch, &q, passive(), FieldTable::default()).await.unwrap();
    assert_eq!((d.message_count(), d.consumer_count()), (5, 0));
    // One message taken by basic.get (unacked): no longer ready.
    let _m = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })).await.unwrap().unwrap();
    // A consumer with prefetch 2 holds two more.
    let cch = timeout(conn.create_channel()).await.unwrap();
    timeout(cch.basic_qos(2, Default::default())).await.unwrap();
    let mut cons = timeout(cch.basic_consume(q.as_str().into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    assert!(next_delivery(&mut cons, WAIT).await.is_some());
    assert!(next_delivery(&mut cons, WAIT).await.is_some());
    let d = qdeclare(&ch, &q, Default::default(), FieldTable::default()).await.unwrap();
    assert_eq!((d.message_count(), d.consumer_count()), (2, 1));
    // Closing the consumer's channel returns its two messages.
    timeout(cch.close(200, "OK".into())).await.unwrap();
    let d = qdeclare(&ch, &q, passive(), FieldTable::default()).await.unwrap();
    assert_eq!((d.message_count(), d.consumer_count()), (4, 0));
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn server_named_queues_are_amq_gen() {
    let b = TestBroker::start().await;
    let (_c, ch) = b.channel().await;
    let a = temp_queue(&ch).await;
    let c = temp_queue(&ch).await;
    for n in [&a, &c] {
        assert!(n.starts_with("amq.gen-"), "{n}");
        assert_eq!(n.len(), "amq.gen-".len() + 22, "{n}");
        assert!(n["amq.gen-".len()..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{n}");
    }
    assert_ne!(a, c);
    // Reachable through the default exchange by name.
    let cch = confirm_channel(&_c).await;
    publish_c(&cch, "", &a, b"x", Default::default()).await;
    assert_eq!(drain(&cch, &a).await, vec!["x"]);
    b.stop().await;
}

#[tokio::test]
async fn reserved_prefix_for_queues_is_403() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.channel().await;
    let n = format!("amq.{}", uniq("q"));
    let r = qdeclare(&ch, &n, Default::default(), FieldTable::default()).await;
    assert_amqp_err(r, 403, &format!("ACCESS_REFUSED - queue name '{n}' contains reserved prefix 'amq.*'"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = qdeclare(&ch, &n, passive(), FieldTable::default()).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no queue '{n}' in vhost '/'"));
    b.stop().await;
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection() {
    let b = TestBroker::start().await;
    let (conn_a, ch_a) = b.channel().await;
    let q = uniq("excl");
    qdeclare(&ch_a, &q, QueueDeclareOptions::exclusive(), FieldTable::default()).await.unwrap();
    let locked = format!(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
    );
    let conn_b = b.connect().await;
    let ch = timeout(conn_b.create_channel()).await.unwrap();
    assert_amqp_err(qdeclare(&ch, &q, passive(), FieldTable::default()).await, 405, &locked);
    let ch = timeout(conn_b.create_channel()).await.unwrap();
    assert_amqp_err(qdeclare(&ch, &q, QueueDeclareOptions::exclusive(), FieldTable::default()).await, 405, &locked);
    let ch = timeout(conn_b.create_channel()).await.unwrap();
    assert_amqp_err(timeout(ch.basic_get(q.as_str().into(), Default::default())).await, 405, &locked);
    let ch = timeout(conn_b.create_channel()).await.unwrap();
    assert_amqp_err(
        timeout(ch.basic_consume(q.as_str().into(), "".into(), Default::default(), FieldTable::default())).await,
        405,
        &locked,
    );
    let ch = timeout(conn_b.create_channel()).await.unwrap();
    assert_amqp_err(timeout(ch.queue_purge(q.as_str().into(), Default::default())).await, 405, &locked);
    let ch = timeout(conn_b.create_channel()).await.unwrap();
    assert_amqp_err(timeout(ch.queue_delete(q.as_str().into(), Default::default())).await, 405, &locked);
    // Publishing to it from another connection works.
    let ch = confirm_channel(&conn_b).await;
    publish_c(&ch, "", &q, b"from-b", Default::default()).await;
    // Same connection, non-exclusive redeclare: exclusive differs -> 405 as well.
    let ch2 = timeout(conn_a.create_channel()).await.unwrap();
    assert_amqp_err(qdeclare(&ch2, &q, Default::default(), FieldTable::default()).await, 405, &locked);
    // The queue survives its declaring channel.
    timeout(ch_a.close(200, "OK".into())).await.unwrap();
    let ch3 = timeout(conn_a.create_channel()).await.unwrap();
    assert_eq!(drain(&ch3, &q).await, vec!["from-b"]);
    // ... and is deleted with its connection.
    timeout(conn_a.close(200, "OK".into())).await.unwrap();
    let chb = timeout(conn_b.create_channel()).await.unwrap();
    let mut gone = false;
    for _ in 0..20 {
        let c = timeout(conn_b.create_channel()).await.unwrap();
        match qdeclare(&c, &q, passive(), FieldTable::default()).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                assert_eq!(amqp_error(&e), Some((404, format!("NOT_FOUND - no queue '{q}' in vhost '/'"))));
                gone = true;
                break;
            }
        }
    }
    assert!(gone, "exclusive queue must be deleted when its connection closes");
    let _ = chb;
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_when_last_consumer_cancels() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.channel().await;
    let q = uniq("autodel");
    let ad = QueueDeclareOptions { auto_delete: true, ..Default::default() };
    qdeclare(&ch, &q, ad, FieldTable::default()).await.unwrap();
    // Never consumed: stays.
    tokio::time::sleep(Duration::from_millis(200)).await;
    qdeclare(&ch, &q, passive(), FieldTable::default()).await.unwrap();
    let c1 = timeout(ch.basic_consume(q.as_str().into(), "c1".into(), Default::default(), FieldTable::default())).await.unwrap();
    let c2 = timeout(ch.basic_consume(q.as_str().into(), "c2".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.basic_cancel(c1.tag(), Default::default())).await.unwrap();
    let d = qdeclare(&ch, &q, passive(), FieldTable::default()).await.unwrap();
    assert_eq!(d.consumer_count(), 1);
    timeout(ch.basic_cancel(c2.tag(), Default::default())).await.unwrap();
    let r = qdeclare(&ch, &q, passive(), FieldTable::default()).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
    // Also when the consumer's channel closes.
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q2 = uniq("autodel2");
    qdeclare(&ch, &q2, ad, FieldTable::default()).await.unwrap();
    let cch = timeout(conn.create_channel()).await.unwrap();
    let _c = timeout(cch.basic_consume(q2.as_str().into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(cch.close(200, "OK".into())).await.unwrap();
    let r = qdeclare(&ch, &q2, passive(), FieldTable::default()).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no queue '{q2}' in vhost '/'"));
    b.stop().await;
}

#[tokio::test]
async fn equivalence_errors_are_406() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let q = uniq("qeq");
    let ch = timeout(conn.create_channel()).await.unwrap();
    qdeclare(&ch, &q, Default::default(), FieldTable::default()).await.unwrap();
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(
        qdeclare(&ch, &q, QueueDeclareOptions::durable(), FieldTable::default()).await,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"),
    );
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(
        qdeclare(&ch, &q, QueueDeclareOptions { auto_delete: true, ..Default::default() }, FieldTable::default()).await,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '{q}' in vhost '/': received 'true' but current is 'false'"),
    );
    let ttl = |v: i32| ft(&[("x-message-ttl", AMQPValue::LongInt(v))]);
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(
        qdeclare(&ch, &q, Default::default(), ttl(2000)).await,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received the value '2000' of type 'signedint' but current is none"),
    );
    // A queue declared with the argument.
    let q2 = uniq("qeq-ttl");
    let ch = timeout(conn.create_channel()).await.unwrap();
    qdeclare(&ch, &q2, Default::default(), ttl(1000)).await.unwrap();
    qdeclare(&ch, &q2, Default::default(), ttl(1000)).await.unwrap();
    assert_amqp_err(
        qdeclare(&ch, &q2, Default::default(), ttl(2000)).await,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q2}' in vhost '/': received '2000' but current is '1000'"),
    );
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(
        qdeclare(&ch, &q2, Default::default(), FieldTable::default()).await,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q2}' in vhost '/': received none but current is the value '1000' of type 'signedint'"),
    );
    // Passive declares ignore flags and arguments.
    let ch = timeout(conn.create_channel()).await.unwrap();
    qdeclare(&ch, &q2, QueueDeclareOptions { passive: true, durable: true, ..Default::default() }, FieldTable::default()).await.unwrap();
    for n in [&q, &q2] {
        timeout(ch.queue_delete(n.as_str().into(), Default::default())).await.unwrap();
    }
    b.stop().await;
}

#[tokio::test]
async fn bind_and_unbind() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    let rk = uniq("rk");
    timeout(ch.queue_bind(q.as_str().into(), "amq.direct".into(), rk.as_str().into(), Default::default(), FieldTable::default())).await.unwrap();
    // Binding twice is idempotent: still one copy.
    timeout(ch.queue_bind(q.as_str().into(), "amq.direct".into(), rk.as_str().into(), Default::default(), FieldTable::default())).await.unwrap();
    publish_c(&ch, "amq.direct", &rk, b"bound", Default::default()).await;
    assert_eq!(drain(&ch, &q).await, vec!["bound"]);
    timeout(ch.queue_unbind(q.as_str().into(), "amq.direct".into(), rk.as_str().into(), FieldTable::default())).await.unwrap();
    publish_c(&ch, "amq.direct", &rk, b"unbound", Default::default()).await;
    assert!(drain(&ch, &q).await.is_empty());
    // Unbinding a missing binding is ok.
    timeout(ch.queue_unbind(q.as_str().into(), "amq.direct".into(), "never".into(), FieldTable::default())).await.unwrap();
    // Missing queue / exchange -> 404.
    let missing_q = uniq("nope-q");
    let r = timeout(ch.queue_bind(missing_q.as_str().into(), "amq.direct".into(), "k".into(), Default::default(), FieldTable::default())).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no queue '{missing_q}' in vhost '/'"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let missing_x = uniq("nope-x");
    let r = timeout(ch.queue_bind(q.as_str().into(), missing_x.as_str().into(), "k".into(), Default::default(), FieldTable::default())).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no exchange '{missing_x}' in vhost '/'"));
    b.stop().await;
}

#[tokio::test]
async fn purge_returns_count() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    for _ in 0..3 {
        publish_c(&ch, "", &q, b"p", Default::default()).await;
    }
    let n = timeout(ch.queue_purge(q.as_str().into(), Default::default())).await.unwrap();
    assert_eq!(n, 3);
    assert!(drain(&ch, &q).await.is_empty());
    let n = timeout(ch.queue_purge(q.as_str().into(), Default::default())).await.unwrap();
    assert_eq!(n, 0);
    let missing = uniq("nope");
    let r = timeout(ch.queue_purge(missing.as_str().into(), Default::default())).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no queue '{missing}' in vhost '/'"));
    b.stop().await;
}

#[tokio::test]
async fn delete_if_empty_if_unused_and_idempotent() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("qdel");
    named_queue(&ch, &q).await;
    publish_c(&ch, "", &q, b"m", Default::default()).await;
    let r = timeout(ch.queue_delete(q.as_str().into(), QueueDeleteOptions { if_empty: true, ..Default::default() })).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let _c = timeout(ch.basic_consume(q.as_str().into(), "".into(), BasicConsumeOptions { no_ack: false, ..Default::default() }, FieldTable::default())).await.unwrap();
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch2.queue_delete(q.as_str().into(), QueueDeleteOptions { if_unused: true, ..Default::default() })).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"));
    timeout(ch.close(200, "OK".into())).await.unwrap();
    let ch = confirm_channel(&conn).await;
    publish_c(&ch, "", &q, b"m2", Default::default()).await;
    let n = timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    assert_eq!(n, 2, "delete-ok counts the messages");
    let n = timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    assert_eq!(n, 0, "deleting a missing queue is ok with count 0");
    // Empty and unused: both flags pass.
    named_queue(&ch, &q).await;
    let n = timeout(ch.queue_delete(q.as_str().into(), QueueDeleteOptions { if_empty: true, if_unused: true, ..Default::default() })).await.unwrap();
    assert_eq!(n, 0);
    b.stop().await;
}

#[tokio::test]
async fn passive_declare_of_missing_queue_is_404() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.channel().await;
    let q = uniq("nope");
    let r = qdeclare(&ch, &q, passive(), FieldTable::default()).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
    assert!(conn.status().connected());
    b.stop().await;
}

#[tokio::test]
async fn deleting_a_consumed_queue_cancels_the_consumer() {
    let b = TestBroker::start().await;
    // lapin advertises consumer_cancel_notify: its consumer stream ends.
    let (conn_a, ch_a) = b.channel().await;
    let q = uniq("cancelled");
    named_queue(&ch_a, &q).await;
    let mut cons = timeout(ch_a.basic_consume(q.as_str().into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    let (_conn_b, ch_b) = b.channel().await;
    timeout(ch_b.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    use futures_lite::StreamExt;
    let end = tokio::time::timeout(WAIT, cons.next()).await.expect("consumer stream must end after basic.cancel");
    assert!(end.is_none(), "expected the consumer stream to end, got {end:?}");
    // The channel itself stays open.
    assert_channel_ok(&ch_a).await;
    assert!(conn_a.status().connected());

    // Raw: the server sends basic.cancel(tag, nowait=true).
    let mut raw = b.raw_open().await;
    let q2 = uniq("cancelled-raw");
    named_queue(&ch_b, &q2).await;
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: q2.as_str().into(),
            consumer_tag: "raw-tag".into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    match raw.expect_method().await {
        (1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok))) => assert_eq!(ok.consumer_tag.as_str(), "raw-tag"),
        other => panic!("expected consume-ok, got {other:?}"),
    }
    timeout(ch_b.queue_delete(q2.as_str().into(), Default::default())).await.unwrap();
    match raw.expect_method().await {
        (1, AMQPClass::Basic(basic::AMQPMethod::Cancel(c))) => {
            assert_eq!(c.consumer_tag.as_str(), "raw-tag");
            assert!(c.nowait);
        }
        other => panic!("expected basic.cancel, got {other:?}"),
    }
    // Raw: declare through the raw client still works on the same channel.
    raw.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "".into(),
            passive: false,
            durable: false,
            exclusive: true,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    match raw.expect_method().await {
        (1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))) => {}
        other => panic!("expected declare-ok, got {other:?}"),
    }
    b.stop().await;
}

/// Hundreds of durable declares pipelined on one channel: each waits for its store commit on
/// the connection's thread. The wait used to run inside tokio's cooperative budget, which the
/// connection task had used up after ~128 of them: the oneshot then deferred its wake-up to a
/// yield that never came, and the connection (and the worker thread under it) hung for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_durable_declares_all_answered() {
    let b = TestBroker::start().await;
    let mut c = b.raw_open().await;
    let prefix = uniq("pipelined-durable");
    let n = 600;
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(method_frame(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: format!("{prefix}-{i}").into(),
                durable: true,
                ..Default::default()
            })),
        ));
    }
    c.send(&bytes).await;
    for i in 0..n {
        match c.read_method(Duration::from_secs(30)).await {
            Ok((1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))) => {
                assert_eq!(ok.queue.as_str(), format!("{prefix}-{i}"))
            }
            other => panic!("declare {i} of {n}: {other:?}"),
        }
    }
    let (_conn, ch) = b.channel().await;
    for i in 0..n {
        timeout(ch.queue_delete(format!("{prefix}-{i}").as_str().into(), Default::default())).await.unwrap();
    }
}

/// The default exchange routes by the queue's name to whichever queue has it now: after a
/// delete (from another connection) and a new declare of the name, messages go to the new
/// queue (even while the old one is kept alive by an unacknowledged delivery); while it is gone
/// they are dropped; alternating between two queues keeps each one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_exchange_follows_a_queue_deleted_and_declared_again() {
    let b = TestBroker::start().await;
    let (conn, other) = (b.connect().await, b.connect().await);
    let ch = confirm_channel(&conn).await;
    let admin = timeout(other.create_channel()).await.unwrap();
    let (q, q2) = (uniq("again"), uniq("again-other"));
    let get = |ch: lapin::Channel, q: String| async move {
        let mut got = Vec::new();
        while let Some(m) = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap() {
            got.push(String::from_utf8(m.delivery.data.clone()).unwrap());
        }
        got
    };
    for round in 0..3 {
        qdeclare(&admin, &q, Default::default(), FieldTable::default()).await.unwrap();
        qdeclare(&admin, &q2, Default::default(), FieldTable::default()).await.unwrap();
        for i in 0..4 {
            let to = if i % 2 == 0 { &q } else { &q2 };
            publish_c(&ch, "", to, format!("r{round}-{i}").as_bytes(), Default::default()).await;
        }
        assert_eq!(get(ch.clone(), q.clone()).await, [format!("r{round}-0"), format!("r{round}-2")]);
        assert_eq!(get(ch.clone(), q2.clone()).await, [format!("r{round}-1"), format!("r{round}-3")]);
        // A delivery left unacknowledged keeps the deleted queue alive in the broker.
        let held = timeout(admin.basic_get(q.as_str().into(), BasicGetOptions::default()));
        publish_c(&ch, "", &q, b"held", Default::default()).await;
        assert!(held.await.unwrap().is_some());
        timeout(admin.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
        // Gone: dropped, not kept anywhere.
        publish_c(&ch, "", &q, b"dropped", Default::default()).await;
    }
    qdeclare(&admin, &q, Default::default(), FieldTable::default()).await.unwrap();
    assert!(get(ch.clone(), q.clone()).await.is_empty());
}
