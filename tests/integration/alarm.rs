//! The free disk space alarm (RabbitMQ's disk alarm) over real sockets: publishers are blocked
//! with connection.blocked "low on disk" and no longer read, consumers keep going, and nothing
//! published during the alarm is lost. The alarm is driven through the control socket
//! (`set_disk_free_limit`, as warrenctl does) or the config file.
use crate::common;
use amq_protocol::protocol::{AMQPClass, basic, connection, queue as q};
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::{Duration, Instant};

/// Far above any disk's free space.
const HUGE: &str = "1000000GB";

/// The `state` column of list_connections, in connection order (pid ascending).
async fn states(b: &TestBroker) -> Vec<String> {
    let r = b.admin_call("list_connections", &["pid", "state"]).await;
    assert!(r.error.is_none(), "{r:?}");
    r.rows.iter().map(|row| row[1].as_str().unwrap().to_owned()).collect()
}

async fn wait_states(b: &TestBroker, want: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = states(b).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "connection states {got:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(b: &TestBroker) -> serde_json::Map<String, serde_json::Value> {
    let r = b.admin_call("status", &[]).await;
    r.rows.iter().map(|row| (row[0].as_str().unwrap().to_owned(), row[1].clone())).collect()
}

async fn set_limit(b: &TestBroker, limit: &str) -> Duration {
    let t = Instant::now();
    let r = b.admin_call("set_disk_free_limit", &[limit]).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.message.as_deref(), Some(format!("Setting disk free limit on warren@localhost to {limit} bytes ...").as_str()));
    t.elapsed()
}

/// Next connection-level blocked/unblocked event of a lapin connection.
async fn next_flow_event(events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin), wait: Duration) -> Option<lapin::Event> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) | Ok(None) => return None,
            Ok(Some(e @ (lapin::Event::ConnectionBlocked(_) | lapin::Event::ConnectionUnblocked))) => return Some(e),
            Ok(Some(_)) => continue,
        }
    }
}

#[tokio::test]
async fn publisher_is_blocked_consumer_keeps_receiving_and_nothing_is_lost() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return; // needs the control socket
    }
    let queue = uniq("alarm");
    let publisher = b.connect().await;
    let mut pub_events = Box::pin(publisher.events_listener());
    let pch = confirm_channel(&publisher).await;
    named_queue(&pch, &queue).await;
    for i in 0..5 {
        publish_c(&pch, "", &queue, format!("before-{i}").as_bytes(), Default::default()).await;
    }
    let consumer = b.connect().await;
    let mut con_events = Box::pin(consumer.events_listener());
    let cch = timeout(consumer.create_channel()).await.unwrap();
    // Prefetch 1: each further delivery needs the previous ack to have been read.
    timeout(cch.basic_qos(1, BasicQosOptions::default())).await.unwrap();
    wait_states(&b, &["running", "running"]).await;

    let set_cost = set_limit(&b, HUGE).await;
    let st = status(&b).await;
    assert_eq!(st["alarms"], alarm_objects(&["disk"]), "{st:?}");
    assert_eq!(st["disk_free_limit"], serde_json::json!(1_000_000_000_000_000u64));
    assert!(st["disk_free"].as_u64().is_some_and(|f| f > 0), "{st:?}");
    wait_states(&b, &["blocking", "blocking"]).await;

    // Publishes during the alarm: lapin stops writing once it is told it is blocked, so the
    // publishes run in a task and are awaited after the alarm clears.
    let t_publish = Instant::now();
    let pch2 = pch.clone();
    let q2 = queue.clone();
    let publishing = tokio::spawn(async move {
        let mut confirms = Vec::new();
        for i in 0..10 {
            let c = pch2
                .basic_publish("".into(), q2.as_str().into(), Default::default(), format!("during-{i}").as_bytes(), Default::default())
                .await
                .expect("publish");
            confirms.push(c);
        }
        confirms
    });
    match next_flow_event(&mut pub_events, WAIT).await {
        Some(lapin::Event::ConnectionBlocked(reason)) => assert_eq!(reason, "low on disk"),
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    let to_blocked = t_publish.elapsed();
    wait_states(&b, &["blocked", "blocking"]).await;

    // The consume-only connection is not blocked: it gets the queued messages and its acks are read.
    let mut c = timeout(cch.basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()))
        .await
        .unwrap();
    for i in 0..5 {
        let d = next_delivery(&mut c, WAIT).await.unwrap_or_else(|| panic!("delivery {i} during the alarm"));
        assert_eq!(d.data, format!("before-{i}").as_bytes());
        timeout(d.ack(BasicAckOptions::default())).await.unwrap();
    }
    // Nothing of the blocked publisher got through (it was blocked after its first content
    // header; the rest waits unread in the socket).
    assert!(next_delivery(&mut c, QUIET).await.is_none(), "a publish of a blocked connection was routed");
    assert!(next_flow_event(&mut con_events, QUIET).await.is_none(), "a consume-only connection must not be notified");
    wait_states(&b, &["blocked", "blocking"]).await;

    // Clear the alarm: connection.unblocked, every publish routed and confirmed, in order.
    let t_clear = Instant::now();
    set_limit(&b, "50MB").await;
    match next_flow_event(&mut pub_events, WAIT).await {
        Some(lapin::Event::ConnectionUnblocked) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    let to_unblocked = t_clear.elapsed();
    assert_eq!(status(&b).await["alarms"], serde_json::json!([]));
    wait_states(&b, &["running", "running"]).await;
    for i in 0..10 {
        let d = next_delivery(&mut c, WAIT).await.unwrap_or_else(|| panic!("message during-{i} lost"));
        assert_eq!(d.data, format!("during-{i}").as_bytes());
        timeout(d.ack(BasicAckOptions::default())).await.unwrap();
    }
    for conf in timeout(publishing).await.unwrap() {
        assert!(timeout(conf).await.unwrap().is_ack());
    }
    assert!(next_flow_event(&mut con_events, QUIET).await.is_none(), "a consume-only connection must not be notified");
    eprintln!(
        "set_disk_free_limit round trip {set_cost:?}; publish -> connection.blocked {to_blocked:?}; \
         limit lowered -> connection.unblocked {to_unblocked:?}"
    );
    b.stop().await;
}

fn blocked_reason(m: &(u16, AMQPClass)) -> Option<String> {
    match m {
        (0, AMQPClass::Connection(connection::AMQPMethod::Blocked(bl))) => Some(bl.reason.to_string()),
        _ => None,
    }
}

fn passive_declare(name: &str) -> AMQPClass {
    AMQPClass::Queue(q::AMQPMethod::Declare(q::Declare {
        queue: name.into(),
        passive: true,
        ..Default::default()
    }))
}

/// Frame-level behaviour: blocked after the first content header, buffered frames wait,
/// connection.unblocked comes before anything the unblocked reader then answers, heartbeat
/// monitoring is paused while blocked, clients without the capability get no frame.
#[tokio::test]
async fn blocked_connections_stop_reading_and_resume_in_order() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return;
    }
    let queue = uniq("alarm-raw");
    // A: capability connection.blocked, heartbeat 2 s (dropped after 4 s of silence when running).
    let mut a = RawClient::handshake(b.addr(), HandshakeOpts { heartbeat: 2, ..Default::default() }).await;
    a.open_channel(1).await;
    a.send_method(1, AMQPClass::Queue(q::AMQPMethod::Declare(q::Declare { queue: queue.as_str().into(), ..Default::default() })))
        .await;
    assert!(matches!(a.expect_method().await, (1, AMQPClass::Queue(q::AMQPMethod::DeclareOk(_)))));
    // N: no capabilities.
    let mut n = RawClient::handshake(b.addr(), HandshakeOpts { capabilities: false, ..Default::default() }).await;
    n.open_channel(1).await;

    set_limit(&b, HUGE).await;
    wait_states(&b, &["blocking", "blocking"]).await;
    // Non-publishing methods are still served while the alarm is set.
    a.send_method(1, passive_declare(&queue)).await;
    assert!(matches!(a.expect_method().await, (1, AMQPClass::Queue(q::AMQPMethod::DeclareOk(_)))));

    // One write: two publishes and a passive declare.
    let t = Instant::now();
    a.publish(1, "", &queue, basic::AMQPProperties::default(), b"m1").await;
    a.publish(1, "", &queue, basic::AMQPProperties::default(), b"m2").await;
    a.send_method(1, passive_declare(&queue)).await;
    let m = a.read_method(WAIT).await.expect("connection.blocked");
    assert_eq!(blocked_reason(&m).as_deref(), Some("low on disk"), "{m:?}");
    let to_blocked = t.elapsed();
    // Nothing else: the declare is not read, and no second connection.blocked.
    match a.read_method(QUIET).await {
        Err(ReadError::Timeout) => {}
        other => panic!("a blocked connection answered: {other:?}"),
    }

    // N publishes too: blocked without a frame, its later methods unanswered.
    n.publish(1, "", &queue, basic::AMQPProperties::default(), b"n1").await;
    n.send_method(1, passive_declare(&queue)).await;
    match n.read_method(QUIET).await {
        Err(ReadError::Timeout) => {}
        other => panic!("a client without the capability got {other:?}"),
    }
    wait_states(&b, &["blocked", "blocked"]).await;
    // Heartbeat monitoring is paused: A stays silent for more than two intervals and survives.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let st = status(&b).await;
    assert_eq!(st["connections"], serde_json::json!(2), "a blocked connection was dropped: {st:?}");

    set_limit(&b, "0").await;
    // A: unblocked first, then the held frames are processed in order: the declare sees both
    // of A's messages (and N's, if N's reader, unblocked at the same time, got there first).
    match a.read_method(WAIT).await {
        Ok((0, AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)))) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    match a.read_method(WAIT).await {
        Ok((1, AMQPClass::Queue(q::AMQPMethod::DeclareOk(ok)))) => assert!((2..=3).contains(&ok.message_count), "{ok:?}"),
        other => panic!("expected declare-ok, got {other:?}"),
    }
    // N: no unblocked frame, just the answer to its declare (after its own publish).
    match n.read_method(WAIT).await {
        Ok((1, AMQPClass::Queue(q::AMQPMethod::DeclareOk(ok)))) => assert!(ok.message_count >= 1, "{ok:?}"),
        other => panic!("expected declare-ok, got {other:?}"),
    }
    a.send_method(1, passive_declare(&queue)).await;
    match a.read_method(WAIT).await {
        Ok((1, AMQPClass::Queue(q::AMQPMethod::DeclareOk(ok)))) => assert_eq!(ok.message_count, 3, "a message was lost"),
        other => panic!("expected declare-ok, got {other:?}"),
    }
    wait_states(&b, &["running", "running"]).await;

    // A second alarm blocks again, with a new connection.blocked.
    set_limit(&b, "1GiB").await; // a test machine has more than 1 GiB free
    assert_eq!(status(&b).await["alarms"], serde_json::json!([]));
    set_limit(&b, HUGE).await;
    a.publish(1, "", &queue, basic::AMQPProperties::default(), b"m3").await;
    let m = a.read_method(WAIT).await.expect("connection.blocked");
    assert_eq!(blocked_reason(&m).as_deref(), Some("low on disk"), "{m:?}");
    set_limit(&b, "50MB").await;
    match a.read_method(WAIT).await {
        Ok((0, AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)))) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    a.send_method(1, passive_declare(&queue)).await;
    match a.read_method(WAIT).await {
        Ok((1, AMQPClass::Queue(q::AMQPMethod::DeclareOk(ok)))) => assert_eq!(ok.message_count, 4),
        other => panic!("expected declare-ok, got {other:?}"),
    }
    eprintln!("raw client: publish -> connection.blocked {to_blocked:?}");
    b.stop().await;
}

/// A limit in the config file above the free space: the alarm is set before the first client
/// connects; a forced close still reaches a blocked connection.
#[tokio::test]
async fn alarm_from_config_blocks_from_the_start() {
    let b = TestBroker::start_with(|c| c.storage.disk_free_limit = u64::MAX).await;
    if b.is_external() {
        return;
    }
    let st = status(&b).await;
    assert_eq!(st["alarms"], alarm_objects(&["disk"]), "{st:?}");
    let mut a = b.raw_open().await;
    wait_states(&b, &["blocking"]).await;
    a.publish(1, "", "nowhere", basic::AMQPProperties::default(), b"x").await;
    let m = a.read_method(WAIT).await.expect("connection.blocked");
    assert_eq!(blocked_reason(&m).as_deref(), Some("low on disk"), "{m:?}");
    wait_states(&b, &["blocked"]).await;
    // close_connection works on a blocked connection (it reads again to get close-ok).
    let r = b.admin_call("list_connections", &["pid"]).await;
    let pid = r.rows[0][0].as_str().expect("pid").to_string();
    let r = b.admin_call("close_connection", &[&pid, "go away now"]).await;
    assert!(r.error.is_none(), "{r:?}");
    let (code, text, _, _) = a.expect_connection_close().await;
    assert_eq!((code, text.as_str()), (320, "CONNECTION_FORCED - go away now"));
    assert!(a.closed_within(WAIT).await);
    wait_states(&b, &[]).await;
    b.stop().await;
}

#[tokio::test]
async fn set_disk_free_limit_rejects_bad_values() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return;
    }
    for bad in ["sandwich", "-10", "1.5GB", "10TB"] {
        let r = b.admin_call("set_disk_free_limit", &[bad]).await;
        assert!(r.error.as_deref().is_some_and(|e| e.contains("Unable to parse disk free limit value")), "{bad}: {r:?}");
    }
    let r = b.admin_call("set_disk_free_limit", &["mem_relative", "1.5"]).await;
    assert!(r.error.is_some(), "{r:?}");
    assert_eq!(status(&b).await["disk_free_limit"], serde_json::json!(50_000_000));
    set_limit(&b, "500MiB").await;
    assert_eq!(status(&b).await["disk_free_limit"], serde_json::json!(500u64 << 20));
    b.stop().await;
}
