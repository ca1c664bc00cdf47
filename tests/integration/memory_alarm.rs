//! The memory alarm (RabbitMQ's vm_memory_high_watermark) over real sockets: a watermark below
//! the broker's resident memory blocks publishers with connection.blocked "low on memory"; the
//! memory and disk alarms together hold one block (no second connection.blocked) released only
//! when both clear; `status` and `warrenctl` show the setting as rabbitmqctl does.
use crate::common;
use amq_protocol::protocol::{AMQPClass, basic, connection, queue as q};
use common::*;
use std::time::{Duration, Instant};

async fn status(b: &TestBroker) -> serde_json::Map<String, serde_json::Value> {
    let r = b.admin_call("status", &[]).await;
    r.rows.iter().map(|row| (row[0].as_str().unwrap().to_owned(), row[1].clone())).collect()
}

async fn states(b: &TestBroker) -> Vec<String> {
    let r = b.admin_call("list_connections", &["pid", "state"]).await;
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

async fn set_watermark(b: &TestBroker, args: &[&str], shown: &str) {
    let r = b.admin_call("set_vm_memory_high_watermark", args).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.message.as_deref(), Some(format!("Setting memory threshold on warren@localhost to {shown} ...").as_str()));
}

fn passive_declare(name: &str) -> AMQPClass {
    AMQPClass::Queue(q::AMQPMethod::Declare(q::Declare { queue: name.into(), passive: true, ..Default::default() }))
}

async fn expect_declare_ok(c: &mut RawClient) -> u32 {
    match c.read_method(WAIT).await {
        Ok((1, AMQPClass::Queue(q::AMQPMethod::DeclareOk(ok)))) => ok.message_count,
        other => panic!("expected declare-ok, got {other:?}"),
    }
}

#[tokio::test]
async fn memory_alarm_blocks_publishers_and_shares_the_block_with_the_disk_alarm() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return; // needs the control socket
    }
    let queue = uniq("mem-alarm");
    let st = status(&b).await;
    assert_eq!(st["alarms"], serde_json::json!([]), "{st:?}");
    assert_eq!(st["vm_memory_high_watermark_setting"], serde_json::json!({"relative": 0.4}));
    assert_eq!(st["vm_memory_calculation_strategy"], serde_json::json!("rss"));
    let used = st["memory_used"].as_u64().unwrap();
    assert!(used > 1 << 20, "resident memory of the broker: {used}");

    let mut a = b.raw_open().await;
    a.send_method(1, AMQPClass::Queue(q::AMQPMethod::Declare(q::Declare { queue: queue.as_str().into(), ..Default::default() })))
        .await;
    expect_declare_ok(&mut a).await;

    // A tiny absolute watermark: the broker's own footprint is above it.
    set_watermark(&b, &["absolute", "1MiB"], "1MiB bytes").await;
    let st = status(&b).await;
    assert_eq!(st["alarms"], alarm_objects(&["memory"]), "{st:?}");
    assert_eq!(st["vm_memory_high_watermark_setting"], serde_json::json!({"absolute": 1u64 << 20}));
    assert_eq!(st["vm_memory_high_watermark_limit"], serde_json::json!(1u64 << 20));
    wait_states(&b, &["blocking"]).await;

    a.publish(1, "", &queue, basic::AMQPProperties::default(), b"m1").await;
    a.send_method(1, passive_declare(&queue)).await;
    match a.read_method(WAIT).await {
        Ok((0, AMQPClass::Connection(connection::AMQPMethod::Blocked(bl)))) => assert_eq!(bl.reason.as_str(), "low on memory"),
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    wait_states(&b, &["blocked"]).await;
    assert!(matches!(a.read_method(QUIET).await, Err(ReadError::Timeout)), "a blocked connection answered");

    // The disk alarm too: no second connection.blocked; clearing memory alone does not unblock.
    let r = b.admin_call("set_disk_free_limit", &["1000000GB"]).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(status(&b).await["alarms"], alarm_objects(&["disk", "memory"]));
    set_watermark(&b, &["0.4"], "0.4").await;
    assert_eq!(status(&b).await["alarms"], alarm_objects(&["disk"]));
    assert!(matches!(a.read_method(QUIET).await, Err(ReadError::Timeout)), "unblocked while the disk alarm is set");
    wait_states(&b, &["blocked"]).await;

    // The last alarm clears: connection.unblocked, then the held declare sees the message.
    let r = b.admin_call("set_disk_free_limit", &["50MB"]).await;
    assert!(r.error.is_none(), "{r:?}");
    match a.read_method(WAIT).await {
        Ok((0, AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)))) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    assert_eq!(expect_declare_ok(&mut a).await, 1, "the message published during the alarm was lost");
    wait_states(&b, &["running"]).await;
    b.stop().await;
}

/// A watermark in the config file below the broker's footprint: the alarm is in effect before the
/// first client; a consume-only connection still gets its messages.
#[tokio::test]
async fn memory_watermark_from_config_blocks_from_the_start_but_not_consumers() {
    let b = TestBroker::start_with(|c| c.memory.high_watermark = warren::alarm::Watermark::Absolute(1 << 20)).await;
    if b.is_external() {
        return;
    }
    assert_eq!(status(&b).await["alarms"], alarm_objects(&["memory"]));
    // Queue a message while the alarm is briefly lifted, then alarm again.
    let queue = uniq("mem-cfg");
    set_watermark(&b, &["1.0"], "1.0").await;
    let (_pc, pch) = b.channel().await;
    named_queue(&pch, &queue).await;
    publish(&pch, "", &queue, b"kept").await;
    set_watermark(&b, &["absolute", "1000"], "1000 bytes").await;
    let (_cc, cch) = b.channel().await;
    let mut consumer = timeout(cch.basic_consume(
        queue.as_str().into(),
        "".into(),
        lapin::options::BasicConsumeOptions { no_ack: true, ..Default::default() },
        Default::default(),
    ))
    .await
    .unwrap();
    let d = next_delivery(&mut consumer, WAIT).await.expect("a consumer keeps receiving during a memory alarm");
    assert_eq!(d.data, b"kept");
    wait_states(&b, &["blocking", "blocking"]).await;
    b.stop().await;
}

#[tokio::test]
async fn warrenctl_memory_watermark_and_status_as_rabbitmqctl() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return;
    }
    let out = b.ctl_ok(&["set_vm_memory_high_watermark", "absolute", "1GiB"]).await.unwrap();
    assert_eq!(out, "Setting memory threshold on warren@localhost to 1GiB bytes ...\n");
    let out = b.ctl_ok(&["status"]).await.unwrap();
    assert!(out.contains("\n\x1b[1mMemory\x1b[0m\n\nTotal memory used: "), "{out}");
    assert!(out.contains("\nCalculation strategy: rss\n"), "{out}");
    assert!(out.contains("\nMemory high watermark setting: 1.0737 gb, computed to: 1.0737 gb\n"), "{out}");
    assert!(out.contains("\x1b[1mAlarms\x1b[0m\n\n(none)\n"), "{out}");

    let out = b.ctl_ok(&["set_vm_memory_high_watermark", "0.0000001"]).await.unwrap();
    assert_eq!(out, "Setting memory threshold on warren@localhost to 0.0000001 ...\n");
    let out = b.ctl_ok(&["status"]).await.unwrap();
    assert!(out.contains("\nMemory alarm on node warren@localhost\n"), "{out}");
    assert!(out.contains("\nMemory high watermark setting: 0.0000001 of available memory, computed to: "), "{out}");
    // rabbitmqctl status --formatter json: alarms as RabbitMQ's CLI gives them.
    let out = b.ctl_ok(&["status", "--formatter", "json"]).await.unwrap();
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["alarms"], serde_json::json!([{"node": "warren@localhost", "resource": "memory", "type": "resource_limit"}]));

    for (args, code, text) in [
        (&["1.5"][..], 65, "Error (argument validation): Bad argument: The threshold should be a fraction between 0.0 and 1.0\n"),
        (&["absolute", "1.5GB"][..], 65, "Error (argument validation): Bad argument: The threshold should be an integer.\n"),
        (&["absolute", "lots"][..], 65, "Error (argument validation): Bad argument.\n"),
        (&["abc"][..], 65, "Error (argument validation): Bad argument.\n"),
        (&["absolute"][..], 64, "Error (argument validation): not enough arguments.\n"),
    ] {
        let mut full = vec!["set_vm_memory_high_watermark"];
        full.extend_from_slice(args);
        let (rc, _out, err) = b.ctl(&full).await.unwrap();
        assert_eq!(rc, code, "{args:?}: {err}");
        assert!(err.starts_with(text), "{args:?}: {err}");
    }
    // The refused values changed nothing.
    assert_eq!(status(&b).await["alarms"], alarm_objects(&["memory"]));
    b.ctl_ok(&["set_vm_memory_high_watermark", "0.4"]).await.unwrap();
    assert_eq!(status(&b).await["alarms"], serde_json::json!([]));
    b.stop().await;
}
