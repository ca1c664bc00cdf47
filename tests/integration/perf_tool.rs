//! warren-perf, the load generator, measured against a real broker: its raw client (the default)
//! and its lapin client publish, consume, confirm and ack what they say they did.
use crate::common;
use common::*;
use serde_json::Value;
use std::time::Duration;

/// Runs warren-perf with `args` and returns its JSON summary line.
async fn perf(uri: &str, args: &[&str]) -> Value {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren-perf"))
        .arg("--uri")
        .arg(uri)
        .args(["--json", "--quiet"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("warren-perf finished").expect("warren-perf ran");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "warren-perf {args:?} failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let json = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON summary in {stdout}"));
    serde_json::from_str(json).unwrap()
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// One queue (`perf-q-0`), so the runs go one after the other in a single test.
#[tokio::test]
async fn raw_and_lapin_clients_count_what_reached_the_broker() {
    let broker = TestBroker::start().await;
    let uri = broker.uri();

    // A timed second, pipelined, autoack: both directions moved messages, none received unsent.
    let v = perf(&uri, &["-z", "1", "-a"]).await;
    assert_eq!(v["client"], "raw");
    let (sent, received) = (count(&v, "sent"), count(&v, "received"));
    assert!(sent > 1000 && received > 1000, "{v}");
    assert!(received <= sent, "{v}");
    assert!(v["latency_us"]["p99"].as_u64().unwrap() >= 1, "{v}");

    // Counted: 3,000 messages of 10,000 bytes with frame_max 4096 (bodies in 3 frames each),
    // confirms (at most 50 outstanding), prefetch 20 and an ack with multiple=true every 7.
    let small_frames = format!("{uri}?frame_max=4096");
    let v = perf(&small_frames, &["-C", "3000", "-D", "3000", "-s", "10000", "--confirm", "50", "-q", "20", "--multi-ack", "7"]).await;
    assert_eq!((count(&v, "sent"), count(&v, "received"), count(&v, "confirmed"), count(&v, "nacked")), (3000, 3000, 3000, 0), "{v}");

    // One message per write, persistent into a durable queue, each confirmed before the next.
    let v = perf(&uri, &["-C", "500", "-D", "500", "--batch", "1", "--confirm", "1", "--persistent"]).await;
    assert_eq!((count(&v, "sent"), count(&v, "received"), count(&v, "confirmed")), (500, 500, 500), "{v}");
    assert!(v["confirm_latency_us"]["p50"].as_u64().unwrap() >= 1, "{v}");

    // The acks reached the broker: nothing is left in the queue, nothing unacknowledged.
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare("perf-q-0".into(), lapin::options::QueueDeclareOptions { passive: true, ..Default::default() }, Default::default())
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    ch.queue_delete("perf-q-0".into(), Default::default()).await.unwrap();

    // Draining a backlog (-x 0): deliveries that arrive together with consume-ok are counted,
    // with prefetch 5 the consumer would otherwise wait forever for more.
    let q = ch
        .queue_declare("perf-q-0".into(), Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    ch.confirm_select(Default::default()).await.unwrap();
    for i in 0..50u64 {
        let confirm = ch
            .basic_publish("".into(), "perf-q-0".into(), Default::default(), &i.to_le_bytes(), Default::default())
            .await
            .unwrap();
        assert!(confirm.await.unwrap().is_ack());
    }
    let v = perf(&uri, &["--keep-queues", "-x", "0", "-D", "50", "-q", "5", "-z", "20"]).await;
    assert_eq!(count(&v, "received"), 50, "{v}");
    assert!(v["duration_s"].as_f64().unwrap() < 10.0, "{v}");
    ch.queue_delete("perf-q-0".into(), Default::default()).await.unwrap();

    // The lapin client, counted, for comparison.
    let v = perf(&uri, &["--client", "lapin", "-C", "2000", "-D", "2000", "--confirm", "100"]).await;
    assert_eq!(v["client"], "lapin");
    assert_eq!((count(&v, "sent"), count(&v, "received"), count(&v, "confirmed")), (2000, 2000, 2000), "{v}");

    // --batch belongs to the raw client.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren-perf"))
        .args(["--uri", &uri, "--client", "lapin", "--batch", "4", "-z", "1"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch applies to --client raw only"));
}
