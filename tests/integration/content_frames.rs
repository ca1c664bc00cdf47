//! A publish whose header and body arrive in the same read as its method frame is taken as one
//! unit by the broker (`frame::take_content`); these tests send the same frames in one write
//! and one frame per write (each read on its own) and expect the same outcome: the messages as
//! sent, and the same error for bad content.
use crate::common;
use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, basic, channel};
use common::*;
use lapin::options::*;
use std::time::Duration;

fn publish_frame(ch: u16, exchange: &str, rk: &str, immediate: bool) -> Vec<u8> {
    method_frame(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish { exchange: exchange.into(), routing_key: rk.into(), mandatory: false, immediate })),
    )
}

fn header_frame(ch: u16, class_id: u16, body_size: u64, properties: basic::AMQPProperties) -> Vec<u8> {
    encode(&AMQPFrame::Header(ch, AMQPContentHeader { class_id, body_size, properties }))
}

fn body_frame(ch: u16, body: &[u8]) -> Vec<u8> {
    encode(&AMQPFrame::Body(ch, body.to_vec()))
}

/// Sends `frames` in one write, or one per write with a pause between (each read alone).
async fn send(raw: &mut RawClient, frames: &[Vec<u8>], one_write: bool) {
    if one_write {
        raw.send(&frames.concat()).await;
        return;
    }
    for f in frames {
        raw.send(f).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Several messages in one write (bodies in one frame, in two frames, empty; with and without
/// properties) reach the queue whole and in order, as when each frame arrives alone.
#[tokio::test]
async fn messages_in_one_write_arrive_as_sent() {
    let b = TestBroker::start().await;
    let (_conn, ch) = b.channel().await;
    let q = temp_queue(&ch).await;
    let mut headers = amq_protocol::types::FieldTable::default();
    headers.insert("k".into(), amq_protocol::types::AMQPValue::LongString("v".into()));
    let props = basic::AMQPProperties::default().with_message_id("m-2".into()).with_headers(headers);
    for one_write in [true, false] {
        let mut raw = b.raw_open().await;
        let frames = vec![
            publish_frame(1, "", &q, false),
            header_frame(1, 60, 5, Default::default()),
            body_frame(1, b"first"),
            publish_frame(1, "", &q, false),
            header_frame(1, 60, 0, props.clone()),
            publish_frame(1, "", &q, false),
            header_frame(1, 60, 6, Default::default()),
            body_frame(1, b"thi"),
            body_frame(1, b"rd"),
            body_frame(1, b"!"),
            publish_frame(1, "", &q, false),
            header_frame(1, 60, 6, props.clone()),
            body_frame(1, b"fourth"),
        ];
        send(&mut raw, &frames, one_write).await;
        let mut got = Vec::new();
        for _ in 0..4 {
            let m = loop {
                if let Some(m) = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap() {
                    break m;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let p = &m.delivery.properties;
            got.push((String::from_utf8(m.delivery.data.clone()).unwrap(), p.message_id().as_ref().map(|s| s.to_string()), p.headers().is_some()));
        }
        let m2 = Some("m-2".to_string());
        assert_eq!(
            got,
            vec![("first".into(), None, false), ("".into(), m2.clone(), true), ("third!".into(), None, false), ("fourth".into(), m2, true)],
            "one write: {one_write}"
        );
    }
    b.stop().await;
}

/// The first method the broker answers with (connection.close or channel.close): code, text,
/// class, method.
async fn first_close(raw: &mut RawClient) -> (u16, u16, String, u16, u16) {
    match raw.expect_method().await {
        (0, AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::Close(c))) => {
            (0, c.reply_code, c.reply_text.to_string(), c.class_id, c.method_id)
        }
        (n, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => (n, c.reply_code, c.reply_text.to_string(), c.class_id, c.method_id),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// Bad content gets the same error whether its frames arrive together or one by one; after a
/// channel error the content is skipped, and the next message on another channel (in the same
/// write) is delivered.
#[tokio::test]
async fn content_errors_are_the_same_in_one_write() {
    let b = TestBroker::start_with(|c| c.amqp.max_message_size = 100).await;
    let (_conn, ch) = b.channel().await;
    let q = temp_queue(&ch).await;
    let next = |q: &str| vec![publish_frame(2, "", q, false), header_frame(2, 60, 4, Default::default()), body_frame(2, b"next")];
    let big = vec![7u8; 150];
    // (what, frames, expected close: channel, code, text, class, method)
    let cases: Vec<(&str, Vec<Vec<u8>>, (u16, u16, &str, u16, u16))> = vec![
        (
            "message over max_message_size",
            vec![publish_frame(1, "", &q, false), header_frame(1, 60, 150, Default::default()), body_frame(1, &big)],
            (1, 406, "PRECONDITION_FAILED - message size 150 is larger than configured max size 100", 60, 40),
        ),
        (
            "exchange that does not exist",
            vec![publish_frame(1, "no-such-exchange", "k", false), header_frame(1, 60, 3, Default::default()), body_frame(1, b"abc")],
            (1, 404, "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'", 60, 40),
        ),
        (
            "invalid delivery mode",
            vec![publish_frame(1, "", &q, false), header_frame(1, 60, 3, basic::AMQPProperties::default().with_delivery_mode(7)), body_frame(1, b"abc")],
            (1, 406, "PRECONDITION_FAILED - invalid message: {delivery_mode_unknown,7}", 60, 40),
        ),
        (
            "header of another class",
            vec![publish_frame(1, "", &q, false), header_frame(1, 61, 3, Default::default()), body_frame(1, b"abc")],
            (0, 501, "FRAME_ERROR - content header for class 61", 60, 40),
        ),
        (
            "immediate",
            vec![publish_frame(1, "", &q, true), header_frame(1, 60, 3, Default::default()), body_frame(1, b"abc")],
            (0, 540, "NOT_IMPLEMENTED - immediate=true", 60, 40),
        ),
    ];
    for (what, frames, expected) in cases {
        for one_write in [true, false] {
            let mut raw = b.raw_open().await;
            raw.open_channel(2).await;
            let mut all = frames.clone();
            all.extend(next(&q));
            send(&mut raw, &all, one_write).await;
            let (n, code, text, class, method) = first_close(&mut raw).await;
            assert_eq!((n, code, text.as_str(), class, method), expected, "{what}, one write: {one_write}");
            // The whole write has been read by now (the error came from its first message).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let got = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().map(|m| m.delivery.data);
            // After a connection error nothing more is read; after a channel error the
            // connection reads on, past the content.
            let want = if n == 0 { None } else { Some(&b"next"[..]) };
            assert_eq!(got.as_deref(), want, "{what}, one write: {one_write}");
        }
    }
    timeout(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).await.unwrap();
    b.stop().await;
}
