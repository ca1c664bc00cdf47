//! Malformed and out-of-order input on a raw socket: the server closes the connection with
//! the matching code, and the broker (and other connections) keep working.
use crate::common;
use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, basic, connection};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;

/// The broker still accepts new connections and an existing one still works.
async fn broker_still_works(b: &TestBroker, bystander: &lapin::Channel) {
    assert_channel_ok(bystander).await;
    let (_c, ch) = b.channel().await;
    timeout(ch.queue_declare("".into(), QueueDeclareOptions::exclusive(), FieldTable::default())).await.unwrap();
}

async fn expect_close(raw: &mut RawClient, code: u16, text: &str) -> (u16, u16) {
    let (c, t, class, method) = raw.expect_connection_close().await;
    assert_eq!((c, t.as_str()), (code, text));
    assert!(raw.closed_within(WAIT).await, "socket must be closed after close-ok");
    (class, method)
}

#[tokio::test]
async fn frame_larger_than_frame_max_is_501() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw_open().await;
    // A frame header announcing 200000 bytes (> 131072 - 8); the payload never follows.
    let mut hdr = vec![1u8, 0, 1];
    hdr.extend_from_slice(&200_000u32.to_be_bytes());
    raw.send(&hdr).await;
    expect_close(&mut raw, 501, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200000,131064}").await;
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn bad_frame_end_is_501() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw_open().await;
    // basic.qos(0,0,false) on channel 1 with frame-end 0x00 instead of 0xCE.
    let payload = [0, 60, 0, 10, 0, 0, 0, 0, 0, 0, 0];
    raw.send(&raw_frame(1, 1, &payload, 0)).await;
    expect_close(
        &mut raw,
        501,
        "FRAME_ERROR - type 1, all octets = <<0,60,0,10,0,0,0,0,0,0,0>>: {invalid_frame_end_marker,0}",
    )
    .await;
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_frame_type_is_501() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw_open().await;
    raw.send(&raw_frame(9, 1, b"abc", 0xCE)).await;
    expect_close(&mut raw, 501, "FRAME_ERROR - type 9, all octets = <<\"abc\">>: unknown_frame").await;
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_class_or_method_closes_the_connection() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    for payload in [&[0u8, 99, 0, 10][..], &[0, 60, 0, 99][..]] {
        let mut raw = b.raw_open().await;
        raw.send(&raw_frame(1, 1, payload, 0xCE)).await;
        // RabbitMQ 3.10's reader crashes here and resets the socket without a close frame;
        // a connection.close, if sent, must carry 503 COMMAND_INVALID or 540 NOT_IMPLEMENTED.
        loop {
            match raw.read_method(WAIT).await {
                Ok((0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                    eprintln!("unknown method {payload:?}: {c:?}");
                    assert!(matches!(c.reply_code, 503 | 540), "unexpected close {c:?}");
                    raw.send_method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}))).await;
                    assert!(raw.closed_within(WAIT).await);
                    break;
                }
                Ok(other) => panic!("unexpected frame {other:?}"),
                Err(ReadError::Closed) => {
                    eprintln!("unknown method {payload:?}: socket closed without a close frame");
                    break;
                }
                Err(e) => panic!("connection must be closed after an unknown method {payload:?}: {e:?}"),
            }
        }
    }
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn content_header_without_publish_is_505() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw_open().await;
    raw.send_frame(&AMQPFrame::Header(1, AMQPContentHeader { class_id: 60, body_size: 3, properties: Default::default() })).await;
    expect_close(&mut raw, 505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead").await;
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn body_without_pending_content_is_505() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw_open().await;
    raw.send_frame(&AMQPFrame::Body(1, b"xyz".to_vec())).await;
    expect_close(&mut raw, 505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead").await;
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn method_instead_of_content_header_is_505() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw_open().await;
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: "x".into(),
            mandatory: false,
            immediate: false,
        })),
    )
    .await;
    raw.send_method(1, AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 1, global: false }))).await;
    let (class, method) = expect_close(
        &mut raw,
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
    )
    .await;
    assert_eq!((class, method), (60, 40));
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn heartbeat_on_a_channel_is_505_and_content_on_channel_0_is_505() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw_open().await;
    raw.send_frame(&AMQPFrame::InvalidHeartbeat(1)).await;
    expect_close(&mut raw, 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>").await;
    let mut raw = b.raw_open().await;
    raw.send_frame(&AMQPFrame::Body(0, b"xyz".to_vec())).await;
    expect_close(&mut raw, 505, "UNEXPECTED_FRAME - type 3, all octets = <<\"xyz\">>").await;
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn method_on_unopened_channel_is_504() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw_open().await;
    raw.send_method(5, AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 1, global: false }))).await;
    expect_close(&mut raw, 504, "CHANNEL_ERROR - expected 'channel.open'").await;
    // A channel opened twice.
    let mut raw = b.raw_open().await;
    raw.send_method(1, AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Open(amq_protocol::protocol::channel::Open {}))).await;
    expect_close(&mut raw, 504, "CHANNEL_ERROR - second 'channel.open' seen").await;
    // A basic method on channel 0.
    let mut raw = b.raw_open().await;
    raw.send_method(0, AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 1, global: false }))).await;
    expect_close(&mut raw, 504, "CHANNEL_ERROR - unexpected method in connection state running").await;
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}
