//! Publisher confirms and transactions.
use crate::common;
use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, basic, confirm};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;

#[tokio::test]
async fn confirms_ack_every_publish_with_increasing_tags() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.channel().await;
    let q = temp_queue(&ch).await;
    let mut raw = b.raw_open().await;
    raw.send_method(1, AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }))).await;
    match raw.expect_method().await {
        (1, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))) => {}
        other => panic!("expected confirm.select-ok, got {other:?}"),
    }
    for i in 0..20 {
        raw.publish(1, "", &q, Default::default(), format!("c{i}").as_bytes()).await;
    }
    // Acks may be merged (multiple=true) but must cover 1..=20 with increasing tags.
    let mut confirmed = 0u64;
    while confirmed < 20 {
        match raw.expect_method().await {
            (1, AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
                assert!(a.delivery_tag > confirmed, "ack tags must increase: {} after {confirmed}", a.delivery_tag);
                if !a.multiple {
                    assert_eq!(a.delivery_tag, confirmed + 1, "a single ack must not skip tags");
                }
                confirmed = a.delivery_tag;
            }
            other => panic!("expected basic.ack, got {other:?}"),
        }
    }
    assert_eq!(confirmed, 20);
    assert_eq!(drain(&ch, &q).await.len(), 20);
    // lapin: each publish gets an ack.
    let cch = confirm_channel(&conn).await;
    for i in 0..10 {
        publish_c(&cch, "", &q, format!("l{i}").as_bytes(), Default::default()).await;
    }
    let returned = timeout(cch.wait_for_confirms()).await.unwrap();
    assert!(returned.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn mandatory_unroutable_confirm_comes_after_return() {
    let b = TestBroker::start().await;
    let mut raw = b.raw_open().await;
    raw.send_method(1, AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }))).await;
    raw.expect_method().await;
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
    out.extend(encode(&AMQPFrame::Header(1, AMQPContentHeader { class_id: 60, body_size: 2, properties: Default::default() })));
    out.extend(encode(&AMQPFrame::Body(1, b"hi".to_vec())));
    raw.send(&out).await;
    match raw.expect_method().await {
        (1, AMQPClass::Basic(basic::AMQPMethod::Return(r))) => {
            assert_eq!((r.reply_code, r.reply_text.as_str()), (312, "NO_ROUTE"));
        }
        other => panic!("expected basic.return before the ack, got {other:?}"),
    }
    assert!(matches!(raw.read_frame(WAIT).await, Ok(AMQPFrame::Header(1, _))));
    assert!(matches!(raw.read_frame(WAIT).await, Ok(AMQPFrame::Body(1, _))));
    match raw.expect_method().await {
        (1, AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => assert_eq!(a.delivery_tag, 1),
        other => panic!("expected basic.ack after the return, got {other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn publish_to_missing_exchange_in_confirm_mode_closes_channel() {
    let b = TestBroker::start().await;
    let mut raw = b.raw_open().await;
    raw.send_method(1, AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }))).await;
    raw.expect_method().await;
    let x = uniq("nope");
    raw.publish(1, &x, "k", Default::default(), b"m").await;
    // No ack or nack: the channel is closed with 404 (class 60, method 40).
    let (code, text, class, method) = raw.expect_channel_close(1).await;
    assert_eq!((code, text, class, method), (404, format!("NOT_FOUND - no exchange '{x}' in vhost '/'"), 60, 40));
    // The connection stays usable: the channel number can be reused.
    raw.open_channel(1).await;
    b.stop().await;
}

#[tokio::test]
async fn tx_commit_and_rollback_of_publishes() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = temp_queue(&ch).await;
    let obs = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.tx_select()).await.unwrap();
    publish(&ch, "", &q, b"t1").await;
    publish(&ch, "", &q, b"t2").await;
    assert_channel_ok(&ch).await;
    assert!(drain(&obs, &q).await.is_empty(), "uncommitted publishes are not visible");
    timeout(ch.tx_commit()).await.unwrap();
    assert_eq!(drain(&obs, &q).await, vec!["t1", "t2"]);
    publish(&ch, "", &q, b"t3").await;
    timeout(ch.tx_rollback()).await.unwrap();
    assert!(drain(&obs, &q).await.is_empty(), "rolled-back publishes are discarded");
    // The channel stays transactional: the next commit covers only later publishes.
    publish(&ch, "", &q, b"t4").await;
    timeout(ch.tx_commit()).await.unwrap();
    assert_eq!(drain(&obs, &q).await, vec!["t4"]);
    b.stop().await;
}

#[tokio::test]
async fn tx_acks_apply_at_commit() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let pch = confirm_channel(&conn).await;
    let q = uniq("txack");
    named_queue(&pch, &q).await;
    publish_c(&pch, "", &q, b"a1", Default::default()).await;
    publish_c(&pch, "", &q, b"a2", Default::default()).await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.tx_select()).await.unwrap();
    let m1 = timeout(ch.basic_get(q.as_str().into(), Default::default())).await.unwrap().unwrap();
    let m2 = timeout(ch.basic_get(q.as_str().into(), Default::default())).await.unwrap().unwrap();
    timeout(ch.basic_ack(m1.delivery.delivery_tag, Default::default())).await.unwrap();
    timeout(ch.tx_rollback()).await.unwrap();
    timeout(ch.basic_ack(m2.delivery.delivery_tag, Default::default())).await.unwrap();
    timeout(ch.tx_commit()).await.unwrap();
    // m1's ack was rolled back (still unacked), m2's was committed: closing the channel
    // returns only m1.
    timeout(ch.close(200, "OK".into())).await.unwrap();
    let mut left = Vec::new();
    while let Some(m) = timeout(pch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap() {
        left.push((String::from_utf8_lossy(&m.delivery.data).to_string(), m.delivery.redelivered));
    }
    assert_eq!(left, vec![("a1".to_string(), true)]);
    timeout(pch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn tx_errors_are_406() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(timeout(ch.tx_commit()).await, 406, "PRECONDITION_FAILED - channel is not transactional");
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(timeout(ch.tx_rollback()).await, 406, "PRECONDITION_FAILED - channel is not transactional");
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.tx_select()).await.unwrap();
    assert_amqp_err(
        timeout(ch.confirm_select(Default::default())).await,
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    );
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    assert_amqp_err(timeout(ch.tx_select()).await, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode");
    // Selecting the same mode twice is fine.
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.tx_select()).await.unwrap();
    timeout(ch.tx_select()).await.unwrap();
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    assert!(conn.status().connected());
    let _ = FieldTable::default();
    b.stop().await;
}
