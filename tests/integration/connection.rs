//! Connection-level behaviour: protocol header, start/tune/open, SASL, close, heartbeats,
//! channels and channel.flow.
use crate::common;
use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::AMQPValue;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::{Duration, Instant};

const HEADER_091: &[u8] = b"AMQP\x00\x00\x09\x01";

async fn expect_header_back_and_close(b: &TestBroker, sent: &[u8]) {
    let mut c = b.raw().await;
    c.send(sent).await;
    let back = c.read_bytes(8, WAIT).await.unwrap_or_else(|e| panic!("no header back for {sent:?}: {e:?}"));
    assert_eq!(back, HEADER_091, "server must answer {sent:?} with the 0-9-1 header");
    assert!(c.closed_within(WAIT).await, "socket must be closed after a wrong header");
}

#[tokio::test]
async fn wrong_protocol_header_gets_091_header_and_close() {
    let b = TestBroker::start().await;
    expect_header_back_and_close(&b, b"AMQP\x00\x00\x0a\x00").await; // 0-10
    expect_header_back_and_close(&b, b"AMQP\x01\x01\x00\x0a").await; // 0-10 (old style)
    expect_header_back_and_close(&b, b"GET / HTTP/1.1\r\n\r\n").await; // not AMQP
    // The broker keeps serving.
    let (_c, ch) = b.channel().await;
    timeout(ch.queue_declare("".into(), QueueDeclareOptions::exclusive(), FieldTable::default()))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn connection_start_advertises_capabilities_and_mechanisms() {
    let b = TestBroker::start().await;
    let mut c = b.raw().await;
    c.send_header().await;
    let start = match c.expect_method().await {
        (0, AMQPClass::Connection(connection::AMQPMethod::Start(s))) => s,
        other => panic!("expected connection.start, got {other:?}"),
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let props = start.server_properties.inner();
    for key in ["product", "version", "platform"] {
        match props.get(key) {
            Some(AMQPValue::LongString(s)) => assert!(!s.as_bytes().is_empty(), "{key} is empty"),
            other => panic!("server property {key} must be a longstr, got {other:?}"),
        }
    }
    // Client libraries choose RabbitMQ's semantics from product/version (kombu: "RabbitMQ" >= 3.3).
    assert!(matches!(props.get("product"), Some(AMQPValue::LongString(s)) if s.as_bytes() == b"RabbitMQ"));
    if !b.is_external() {
        assert!(matches!(props.get("version"), Some(AMQPValue::LongString(s)) if s.as_bytes() == b"3.10.8"));
        assert!(matches!(props.get("warren_version"), Some(AMQPValue::LongString(s)) if s.as_bytes() == env!("CARGO_PKG_VERSION").as_bytes()));
    }
    let caps = match props.get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.inner().clone(),
        other => panic!("capabilities must be a table, got {other:?}"),
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(caps.get(cap), Some(&AMQPValue::Boolean(true)), "capability {cap}");
    }
    let mechs = String::from_utf8_lossy(start.mechanisms.as_bytes()).to_string();
    let mechs: Vec<&str> = mechs.split(' ').collect();
    assert!(mechs.contains(&"PLAIN"), "mechanisms {mechs:?}");
    assert!(mechs.contains(&"AMQPLAIN"), "mechanisms {mechs:?}");
    let locales = String::from_utf8_lossy(start.locales.as_bytes()).to_string();
    assert!(locales.split(' ').any(|l| l == "en_US"), "locales {locales:?}");
    b.stop().await;
}

#[tokio::test]
async fn plain_and_amqplain_logins_work() {
    let b = TestBroker::start().await;
    for mech in ["PLAIN", "AMQPLAIN"] {
        let mut c = RawClient::handshake(b.addr(), HandshakeOpts { mechanism: mech.into(), ..Default::default() }).await;
        c.open_channel(1).await;
        c.open_channel(2).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn bad_password_with_auth_failure_close_gets_403() {
    let b = TestBroker::start().await;
    for mech in ["PLAIN", "AMQPLAIN"] {
        let mut c = b.raw().await;
        let o = HandshakeOpts { mechanism: mech.into(), pass: "wrong".into(), ..Default::default() };
        let tuned = c.start_and_tune(&o).await;
        assert!(!tuned, "a bad password must not be tuned");
        let (code, text, class, method) = c.expect_connection_close().await;
        assert_eq!(code, 403);
        assert_eq!(
            text,
            format!(
                "ACCESS_REFUSED - Login was refused using authentication mechanism {mech}. For details see the broker logfile."
            )
        );
        assert_eq!((class, method), (0, 0));
        assert!(c.closed_within(WAIT).await, "socket must close after a refused login");
    }
    // lapin sees the refusal as an error, not a hang.
    let bad = b.uri().replacen("guest:guest", "guest:wrong", 1);
    let r = timeout(lapin::Connection::connect(&bad, lapin::ConnectionProperties::default())).await;
    assert!(r.is_err(), "lapin login with a bad password must fail");
    b.stop().await;
}

#[tokio::test]
async fn tune_offers_rabbitmq_defaults() {
    let b = TestBroker::start().await;
    let c = RawClient::handshake(b.addr(), HandshakeOpts::default()).await;
    let t = c.tune.clone().unwrap();
    assert_eq!(t.channel_max, 2047);
    assert_eq!(t.frame_max, 131_072);
    assert_eq!(t.heartbeat, 60);
    // lapin negotiates the same values.
    let conn = b.connect().await;
    let cfg = conn.configuration();
    assert_eq!(cfg.frame_max(), 131_072);
    assert_eq!(cfg.channel_max(), 2047);
    assert_eq!(cfg.heartbeat(), 60);
    b.stop().await;
}

#[tokio::test]
async fn missing_vhost_is_530() {
    let b = TestBroker::start().await;
    let mut c = b.raw().await;
    assert!(c.start_and_tune(&HandshakeOpts::default()).await);
    c.send_open("nope").await;
    let (code, text, class, method) = c.expect_connection_close().await;
    assert_eq!((code, text.as_str()), (530, "NOT_ALLOWED - vhost nope not found"));
    assert_eq!((class, method), (10, 40));
    // Through lapin too.
    let r = timeout(lapin::Connection::connect(&b.uri_with_vhost("nope"), lapin::ConnectionProperties::default())).await;
    match r {
        Ok(_) => panic!("connecting to a missing vhost must fail"),
        Err(e) => assert_eq!(amqp_error(&e), Some((530, "NOT_ALLOWED - vhost nope not found".to_string()))),
    }
    b.stop().await;
}

#[tokio::test]
async fn client_close_gets_close_ok() {
    let b = TestBroker::start().await;
    let mut c = b.raw_open().await;
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match c.expect_method().await {
        (0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {}
        other => panic!("expected connection.close-ok, got {other:?}"),
    }
    // lapin's close completes.
    let conn = b.connect().await;
    timeout(conn.close(200, "OK".into())).await.unwrap();
    assert!(!conn.status().connected());
    b.stop().await;
}

#[tokio::test]
async fn many_channels_per_connection() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let q = uniq("many-ch");
    let ch0 = timeout(conn.create_channel()).await.unwrap();
    timeout(ch0.queue_declare(q.as_str().into(), QueueDeclareOptions { auto_delete: false, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap();
    let mut chans = Vec::new();
    for _ in 0..100 {
        chans.push(timeout(conn.create_channel()).await.unwrap());
    }
    let ids: std::collections::HashSet<u16> = chans.iter().map(|c| c.id()).collect();
    assert_eq!(ids.len(), 100);
    for (i, ch) in chans.iter().enumerate() {
        timeout(ch.basic_publish("".into(), q.as_str().into(), Default::default(), format!("{i}").as_bytes(), Default::default()))
            .await
            .unwrap();
    }
    // Every channel's publish arrived (per-channel order only, so compare as sets).
    let mut got = std::collections::HashSet::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 100 && Instant::now() < deadline {
        match timeout(ch0.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap() {
            Some(m) => {
                got.insert(String::from_utf8(m.delivery.data.clone()).unwrap());
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert_eq!(got.len(), 100);
    for ch in &chans {
        timeout(ch.close(200, "OK".into())).await.unwrap();
    }
    timeout(ch0.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn silent_client_with_heartbeat_1_is_disconnected() {
    let b = TestBroker::start().await;
    let mut c = RawClient::handshake(b.addr(), HandshakeOpts { heartbeat: 1, ..Default::default() }).await;
    let t0 = Instant::now();
    assert!(c.closed_within(Duration::from_secs(5)).await, "a silent client must be dropped");
    let el = t0.elapsed();
    // RabbitMQ's receiver checks once per interval and drops at the second silent check.
    assert!(el >= Duration::from_millis(1900), "dropped too early: {el:?}");
    assert!(el <= Duration::from_millis(4500), "dropped too late: {el:?}");
    b.stop().await;
}

#[tokio::test]
async fn client_silent_after_talking_is_dropped_two_to_three_intervals_after_its_last_bytes() {
    let b = TestBroker::start().await;
    let mut c = RawClient::handshake(b.addr(), HandshakeOpts { heartbeat: 1, ..Default::default() }).await;
    // Talk for 2.5 s (past two checks), then fall silent.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(2500) {
        c.send_frame(&AMQPFrame::Heartbeat).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.send_frame(&AMQPFrame::Heartbeat).await;
    let last = Instant::now();
    assert!(c.closed_within(Duration::from_secs(6)).await, "a client silent after talking must be dropped");
    let el = last.elapsed();
    assert!(el >= Duration::from_millis(1900), "dropped too early after the last bytes: {el:?}");
    assert!(el <= Duration::from_millis(4000), "dropped too late after the last bytes: {el:?}");
    b.stop().await;
}

#[tokio::test]
async fn server_sends_heartbeats() {
    let b = TestBroker::start().await;
    let mut c = RawClient::handshake(b.addr(), HandshakeOpts { heartbeat: 1, ..Default::default() }).await;
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while seen < 2 && Instant::now() < deadline {
        // Keep the server happy: we heartbeat too.
        c.send_frame(&AMQPFrame::Heartbeat).await;
        match c.read_raw_frame(Duration::from_millis(700)).await {
            Ok(f) => {
                assert_eq!((f.frame_type, f.channel, f.payload.len()), (8, 0, 0), "unexpected frame {f:?}");
                seen += 1;
            }
            Err(ReadError::Timeout) => {}
            Err(e) => panic!("connection failed while heartbeating: {e:?}"),
        }
    }
    assert!(seen >= 2, "expected at least two heartbeat frames in 3 s, got {seen}");
    // And a client that heartbeats is not dropped: the channel still works.
    c.open_channel(1).await;
    b.stop().await;
}

#[tokio::test]
async fn channel_error_closes_only_that_channel() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch1 = timeout(conn.create_channel()).await.unwrap();
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    let q = uniq("missing");
    let r = timeout(ch1.queue_declare(q.as_str().into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
    assert!(!ch1.status().connected(), "the failed channel is closed");
    // The other channel and the connection keep working.
    let q2 = timeout(ch2.queue_declare("".into(), QueueDeclareOptions::exclusive(), FieldTable::default())).await.unwrap();
    assert!(conn.status().connected());
    // A new channel on the same connection works too.
    let ch3 = timeout(conn.create_channel()).await.unwrap();
    timeout(ch3.queue_declare(q2.name().clone(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn channel_flow_true_gets_flow_ok_and_false_is_540() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.channel().await;
    let active = timeout(ch.channel_flow(ChannelFlowOptions { active: true })).await.unwrap();
    assert!(active);
    let r = timeout(ch.channel_flow(ChannelFlowOptions { active: false })).await;
    assert_amqp_err(r, 540, "NOT_IMPLEMENTED - active=false");
    let _ = conn;
    b.stop().await;
}

/// Graceful shutdown (SIGTERM/SIGINT in warren-server): every connection gets
/// connection.close 320 CONNECTION_FORCED before the broker stops.
#[tokio::test]
async fn shutdown_closes_connections_with_320() {
    if std::env::var("WARREN_TEST_URL").is_ok_and(|u| !u.is_empty()) {
        return; // needs to stop the broker itself
    }
    let b = TestBroker::start().await;
    let mut c = b.raw_open().await;
    let closing = tokio::spawn(async move { c.expect_connection_close().await });
    b.stop().await;
    let (code, text, _, _) = timeout(closing).await.unwrap();
    assert_eq!((code, text.as_str()), (320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"));
}

#[tokio::test]
async fn connection_closed_by_the_broker_is_dropped_3_s_after_close_without_close_ok() {
    let b = TestBroker::start().await;
    // Heartbeat 1 s: the close-ok wait (3 s) must hold even though silence checks run every second.
    let mut c = RawClient::handshake(b.addr(), HandshakeOpts { heartbeat: 1, ..Default::default() }).await;
    c.send_frame(&AMQPFrame::InvalidHeartbeat(1)).await;
    match c.read_method(WAIT).await {
        Ok((0, AMQPClass::Connection(connection::AMQPMethod::Close(cl)))) => assert_eq!(cl.reply_code, 505),
        other => panic!("expected connection.close, got {other:?}"),
    }
    // No close-ok: the broker gives up after 3 s.
    let t0 = Instant::now();
    assert!(c.closed_within(Duration::from_secs(6)).await, "the socket must be closed without close-ok");
    let el = t0.elapsed();
    assert!(el >= Duration::from_millis(2800), "closed before the close-ok wait: {el:?}");
    assert!(el <= Duration::from_millis(4500), "closed too late: {el:?}");
    b.stop().await;
}
