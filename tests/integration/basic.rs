//! basic.*: publish/consume/get, acks, qos, requeue on close, returns, large bodies and
//! properties round-trips.
use crate::common;
use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, basic};
use amq_protocol::types::{AMQPValue, ByteArray, DecimalValue, FieldArray};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use std::time::Duration;

async fn consume(ch: &lapin::Channel, q: &str, tag: &str, no_ack: bool) -> lapin::Consumer {
    timeout(ch.basic_consume(q.into(), tag.into(), BasicConsumeOptions { no_ack, ..Default::default() }, FieldTable::default()))
        .await
        .expect("basic.consume")
}

fn body(d: &lapin::message::Delivery) -> String {
    String::from_utf8_lossy(&d.data).to_string()
}

/// Collects deliveries until `QUIET` passes without one.
async fn collect(c: &mut lapin::Consumer) -> Vec<lapin::message::Delivery> {
    let mut v = Vec::new();
    while let Some(d) = next_delivery(c, QUIET).await {
        v.push(d);
    }
    v
}

async fn get(ch: &lapin::Channel, q: &str) -> Option<lapin::message::BasicGetMessage> {
    timeout(ch.basic_get(q.into(), BasicGetOptions { no_ack: false })).await.expect("basic.get")
}

#[tokio::test]
async fn publish_consume_roundtrip() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let pch = confirm_channel(&conn).await;
    let q = temp_queue(&pch).await;
    let rk = uniq("rk");
    timeout(pch.queue_bind(q.as_str().into(), "amq.direct".into(), rk.as_str().into(), Default::default(), FieldTable::default())).await.unwrap();
    let ch = timeout(conn.create_channel()).await.unwrap();
    let mut c = consume(&ch, &q, "", false).await;
    for i in 0..5 {
        publish_c(&pch, "amq.direct", &rk, format!("m{i}").as_bytes(), Default::default()).await;
    }
    let mut tags = Vec::new();
    for i in 0..5 {
        let d = next_delivery(&mut c, WAIT).await.expect("delivery");
        assert_eq!(body(&d), format!("m{i}"));
        assert_eq!(d.exchange.as_str(), "amq.direct");
        assert_eq!(d.routing_key.as_str(), rk);
        assert!(!d.redelivered);
        tags.push(d.delivery_tag);
        timeout(d.acker.ack(Default::default())).await.unwrap();
    }
    assert_eq!(tags, vec![1, 2, 3, 4, 5], "delivery tags count from 1 per channel");
    // no-ack consumer: messages are gone once delivered.
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.basic_cancel(c.tag(), Default::default())).await.unwrap();
    let mut c2 = consume(&ch2, &q, "noack", true).await;
    publish_c(&pch, "", &q, b"auto", Default::default()).await;
    let d = next_delivery(&mut c2, WAIT).await.unwrap();
    assert_eq!(body(&d), "auto");
    timeout(ch2.close(200, "OK".into())).await.unwrap();
    assert!(drain(&pch, &q).await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn server_generated_consumer_tags() {
    let b = TestBroker::start().await;
    let (_conn, ch) = b.channel().await;
    let q = temp_queue(&ch).await;
    let c1 = consume(&ch, &q, "", false).await;
    let c2 = consume(&ch, &q, "", false).await;
    for t in [c1.tag(), c2.tag()] {
        let t = t.to_string();
        assert!(t.starts_with("amq.ctag-"), "{t}");
        assert_eq!(t.len(), "amq.ctag-".len() + 22, "{t}");
    }
    assert_ne!(c1.tag(), c2.tag());
    b.stop().await;
}

#[tokio::test]
async fn exclusive_consumer_conflicts_are_403() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = uniq("exclcons");
    named_queue(&ch, &q).await;
    let text = format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use");
    let excl = BasicConsumeOptions { exclusive: true, ..Default::default() };
    let _c = timeout(ch.basic_consume(q.as_str().into(), "".into(), excl, FieldTable::default())).await.unwrap();
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch2.basic_consume(q.as_str().into(), "".into(), Default::default(), FieldTable::default())).await;
    assert_amqp_err(r, 403, &text);
    timeout(ch.close(200, "OK".into())).await.unwrap();
    // The other way round: a consumer exists, an exclusive one is refused.
    let ch = timeout(conn.create_channel()).await.unwrap();
    let _c = consume(&ch, &q, "", false).await;
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch2.basic_consume(q.as_str().into(), "".into(), excl, FieldTable::default())).await;
    assert_amqp_err(r, 403, &text);
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn consumer_tag_reuse_on_a_channel_is_530() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = temp_queue(&ch).await;
    let _c = consume(&ch, &q, "t1", false).await;
    // The same tag on another channel is fine.
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    let _c2 = consume(&ch2, &q, "t1", false).await;
    let r = timeout(ch.basic_consume(q.as_str().into(), "t1".into(), Default::default(), FieldTable::default())).await;
    assert_amqp_err(r, 530, "NOT_ALLOWED - attempt to reuse consumer tag 't1'");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!conn.status().connected(), "530 closes the connection");
    b.stop().await;
}

#[tokio::test]
async fn cancel_stops_deliveries() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let pch = confirm_channel(&conn).await;
    let q = temp_queue(&pch).await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let mut c = consume(&ch, &q, "ctag", true).await;
    publish_c(&pch, "", &q, b"before", Default::default()).await;
    assert_eq!(body(&next_delivery(&mut c, WAIT).await.unwrap()), "before");
    timeout(ch.basic_cancel("ctag".into(), Default::default())).await.unwrap();
    publish_c(&pch, "", &q, b"after", Default::default()).await;
    assert!(next_delivery(&mut c, QUIET).await.is_none());
    assert_eq!(drain(&pch, &q).await, vec!["after"]);
    // Cancelling an unknown tag is ok.
    timeout(ch.basic_cancel("never-existed".into(), Default::default())).await.unwrap();
    assert_channel_ok(&ch).await;
    b.stop().await;
}

#[tokio::test]
async fn get_and_get_empty() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    assert!(get(&ch, &q).await.is_none(), "empty queue -> get-empty");
    for i in 0..3 {
        publish_c(&ch, "", &q, format!("g{i}").as_bytes(), Default::default()).await;
    }
    let m = get(&ch, &q).await.unwrap();
    assert_eq!((body(&m.delivery), m.message_count, m.delivery.redelivered), ("g0".into(), 2, false));
    assert_eq!(m.delivery.exchange.as_str(), "");
    assert_eq!(m.delivery.routing_key.as_str(), q);
    let t1 = m.delivery.delivery_tag;
    let m = get(&ch, &q).await.unwrap();
    assert_eq!((body(&m.delivery), m.message_count), ("g1".into(), 1));
    assert_eq!(m.delivery.delivery_tag, t1 + 1);
    timeout(ch.basic_ack(0, BasicAckOptions { multiple: true })).await.unwrap();
    let m = get(&ch, &q).await.unwrap();
    assert_eq!((body(&m.delivery), m.message_count), ("g2".into(), 0));
    timeout(m.delivery.acker.ack(Default::default())).await.unwrap();
    assert!(get(&ch, &q).await.is_none());
    let missing = uniq("nope");
    let r = timeout(ch.basic_get(missing.as_str().into(), Default::default())).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no queue '{missing}' in vhost '/'"));
    b.stop().await;
}

#[tokio::test]
async fn ack_nack_reject_with_multiple_and_requeue() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    for i in 1..=5 {
        publish_c(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
    }
    // Take m1..m3; nack m2 then m1 (requeue): they go back to their original positions.
    let m1 = get(&ch, &q).await.unwrap();
    let m2 = get(&ch, &q).await.unwrap();
    let m3 = get(&ch, &q).await.unwrap();
    timeout(ch.basic_nack(m2.delivery.delivery_tag, BasicNackOptions { multiple: false, requeue: true })).await.unwrap();
    timeout(ch.basic_nack(m1.delivery.delivery_tag, BasicNackOptions { multiple: false, requeue: true })).await.unwrap();
    let mut seen = Vec::new();
    let mut tags = Vec::new();
    for _ in 0..4 {
        let m = get(&ch, &q).await.unwrap();
        seen.push((body(&m.delivery), m.delivery.redelivered));
        tags.push(m.delivery.delivery_tag);
    }
    assert_eq!(
        seen,
        vec![("m1".into(), true), ("m2".into(), true), ("m4".into(), false), ("m5".into(), false)]
    );
    // ack multiple up to the 2nd of those (also acks m3, which has a lower tag).
    timeout(ch.basic_ack(tags[1], BasicAckOptions { multiple: true })).await.unwrap();
    // nack multiple with requeue the rest (m4, m5).
    timeout(ch.basic_nack(tags[3], BasicNackOptions { multiple: true, requeue: true })).await.unwrap();
    let _ = m3;
    let m4 = get(&ch, &q).await.unwrap();
    let m5 = get(&ch, &q).await.unwrap();
    assert_eq!((body(&m4.delivery), m4.delivery.redelivered), ("m4".into(), true));
    assert_eq!((body(&m5.delivery), m5.delivery.redelivered), ("m5".into(), true));
    assert!(get(&ch, &q).await.is_none());
    // reject requeue=true returns it; reject requeue=false drops it.
    timeout(ch.basic_reject(m4.delivery.delivery_tag, BasicRejectOptions { requeue: true })).await.unwrap();
    timeout(ch.basic_reject(m5.delivery.delivery_tag, BasicRejectOptions { requeue: false })).await.unwrap();
    let m = get(&ch, &q).await.unwrap();
    assert_eq!((body(&m.delivery), m.delivery.redelivered), ("m4".into(), true));
    // nack without requeue drops.
    timeout(ch.basic_nack(m.delivery.delivery_tag, BasicNackOptions { multiple: false, requeue: false })).await.unwrap();
    assert!(get(&ch, &q).await.is_none());
    assert_channel_ok(&ch).await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_delivery_tag_is_406() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let (code, text) = error_after(&ch, ch.basic_ack(99, Default::default())).await;
    assert_eq!((code, text.as_str()), (406, "PRECONDITION_FAILED - unknown delivery tag 99"));
    assert!(conn.status().connected(), "406 is a channel error");
    // Double ack.
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    publish_c(&ch, "", &q, b"x", Default::default()).await;
    let m = get(&ch, &q).await.unwrap();
    let tag = m.delivery.delivery_tag;
    timeout(ch.basic_ack(tag, Default::default())).await.unwrap();
    let (code, text) = error_after(&ch, ch.basic_ack(tag, Default::default())).await;
    assert_eq!((code, text), (406, format!("PRECONDITION_FAILED - unknown delivery tag {tag}")));
    // reject / nack of unknown tags too.
    let ch = timeout(conn.create_channel()).await.unwrap();
    let (code, text) = error_after(&ch, ch.basic_reject(7, Default::default())).await;
    assert_eq!((code, text.as_str()), (406, "PRECONDITION_FAILED - unknown delivery tag 7"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let (code, text) = error_after(&ch, ch.basic_nack(8, Default::default())).await;
    assert_eq!((code, text.as_str()), (406, "PRECONDITION_FAILED - unknown delivery tag 8"));
    // ack(0, multiple) with nothing pending is fine.
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.basic_ack(0, BasicAckOptions { multiple: true })).await.unwrap();
    assert_channel_ok(&ch).await;
    b.stop().await;
}

#[tokio::test]
async fn recover_requeues_and_redelivers() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let pch = confirm_channel(&conn).await;
    let q = temp_queue(&pch).await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let mut c = consume(&ch, &q, "", false).await;
    publish_c(&pch, "", &q, b"r1", Default::default()).await;
    publish_c(&pch, "", &q, b"r2", Default::default()).await;
    let first = collect(&mut c).await;
    assert_eq!(first.iter().map(body).collect::<Vec<_>>(), vec!["r1", "r2"]);
    assert!(first.iter().all(|d| !d.redelivered));
    timeout(ch.basic_recover(BasicRecoverOptions { requeue: true })).await.unwrap();
    let again = collect(&mut c).await;
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), vec!["r1", "r2"]);
    assert!(again.iter().all(|d| d.redelivered), "recovered messages are flagged redelivered");
    for d in &again {
        timeout(d.acker.ack(Default::default())).await.unwrap();
    }
    // recover(requeue=false) is not implemented by RabbitMQ: connection error.
    let r = timeout(ch.basic_recover(BasicRecoverOptions { requeue: false })).await;
    assert_amqp_err(r, 540, "NOT_IMPLEMENTED - requeue=false");
    b.stop().await;
}

#[tokio::test]
async fn qos_prefetch_per_consumer() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let pch = confirm_channel(&conn).await;
    let q = temp_queue(&pch).await;
    for i in 0..6 {
        publish_c(&pch, "", &q, format!("p{i}").as_bytes(), Default::default()).await;
    }
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.basic_qos(2, BasicQosOptions { global: false })).await.unwrap();
    let mut c1 = consume(&ch, &q, "c1", false).await;
    let got = collect(&mut c1).await;
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), vec!["p0", "p1"], "prefetch 2 -> 2 unacked");
    // The limit is per consumer: a second consumer gets two more.
    let mut c2 = consume(&ch, &q, "c2", false).await;
    let got2 = collect(&mut c2).await;
    assert_eq!(got2.len(), 2);
    // Acking one frees one slot.
    timeout(got[0].acker.ack(Default::default())).await.unwrap();
    let more = collect(&mut c1).await;
    assert_eq!(more.len(), 1);
    assert_eq!(body(&more[0]), "p4");
    b.stop().await;
}

#[tokio::test]
async fn qos_prefetch_global_is_shared_by_the_channel() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let pch = confirm_channel(&conn).await;
    let q = temp_queue(&pch).await;
    for i in 0..6 {
        publish_c(&pch, "", &q, format!("p{i}").as_bytes(), Default::default()).await;
    }
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.basic_qos(2, BasicQosOptions { global: true })).await.unwrap();
    let mut c1 = consume(&ch, &q, "c1", false).await;
    let mut c2 = consume(&ch, &q, "c2", false).await;
    tokio::time::sleep(QUIET).await;
    let a = collect(&mut c1).await;
    let b2 = collect(&mut c2).await;
    assert_eq!(a.len() + b2.len(), 2, "global prefetch 2 over two consumers");
    let one = a.first().or(b2.first()).unwrap();
    timeout(one.acker.ack(Default::default())).await.unwrap();
    tokio::time::sleep(QUIET).await;
    let a = collect(&mut c1).await;
    let b3 = collect(&mut c2).await;
    assert_eq!(a.len() + b3.len(), 1, "one ack frees one slot");
    b.stop().await;
}

#[tokio::test]
async fn qos_prefetch_size_is_540() {
    let b = TestBroker::start().await;
    let mut raw = b.raw_open().await;
    // amq-protocol always encodes prefetch_size 0, so build basic.qos by hand:
    // class 60, method 10, prefetch_size=1 (u32), prefetch_count=0 (u16), global=0.
    let payload = [0, 60, 0, 10, 0, 0, 0, 1, 0, 0, 0];
    raw.send(&raw_frame(1, 1, &payload, 0xCE)).await;
    let (code, text, class, method) = raw.expect_connection_close().await;
    assert_eq!((code, text.as_str(), class, method), (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1)", 60, 10));
    b.stop().await;
}

async fn unacked_setup(b: &TestBroker) -> (lapin::Connection, lapin::Channel, String) {
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("unacked");
    named_queue(&ch, &q).await;
    for i in 1..=4 {
        publish_c(&ch, "", &q, format!("u{i}").as_bytes(), Default::default()).await;
    }
    (conn, ch, q)
}

#[tokio::test]
async fn unacked_messages_return_in_order_when_channel_closes() {
    let b = TestBroker::start().await;
    let (conn, _pch, q) = unacked_setup(&b).await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let mut c = consume(&ch, &q, "", false).await;
    let got = collect(&mut c).await;
    assert_eq!(got.len(), 4);
    timeout(got[1].acker.ack(Default::default())).await.unwrap(); // u2 acked
    timeout(ch.close(200, "OK".into())).await.unwrap();
    let ch = timeout(conn.create_channel()).await.unwrap();
    let mut seen = Vec::new();
    while let Some(m) = get(&ch, &q).await {
        seen.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(seen, vec![("u1".into(), true), ("u3".into(), true), ("u4".into(), true)]);
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn unacked_messages_return_in_order_when_connection_closes() {
    let b = TestBroker::start().await;
    let (conn, pch, q) = unacked_setup(&b).await;
    let conn2 = b.connect().await;
    let ch = timeout(conn2.create_channel()).await.unwrap();
    let m1 = get(&ch, &q).await.unwrap();
    let _m2 = get(&ch, &q).await.unwrap();
    let _m3 = get(&ch, &q).await.unwrap();
    timeout(m1.delivery.acker.ack(Default::default())).await.unwrap();
    timeout(conn2.close(200, "OK".into())).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.clear();
        let d = timeout(pch.queue_declare(q.as_str().into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())).await.unwrap();
        if d.message_count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Some(m) = get(&pch, &q).await {
        seen.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(seen, vec![("u2".into(), true), ("u3".into(), true), ("u4".into(), false)]);
    timeout(pch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    let _ = conn;
    b.stop().await;
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_312() {
    let b = TestBroker::start().await;
    let mut raw = b.raw_open().await;
    let rk = uniq("nobody");
    let mut out = method_frame(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "amq.direct".into(),
            routing_key: rk.as_str().into(),
            mandatory: true,
            immediate: false,
        })),
    );
    let props = basic::AMQPProperties::default().with_message_id("mid-1".into());
    out.extend(encode(&AMQPFrame::Header(1, AMQPContentHeader { class_id: 60, body_size: 5, properties: props.clone() })));
    out.extend(encode(&AMQPFrame::Body(1, b"hello".to_vec())));
    raw.send(&out).await;
    match raw.expect_method().await {
        (1, AMQPClass::Basic(basic::AMQPMethod::Return(r))) => {
            assert_eq!(r.reply_code, 312);
            assert_eq!(r.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(r.exchange.as_str(), "amq.direct");
            assert_eq!(r.routing_key.as_str(), rk);
        }
        other => panic!("expected basic.return, got {other:?}"),
    }
    match raw.read_frame(WAIT).await {
        Ok(AMQPFrame::Header(1, h)) => {
            assert_eq!(h.body_size, 5);
            assert_eq!(h.properties, props);
        }
        other => panic!("expected content header, got {other:?}"),
    }
    match raw.read_frame(WAIT).await {
        Ok(AMQPFrame::Body(1, body)) => assert_eq!(body, b"hello"),
        other => panic!("expected body, got {other:?}"),
    }
    // Non-mandatory unroutable: silently dropped, nothing comes back.
    raw.publish(1, "amq.direct", &rk, Default::default(), b"dropped").await;
    assert!(matches!(raw.read_frame(QUIET).await, Err(ReadError::Timeout)));
    // lapin (with confirms) sees the return too.
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let conf = timeout(ch.basic_publish("amq.direct".into(), rk.as_str().into(), BasicPublishOptions { mandatory: true, ..Default::default() }, b"x", Default::default()))
        .await
        .unwrap();
    let conf = timeout(conf).await.unwrap();
    assert!(conf.is_ack(), "unroutable messages are still acked");
    let ret = conf.take_message().expect("returned message");
    assert_eq!((ret.reply_code, ret.reply_text.as_str()), (312, "NO_ROUTE"));
    assert_eq!(ret.delivery.data, b"x");
    b.stop().await;
}

#[tokio::test]
async fn immediate_publish_is_540() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.channel().await;
    let q = temp_queue(&ch).await;
    let pubf = ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions { immediate: true, ..Default::default() }, b"now", Default::default());
    let (code, text) = error_after(&ch, pubf).await;
    assert_eq!((code, text.as_str()), (540, "NOT_IMPLEMENTED - immediate=true"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!conn.status().connected(), "540 closes the connection");
    b.stop().await;
}

#[tokio::test]
async fn large_and_empty_bodies_roundtrip() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("bodies");
    named_queue(&ch, &q).await;
    let sizes = [0usize, 1, 131_064, 131_065, 300 * 1024, 1 << 20];
    let bodies: Vec<Vec<u8>> = sizes.iter().map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect()).collect();
    for bd in &bodies {
        publish_c(&ch, "", &q, bd, Default::default()).await;
    }
    let cch = timeout(conn.create_channel()).await.unwrap();
    let mut c = consume(&cch, &q, "", true).await;
    for (n, bd) in sizes.iter().zip(&bodies) {
        let d = next_delivery(&mut c, WAIT).await.unwrap_or_else(|| panic!("no delivery for size {n}"));
        assert_eq!(d.data.len(), *n);
        assert!(d.data == *bd, "body of {n} bytes differs");
    }
    timeout(cch.basic_cancel(c.tag(), Default::default())).await.unwrap();
    // Raw client: a 300 KiB body arrives split into frames no larger than frame_max.
    let mut raw = b.raw_open().await;
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    raw.publish(1, "", &q, Default::default(), &big).await;
    raw.send_method(1, AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: q.as_str().into(), no_ack: true }))).await;
    match raw.expect_method().await {
        (1, AMQPClass::Basic(basic::AMQPMethod::GetOk(_))) => {}
        other => panic!("expected get-ok, got {other:?}"),
    }
    let h = raw.read_raw_frame(WAIT).await.unwrap();
    assert_eq!(h.frame_type, 2);
    let mut got = Vec::new();
    while got.len() < big.len() {
        let f = raw.read_raw_frame(WAIT).await.unwrap();
        assert_eq!((f.frame_type, f.channel), (3, 1));
        assert!(f.payload.len() <= 131_072 - 8, "body frame of {} bytes exceeds frame_max", f.payload.len());
        got.extend(f.payload);
    }
    assert!(got == big);
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

fn all_types_table() -> FieldTable {
    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongString("deep".into()));
    nested.insert("n".into(), AMQPValue::LongInt(-7));
    let mut deeper = FieldTable::default();
    deeper.insert("t".into(), AMQPValue::FieldTable(nested.clone()));
    let array = FieldArray::from(vec![
        AMQPValue::LongInt(1),
        AMQPValue::LongString("two".into()),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Boolean(false)])),
        AMQPValue::FieldTable(nested.clone()),
        AMQPValue::Void,
    ]);
    ft(&[
        ("bool-t", AMQPValue::Boolean(true)),
        ("bool-f", AMQPValue::Boolean(false)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-1600)),
        ("u16", AMQPValue::ShortUInt(60000)),
        ("i32", AMQPValue::LongInt(-320_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-6_400_000_000_000)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25e100)),
        ("decimal", AMQPValue::DecimalValue(DecimalValue { scale: 2, value: 12345 })),
        ("longstr", AMQPValue::LongString("long string ✓".into())),
        ("empty", AMQPValue::LongString("".into())),
        ("array", AMQPValue::FieldArray(array)),
        ("empty-array", AMQPValue::FieldArray(FieldArray::default())),
        ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
        ("table", AMQPValue::FieldTable(nested)),
        ("nested", AMQPValue::FieldTable(deeper)),
        ("bytes", AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255]))),
        ("void", AMQPValue::Void),
    ])
}

fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(all_types_table())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("reply.queue".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_650_000_000)
        .with_type("my.type".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
        .with_cluster_id("cluster-x".into())
}

#[tokio::test]
async fn all_properties_and_header_types_roundtrip() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    let props = all_properties();
    publish_c(&ch, "", &q, b"props", props.clone()).await;
    let cch = timeout(conn.create_channel()).await.unwrap();
    let mut c = consume(&cch, &q, "", true).await;
    let d = next_delivery(&mut c, WAIT).await.unwrap();
    assert_eq!(d.properties, props);
    // Via basic.get as well.
    timeout(cch.basic_cancel(c.tag(), Default::default())).await.unwrap();
    publish_c(&ch, "", &q, b"props", props.clone()).await;
    let m = get(&ch, &q).await.unwrap();
    assert_eq!(m.delivery.properties, props);
    b.stop().await;
}

#[tokio::test]
async fn content_header_bytes_roundtrip_exactly() {
    let b = TestBroker::start().await;
    let mut raw = b.raw_open().await;
    raw.send_method(
        1,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(amq_protocol::protocol::queue::Declare {
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
    let q = match raw.expect_method().await {
        (1, AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::DeclareOk(ok))) => ok.queue.to_string(),
        other => panic!("expected declare-ok, got {other:?}"),
    };
    let header = encode(&AMQPFrame::Header(1, AMQPContentHeader { class_id: 60, body_size: 3, properties: all_properties() }));
    let sent_payload = header[7..header.len() - 1].to_vec();
    let mut out = method_frame(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: q.as_str().into(),
            mandatory: false,
            immediate: false,
        })),
    );
    out.extend(header);
    out.extend(encode(&AMQPFrame::Body(1, b"abc".to_vec())));
    raw.send(&out).await;
    raw.send_method(1, AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: q.as_str().into(), no_ack: true }))).await;
    match raw.expect_method().await {
        (1, AMQPClass::Basic(basic::AMQPMethod::GetOk(_))) => {}
        other => panic!("expected get-ok, got {other:?}"),
    }
    let h = raw.read_raw_frame(WAIT).await.unwrap();
    assert_eq!(h.frame_type, 2);
    assert_eq!(h.payload, sent_payload, "content header must come back byte for byte");
    let body = raw.read_raw_frame(WAIT).await.unwrap();
    assert_eq!((body.frame_type, body.payload.as_slice()), (3, &b"abc"[..]));
    b.stop().await;
}
