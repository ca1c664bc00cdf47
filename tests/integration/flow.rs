//! Publisher flow control over real sockets: an unlimited publisher feeding a queue whose consumer
//! is slower is paused (state `flow`), the queue's ready backlog stays at the configured bound,
//! and publishing resumes: every message arrives, in order, and the state goes back to running.
use crate::common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use std::time::{Duration, Instant};

const LIMIT: u64 = 200;
const TOTAL: usize = 6000;

async fn states(b: &TestBroker) -> Vec<String> {
    let r = b.admin_call("list_connections", &["pid", "state"]).await;
    r.rows.iter().map(|row| row[1].as_str().unwrap().to_owned()).collect()
}

async fn ready(b: &TestBroker, queue: &str) -> u64 {
    let r = b.admin_call("list_queues", &["name", "messages_ready"]).await;
    r.rows.iter().find(|row| row[0] == queue).and_then(|row| row[1].as_u64()).unwrap_or(0)
}

#[tokio::test]
async fn unlimited_publisher_is_throttled_to_a_slow_consumer_and_resumes() {
    let b = TestBroker::start_with(|c| {
        c.flow.queue_messages = LIMIT;
        c.flow.queue_bytes = 1 << 30;
    })
    .await;
    if b.is_external() {
        return; // needs the control socket and the configured limit
    }
    let queue = uniq("flow");
    let publisher = b.connect().await;
    let pch = timeout(publisher.create_channel()).await.unwrap();
    named_queue(&pch, &queue).await;

    // The consumer: prefetch 1, one ack per message (a round trip each), far slower than a
    // publisher that never waits.
    let consumer = b.connect().await;
    let cch = timeout(consumer.create_channel()).await.unwrap();
    timeout(cch.basic_qos(1, BasicQosOptions::default())).await.unwrap();
    let mut c = timeout(cch.basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), Default::default()))
        .await
        .unwrap();
    let consuming = tokio::spawn(async move {
        let mut got = Vec::with_capacity(TOTAL);
        while got.len() < TOTAL {
            let d = match tokio::time::timeout(Duration::from_secs(30), c.next()).await {
                Ok(Some(Ok(d))) => d,
                other => panic!("delivery {} missing: {other:?}", got.len()),
            };
            got.push(String::from_utf8(d.data.clone()).unwrap());
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        got
    });

    let q2 = queue.clone();
    let publishing = tokio::spawn(async move {
        for i in 0..TOTAL {
            pch.basic_publish("".into(), q2.as_str().into(), BasicPublishOptions::default(), i.to_string().as_bytes(), Default::default())
                .await
                .expect("publish");
        }
    });

    // While it runs: the publisher (first connection) shows `flow`, the backlog stays bounded.
    let (mut saw_flow, mut max_ready, mut samples) = (false, 0u64, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !consuming.is_finished() {
        assert!(Instant::now() < deadline, "consumer did not finish");
        let st = states(&b).await;
        saw_flow |= st.first().is_some_and(|s| s == "flow");
        max_ready = max_ready.max(ready(&b, &queue).await);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    timeout(publishing).await.unwrap();
    let got = timeout(consuming).await.unwrap();
    let want: Vec<String> = (0..TOTAL).map(|i| i.to_string()).collect();
    assert!(got == want, "messages lost or reordered");
    eprintln!("flow: max ready {max_ready} (limit {LIMIT}) over {samples} samples, flow seen: {saw_flow}");
    assert!(saw_flow, "the publisher never showed state flow");
    // The message that crosses the limit is taken, the rest waits in the socket.
    assert!(max_ready <= LIMIT + 1, "ready backlog {max_ready} above the flow limit {LIMIT}");
    // After the run the state returns to running (flow is shown for a second after the last pause).
    let deadline = Instant::now() + Duration::from_secs(10);
    while states(&b).await.first().map(String::as_str) != Some("running") {
        assert!(Instant::now() < deadline, "publisher still in flow: {:?}", states(&b).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.stop().await;
}

/// A queue without consumers is not flow-controlled (the memory alarm bounds it): a burst far over
/// the limit is taken at full speed.
#[tokio::test]
async fn queue_without_consumers_takes_a_burst() {
    let b = TestBroker::start_with(|c| c.flow.queue_messages = LIMIT).await;
    if b.is_external() {
        return;
    }
    let queue = uniq("flow-burst");
    let (_conn, ch) = b.channel().await;
    named_queue(&ch, &queue).await;
    let ch = confirm_channel(&_conn).await;
    for i in 0..(LIMIT * 3) {
        publish_c(&ch, "", &queue, i.to_string().as_bytes(), Default::default()).await;
    }
    assert_eq!(ready(&b, &queue).await, LIMIT * 3);
    assert_eq!(states(&b).await, ["running"]);
    b.stop().await;
}

/// A connection that consumes from the queue it publishes to is not paused by that queue (its
/// reader must stay free to read the acks the queue is waiting for).
#[tokio::test]
async fn a_connection_consuming_its_own_queue_is_not_paused_by_it() {
    let b = TestBroker::start_with(|c| c.flow.queue_messages = 50).await;
    if b.is_external() {
        return;
    }
    let queue = uniq("flow-self");
    let conn = b.connect().await;
    let pch = timeout(conn.create_channel()).await.unwrap();
    named_queue(&pch, &queue).await;
    let cch = timeout(conn.create_channel()).await.unwrap();
    timeout(cch.basic_qos(1, BasicQosOptions::default())).await.unwrap();
    let mut c = timeout(cch.basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), Default::default()))
        .await
        .unwrap();
    let n = 1500;
    let consuming = tokio::spawn(async move {
        for i in 0..n {
            let d = match tokio::time::timeout(Duration::from_secs(30), c.next()).await {
                Ok(Some(Ok(d))) => d,
                other => panic!("delivery {i} missing: {other:?}"),
            };
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    let q2 = queue.clone();
    let publishing = tokio::spawn(async move {
        for i in 0..n {
            pch.basic_publish("".into(), q2.as_str().into(), BasicPublishOptions::default(), i.to_string().as_bytes(), Default::default())
                .await
                .unwrap();
        }
    });
    let mut saw = Vec::new();
    while !consuming.is_finished() {
        saw.extend(states(&b).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    timeout(consuming).await.unwrap();
    timeout(publishing).await.unwrap();
    assert!(!saw.iter().any(|s| s == "flow"), "paused by its own queue: {saw:?}");
    b.stop().await;
}

/// A persistent publisher without confirms cannot outrun the store writer: its reader pauses while
/// more than `flow.store_pending_bytes` wait for a commit, and every message is stored.
#[tokio::test]
async fn persistent_publisher_is_throttled_to_the_store_writer() {
    const PENDING: u64 = 16 << 10;
    let b = TestBroker::start_with(|c| c.flow.store_pending_bytes = PENDING).await;
    if b.is_external() {
        return;
    }
    let queue = uniq("flow-store");
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, Default::default()))
        .await
        .unwrap();
    let n = 3000;
    let body = vec![7u8; 4096];
    let q2 = queue.clone();
    let publishing = tokio::spawn(async move {
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        for _ in 0..n {
            ch.basic_publish("".into(), q2.as_str().into(), BasicPublishOptions::default(), &body, props.clone()).await.unwrap();
        }
        ch
    });
    let (mut saw_flow, mut max_pending) = (false, 0u64);
    while !publishing.is_finished() {
        saw_flow |= states(&b).await.first().is_some_and(|s| s == "flow");
        let r = b.admin_call("store_status", &[]).await;
        let pending = r.rows.iter().find(|row| row[0] == "pending_bytes").and_then(|row| row[1].as_u64()).unwrap();
        max_pending = max_pending.max(pending);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ch = timeout(publishing).await.unwrap();
    // Every message made it (publishes on one channel are handled in order: once the queue holds
    // the last one, it holds them all).
    let deadline = Instant::now() + WAIT;
    while ready(&b, &queue).await < n {
        assert!(Instant::now() < deadline, "only {} of {n} messages stored", ready(&b, &queue).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("store flow: max pending {max_pending} B (limit {PENDING}), flow seen: {saw_flow}");
    assert!(saw_flow, "the persistent publisher never showed state flow");
    // One record (4 KiB + headers) may cross the limit before the reader pauses.
    assert!(max_pending <= PENDING + 8192, "pending store bytes {max_pending} above the limit {PENDING}");
    b.stop().await;
}
