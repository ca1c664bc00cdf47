//! Hostile input that used to stop the broker or hang a client: deeply nested field tables
//! (start-ok client properties, queue.declare arguments, basic.publish headers), reply texts
//! longer than a short string, short strings that are not UTF-8. Each case: the client gets an
//! answer, and the broker (with a bystander connection) keeps working.
use crate::common;
use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic, connection};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;

/// Levels of nesting that overflowed the generated decoder's stack (issue: ~1,400).
const DEEP: usize = 5_000;

/// A field table nested `depth` levels deep (each level one key `k` holding the next table),
/// encoded with its 4-byte length.
fn nested_table(depth: usize) -> Vec<u8> {
    let mut table = Vec::new();
    for _ in 1..depth {
        let mut outer = vec![1, b'k', b'F'];
        outer.extend_from_slice(&(table.len() as u32).to_be_bytes());
        outer.extend_from_slice(&table);
        table = outer;
    }
    let mut out = (table.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&table);
    out
}

fn short(s: &[u8]) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s);
    v
}

async fn broker_still_works(b: &TestBroker, bystander: &lapin::Channel) {
    assert_channel_ok(bystander).await;
    let (_c, ch) = b.channel().await;
    timeout(ch.queue_declare("".into(), QueueDeclareOptions::exclusive(), FieldTable::default())).await.unwrap();
}

async fn expect_501(raw: &mut RawClient) {
    let (code, text, _, _) = raw.expect_connection_close().await;
    assert_eq!(code, 501, "{text}");
    assert!(text.starts_with("FRAME_ERROR - cannot decode"), "{text}");
    assert!(raw.closed_within(WAIT).await, "socket must be closed after close-ok");
}

#[tokio::test]
async fn deeply_nested_client_properties_before_login() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let mut raw = b.raw().await;
    raw.send_header().await;
    match raw.expect_method().await {
        (0, AMQPClass::Connection(connection::AMQPMethod::Start(_))) => {}
        other => panic!("expected connection.start, got {other:?}"),
    }
    // start-ok: client-properties, mechanism, response, locale.
    let mut payload = vec![0, 10, 0, 11];
    payload.extend(nested_table(DEEP));
    payload.extend(short(b"PLAIN"));
    payload.extend_from_slice(&12u32.to_be_bytes());
    payload.extend_from_slice(b"\0guest\0guest");
    payload.extend(short(b"en_US"));
    raw.send(&raw_frame(1, 0, &payload, 0xCE)).await;
    if !b.is_external() {
        expect_501(&mut raw).await;
    } else {
        // RabbitMQ decodes any depth and goes on with the handshake.
        let _ = raw.read_method(WAIT).await;
    }
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn deeply_nested_queue_arguments_and_publish_headers() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    // queue.declare(ticket, queue, flags, arguments).
    let mut raw = b.raw_open().await;
    let mut payload = vec![0, 50, 0, 10, 0, 0];
    payload.extend(short(b"nested-args"));
    payload.push(0);
    payload.extend(nested_table(DEEP));
    raw.send(&raw_frame(1, 1, &payload, 0xCE)).await;
    if !b.is_external() {
        expect_501(&mut raw).await;
    }
    // basic.publish + a content header whose headers property nests DEEP tables.
    let mut raw = b.raw_open().await;
    let publish = method_frame(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: "nowhere".into(),
            mandatory: false,
            immediate: false,
        })),
    );
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&0u64.to_be_bytes());
    header.extend_from_slice(&0x2000u16.to_be_bytes()); // flags: headers only
    header.extend(nested_table(DEEP));
    let mut out = publish;
    out.extend(raw_frame(2, 1, &header, 0xCE));
    raw.send(&out).await;
    if !b.is_external() {
        expect_501(&mut raw).await;
    }
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn moderately_nested_headers_are_delivered() {
    // Nesting within the limit (x-death-like depth and more) is accepted and forwarded intact.
    let b = TestBroker::start().await;
    let (_c, ch) = b.channel().await;
    let q = uniq("nested-ok");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    let mut raw = b.raw_open().await;
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&2u64.to_be_bytes());
    header.extend_from_slice(&0x2000u16.to_be_bytes());
    header.extend(nested_table(32));
    let mut out = method_frame(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: q.as_str().into(),
            mandatory: false,
            immediate: false,
        })),
    );
    out.extend(raw_frame(2, 1, &header, 0xCE));
    out.extend(encode(&AMQPFrame::Body(1, b"hi".to_vec())));
    raw.send(&out).await;
    let got = wait_get(&ch, &q).await;
    assert_eq!(got.data, b"hi");
    let mut depth = 0;
    let mut t = got.properties.headers().clone().expect("headers");
    while let Some(lapin::types::AMQPValue::FieldTable(inner)) = t.inner().get("k").cloned() {
        depth += 1;
        t = inner;
    }
    assert_eq!(depth, 31);
    b.stop().await;
}

async fn wait_get(ch: &lapin::Channel, q: &str) -> lapin::message::BasicGetMessage {
    for _ in 0..100 {
        if let Some(m) = timeout(ch.basic_get(q.into(), BasicGetOptions { no_ack: true })).await.unwrap() {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no message in {q}");
}

#[tokio::test]
async fn reply_text_longer_than_255_bytes_is_cut_like_rabbitmq() {
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let (_c, ch) = b.channel().await;
    let name = "q".repeat(240);
    let r = timeout(ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions { passive: true, ..Default::default() },
        FieldTable::default(),
    ))
    .await;
    let (code, text) = amqp_error(&r.unwrap_err()).expect("a channel error");
    assert_eq!(code, 404);
    // "NOT_FOUND - no queue 'qqq…' in vhost '/'" is 277 bytes: cut to 252 + "...".
    let full = format!("NOT_FOUND - no queue '{name}' in vhost '/'");
    assert_eq!(text, format!("{}...", &full[..252]));
    // A frame error quotes at most the first 16 octets of the payload, as RabbitMQ.
    let mut raw = b.raw_open().await;
    raw.send(&raw_frame(9, 1, &[b'a'; 300], 0xCE)).await;
    let (code, text, _, _) = raw.expect_connection_close().await;
    assert_eq!((code, text.as_str()), (501, "FRAME_ERROR - type 9, first 16 octets = <<\"aaaaaaaaaaaaaaaa\">>: unknown_frame"));
    assert!(raw.closed_within(WAIT).await);
    broker_still_works(&b, &bystander).await;
    b.stop().await;
}

#[tokio::test]
async fn non_utf8_routing_key_and_content_type_are_accepted() {
    let b = TestBroker::start().await;
    let (_c, ch) = b.channel().await;
    let q = uniq("binary-ct");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    let mut raw = b.raw_open().await;
    // basic.publish to a routing key with a byte that is not UTF-8: accepted (unroutable here).
    let mut publish = vec![0, 60, 0, 40, 0, 0];
    publish.extend(short(b""));
    publish.extend(short(b"key-\xff"));
    publish.push(0);
    let mut out = raw_frame(1, 1, &publish, 0xCE);
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&1u64.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    out.extend(raw_frame(2, 1, &header, 0xCE));
    out.extend(encode(&AMQPFrame::Body(1, b"x".to_vec())));
    // Then a message to the queue whose content-type is not UTF-8: delivered with the bytes as sent.
    let mut publish = vec![0, 60, 0, 40, 0, 0];
    publish.extend(short(b""));
    publish.extend(short(q.as_bytes()));
    publish.push(0);
    out.extend(raw_frame(1, 1, &publish, 0xCE));
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&1u64.to_be_bytes());
    header.extend_from_slice(&0x8000u16.to_be_bytes()); // content-type only
    header.extend(short(b"text/\xfe\xff"));
    out.extend(raw_frame(2, 1, &header, 0xCE));
    out.extend(encode(&AMQPFrame::Body(1, b"y".to_vec())));
    raw.send(&out).await;
    // basic.get on the raw connection: get-ok, then the header exactly as published.
    let mut get = vec![0, 60, 0, 70, 0, 0];
    get.extend(short(q.as_bytes()));
    get.push(1);
    raw.send(&raw_frame(1, 1, &get, 0xCE)).await;
    match raw.expect_method().await {
        (1, AMQPClass::Basic(basic::AMQPMethod::GetOk(_))) => {}
        other => panic!("expected basic.get-ok, got {other:?}"),
    }
    let h = raw.read_raw_frame(WAIT).await.expect("content header");
    assert_eq!(h.frame_type, 2);
    assert_eq!(&h.payload[14..], b"\x07text/\xfe\xff");
    let body = raw.read_raw_frame(WAIT).await.expect("body");
    assert_eq!(&body.payload[..], b"y");
    b.stop().await;
}

#[tokio::test]
async fn delivery_mode_other_than_1_or_2_is_406() {
    let b = TestBroker::start().await;
    let mut raw = b.raw_open().await;
    for (i, mode) in [0u8, 3, 255].into_iter().enumerate() {
        let ch = i as u16 + 2; // raw_open opened channel 1
        raw.open_channel(ch).await;
        raw.publish(ch, "", "anywhere", basic::AMQPProperties::default().with_delivery_mode(mode), b"x").await;
        let (code, text, class, method) = raw.expect_channel_close(ch).await;
        assert_eq!((code, text.as_str()), (406, format!("PRECONDITION_FAILED - invalid message: {{delivery_mode_unknown,{mode}}}").as_str()));
        assert_eq!((class, method), (60, 40));
    }
    // 1 and 2 are accepted: the channel stays open.
    let (_c, ch) = b.channel().await;
    for mode in [1u8, 2] {
        timeout(ch.basic_publish("".into(), "anywhere".into(), BasicPublishOptions::default(), b"x", lapin::BasicProperties::default().with_delivery_mode(mode)))
            .await
            .unwrap();
    }
    assert_channel_ok(&ch).await;
    b.stop().await;
}
