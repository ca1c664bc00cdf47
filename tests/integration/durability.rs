//! Durability across restarts of a real `warren-server` process: definitions and confirmed
//! persistent messages survive `kill -9`; transient ones do not.
use crate::common;
use common::timeout;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{Server, free_port};

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// Reads every ready message of `q` with basic.get (acking them): (body as number, redelivered).
async fn drain(ch: &lapin::Channel, q: &str) -> Vec<(u64, bool)> {
    let mut out = Vec::new();
    while let Some(m) = timeout(ch.basic_get(q.into(), BasicGetOptions::default())).await.unwrap() {
        let n = std::str::from_utf8(&m.delivery.data).unwrap().parse().unwrap();
        out.push((n, m.delivery.redelivered));
        timeout(m.delivery.acker.ack(Default::default())).await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_durable_definitions_and_persistent_messages_only() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    let mut durable = ExchangeDeclareOptions::default();
    durable.durable = true;
    timeout(ch.exchange_declare("dx".into(), lapin::ExchangeKind::Topic, durable, FieldTable::default())).await.unwrap();
    timeout(ch.exchange_declare("tx".into(), lapin::ExchangeKind::Fanout, Default::default(), FieldTable::default())).await.unwrap();
    let dq = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("dq".into(), dq, FieldTable::default())).await.unwrap();
    timeout(ch.queue_declare("tq".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_bind("dq".into(), "dx".into(), "k.#".into(), Default::default(), FieldTable::default())).await.unwrap();
    for i in 0..20u64 {
        let props = if i % 2 == 0 { persistent() } else { BasicProperties::default() };
        let c = timeout(ch.basic_publish("dx".into(), "k.x".into(), Default::default(), i.to_string().as_bytes(), props)).await.unwrap();
        timeout(c).await.unwrap();
    }
    // Ack two of the persistent ones, then give the group commit a moment.
    for _ in 0..2 {
        let m = timeout(ch.basic_get("dq".into(), BasicGetOptions::default())).await.unwrap().unwrap();
        timeout(m.delivery.acker.ack(Default::default())).await.unwrap();
    }
    timeout(ch.queue_declare("dq".into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(conn);
    s.kill9();

    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let got = drain(&ch, "dq").await;
    let bodies: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(bodies, vec![2, 4, 6, 8, 10, 12, 14, 16, 18], "persistent, unacked (0 and 1 were acked), in order; transient gone");
    assert!(got.iter().all(|(_, r)| *r), "recovered messages are flagged redelivered");
    // The durable binding is back: routing through dx reaches dq again.
    let c = timeout(ch.basic_publish("dx".into(), "k.y".into(), Default::default(), b"99", persistent())).await.unwrap();
    drop(c);
    let m = timeout(async {
        loop {
            if let Some(m) = ch.basic_get("dq".into(), BasicGetOptions { no_ack: true }).await.unwrap() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(&m.delivery.data[..], b"99");
    // Transient objects are gone.
    let ch2 = timeout(conn.create_channel()).await.unwrap();
    let err = timeout(ch2.queue_declare("tq".into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NOT_FOUND"), "{err}");
    let ch3 = timeout(conn.create_channel()).await.unwrap();
    let err = timeout(ch3.exchange_declare("tx".into(), lapin::ExchangeKind::Fanout, ExchangeDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NOT_FOUND"), "{err}");
}

/// Publishers with confirms send numbered persistent messages while the server is killed with
/// SIGKILL; after the restart every confirmed message is there exactly once, in order, and
/// nothing that was never published appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_sigkill_at_several_points() {
    for (round, kill_after_ms) in [40u64, 120, 250, 400].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let s = Server::start_with(dir.path(), port, &[]).await;
        let conn = s.connect().await;
        let ch = timeout(conn.create_channel()).await.unwrap();
        timeout(ch.confirm_select(Default::default())).await.unwrap();
        let dq = QueueDeclareOptions { durable: true, ..Default::default() };
        timeout(ch.queue_declare("crash".into(), dq, FieldTable::default())).await.unwrap();

        // Acked messages must stay gone: publish 10, ack 0..5, let the removal commit.
        for i in 0..10u64 {
            let c = timeout(ch.basic_publish("".into(), "crash".into(), Default::default(), i.to_string().as_bytes(), persistent())).await.unwrap();
            timeout(c).await.unwrap();
        }
        for _ in 0..5 {
            let m = timeout(ch.basic_get("crash".into(), BasicGetOptions::default())).await.unwrap().unwrap();
            timeout(m.delivery.acker.ack(Default::default())).await.unwrap();
        }
        timeout(ch.basic_recover(BasicRecoverOptions { requeue: true })).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        // Publish with up to 64 confirms outstanding until the kill.
        let confirmed = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<u64>::new()));
        let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(10));
        let pub_task = {
            let (ch, confirmed, published) = (ch.clone(), confirmed.clone(), published.clone());
            tokio::spawn(async move {
                let mut inflight = std::collections::VecDeque::new();
                for i in 10u64.. {
                    let Ok(c) = ch.basic_publish("".into(), "crash".into(), Default::default(), i.to_string().as_bytes(), persistent()).await else { break };
                    published.store(i + 1, std::sync::atomic::Ordering::SeqCst);
                    inflight.push_back((i, c));
                    if inflight.len() >= 64 {
                        let (n, c) = inflight.pop_front().unwrap();
                        match c.await {
                            Ok(conf) if conf.is_ack() => confirmed.lock().push(n),
                            _ => break,
                        }
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        s.kill9();
        let _ = tokio::time::timeout(Duration::from_secs(5), pub_task).await;
        let confirmed = confirmed.lock().clone();
        let published = published.load(std::sync::atomic::Ordering::SeqCst);

        let s = Server::start_with(dir.path(), port, &[]).await;
        let conn = s.connect().await;
        let ch = timeout(conn.create_channel()).await.unwrap();
        let got: Vec<u64> = drain(&ch, "crash").await.into_iter().map(|(n, _)| n).collect();
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, got, "round {round}: in order, no duplicates");
        assert!(got.iter().all(|n| (5..published).contains(n)), "round {round}: only published, unacked messages: {got:?}");
        for n in 5..10 {
            assert!(got.contains(&n), "round {round}: unacked message {n} lost");
        }
        for n in &confirmed {
            assert!(got.contains(n), "round {round}: confirmed message {n} lost (confirmed {})", confirmed.len());
        }
        eprintln!("round {round}: killed after {kill_after_ms} ms, {} confirmed, {} recovered", confirmed.len(), got.len());
    }
}

/// Runs the real `warrenctl` against the server's data directory; (exit code, stdout).
pub(crate) fn warrenctl(data: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run warrenctl");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// The AMQP port listens before the broker has opened its store; the control socket comes after.
pub(crate) async fn wait_for_control_socket(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(data.join("warren.sock")).is_err() {
        assert!(Instant::now() < deadline, "no control socket in {}", data.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[track_caller]
fn ctl_ok(data: &Path, args: &[&str]) -> String {
    let (code, out) = warrenctl(data, args);
    assert_eq!(code, 0, "warrenctl {args:?}: {out}");
    out
}

async fn connect_as(port: u16, user: &str, pass: &str, vhost_enc: &str) -> Result<Connection, lapin::Error> {
    let uri = format!("amqp://{user}:{pass}@127.0.0.1:{port}/{vhost_enc}");
    timeout(Connection::connect(&uri, ConnectionProperties::default())).await
}

/// Issue 5: users, vhosts and permissions made with warrenctl survive kill -9 with the durable
/// queue of the new vhost and its persistent message; a deleted user stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vhosts_and_permissions_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let port = free_port();
    let s = Server::start_with(data, port, &[]).await;
    wait_for_control_socket(data).await;
    for args in [
        &["add_user", "alice", "s3cret"][..],
        &["add_user", "bob", "pw"],
        &["add_user", "carol", "old"],
        &["change_password", "carol", "new"],
        &["set_user_tags", "alice", "monitoring", "management"],
        &["add_vhost", "v1"],
        &["add_vhost", "gone"],
        &["set_permissions", "-p", "v1", "alice", "^a-", "^a-|^amq\\.default$", "^a-"],
        &["set_permissions", "-p", "v1", "bob", ".*", ".*", ".*"],
        &["set_permissions", "-p", "v1", "carol", ".*", ".*", ".*"],
        &["clear_permissions", "-p", "v1", "carol"],
        &["set_permissions", "-p", "gone", "alice", ".*", ".*", ".*"],
    ] {
        ctl_ok(data, args);
    }
    // alice declares a durable queue in v1 and leaves a persistent, confirmed message in it.
    let conn = connect_as(port, "alice", "s3cret", "v1").await.expect("alice logs in to v1");
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    let dq = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("a-q".into(), dq, FieldTable::default())).await.unwrap();
    let c = timeout(ch.basic_publish("".into(), "a-q".into(), Default::default(), b"7", persistent())).await.unwrap();
    assert!(timeout(c).await.unwrap().is_ack());
    ctl_ok(data, &["delete_user", "bob"]);
    ctl_ok(data, &["delete_vhost", "gone"]);
    drop(conn);
    s.kill9();

    let s = Server::start_with(data, port, &[]).await;
    wait_for_control_socket(data).await;
    assert_eq!(
        ctl_ok(data, &["list_users", "-q"]),
        "user\ttags\nalice\t[monitoring, management]\ncarol\t[]\nguest\t[administrator]\n",
        "bob stays deleted"
    );
    assert_eq!(ctl_ok(data, &["list_vhosts", "-q"]), "name\n/\nv1\n");
    assert_eq!(ctl_ok(data, &["list_permissions", "-q", "-p", "v1"]), "user\tconfigure\twrite\tread\nalice\t^a-\t^a-|^amq\\.default$\t^a-\n");
    assert_eq!(ctl_ok(data, &["list_user_permissions", "-q", "alice"]), "vhost\tconfigure\twrite\tread\nv1\t^a-\t^a-|^amq\\.default$\t^a-\n");
    assert_eq!(ctl_ok(data, &["authenticate_user", "-q", "carol", "new"]), "Success\n");
    // alice's login, queue, message and permissions are back.
    let conn = connect_as(port, "alice", "s3cret", "v1").await.expect("alice logs in after the restart");
    let ch = timeout(conn.create_channel()).await.unwrap();
    let got = drain(&ch, "a-q").await;
    assert_eq!(got, vec![(7, true)]);
    let err = timeout(ch.queue_declare("b-q".into(), Default::default(), FieldTable::default())).await.unwrap_err();
    assert_eq!(
        common::amqp_error(&err),
        Some((403, "ACCESS_REFUSED - access to queue 'b-q' in vhost 'v1' refused for user 'alice'".to_string()))
    );
    // bob cannot log in; carol can log in but has no permissions on v1 any more; alice has none on /.
    assert!(connect_as(port, "bob", "pw", "v1").await.is_err());
    let e = connect_as(port, "carol", "new", "v1").await.unwrap_err();
    assert_eq!(common::amqp_error(&e), Some((530, "NOT_ALLOWED - access to vhost 'v1' refused for user 'carol'".to_string())));
    let e = connect_as(port, "alice", "s3cret", "%2f").await.unwrap_err();
    assert_eq!(common::amqp_error(&e), Some((530, "NOT_ALLOWED - access to vhost '/' refused for user 'alice'".to_string())));
    let e = connect_as(port, "alice", "s3cret", "gone").await.unwrap_err();
    assert_eq!(common::amqp_error(&e), Some((530, "NOT_ALLOWED - vhost gone not found".to_string())));
    drop(conn);
    s.kill9();
}

/// x-delivery-count of a quorum queue's message as delivered.
fn delivery_count(m: &lapin::message::BasicGetMessage) -> Option<i64> {
    match m.delivery.properties.headers().as_ref()?.inner().get("x-delivery-count")? {
        lapin::types::AMQPValue::LongLongInt(n) => Some(*n),
        other => panic!("x-delivery-count {other:?}"),
    }
}

/// A quorum queue's x-delivery-count survives `kill -9`: a message returned twice comes back
/// with 2 (then 3 after one more return; past x-delivery-limit 3 it is dropped), one never
/// returned with 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_delivery_count_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    let args = common::ft(&[("x-queue-type", common::lstr("quorum")), ("x-delivery-limit", lapin::types::AMQPValue::LongInt(3))]);
    let opts = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("qq".into(), opts, args)).await.unwrap();
    for body in ["returned", "fresh"] {
        let c = timeout(ch.basic_publish("".into(), "qq".into(), Default::default(), body.as_bytes(), BasicProperties::default())).await.unwrap();
        timeout(c).await.unwrap();
    }
    for expected in [0, 1] {
        let m = timeout(ch.basic_get("qq".into(), BasicGetOptions::default())).await.unwrap().unwrap();
        assert_eq!((&m.delivery.data[..], delivery_count(&m)), (&b"returned"[..], Some(expected)));
        timeout(m.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() })).await.unwrap();
    }
    // The rewritten record is committed with the next batch: wait for the confirm of a
    // persistent message stored after it.
    timeout(ch.queue_declare("sync".into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())).await.unwrap();
    let c = timeout(ch.basic_publish("".into(), "sync".into(), Default::default(), b"x", persistent())).await.unwrap();
    timeout(c).await.unwrap();
    drop(conn);
    s.kill9();

    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let m = timeout(ch.basic_get("qq".into(), BasicGetOptions::default())).await.unwrap().unwrap();
    assert_eq!((&m.delivery.data[..], delivery_count(&m), m.delivery.redelivered), (&b"returned"[..], Some(2), true));
    timeout(m.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() })).await.unwrap();
    let m = timeout(ch.basic_get("qq".into(), BasicGetOptions::default())).await.unwrap().unwrap();
    assert_eq!((&m.delivery.data[..], delivery_count(&m)), (&b"returned"[..], Some(3)));
    timeout(m.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() })).await.unwrap();
    let m = timeout(ch.basic_get("qq".into(), BasicGetOptions::default())).await.unwrap().unwrap();
    assert_eq!((&m.delivery.data[..], delivery_count(&m)), (&b"fresh"[..], Some(0)), "'returned' went past the limit");
    timeout(m.delivery.acker.ack(Default::default())).await.unwrap();
    assert!(timeout(ch.basic_get("qq".into(), BasicGetOptions::default())).await.unwrap().is_none());
    drop(conn);
    s.kill9();
}

/// x-expires counts again from the recovery, as in RabbitMQ: a queue that would have expired
/// during the downtime is still there just after the restart, and goes once unused for its
/// period (polled; no speed is asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_expiry_restarts_from_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let args = common::ft(&[("x-expires", lapin::types::AMQPValue::LongInt(4000))]);
    let declared = Instant::now();
    timeout(ch.queue_declare("exp".into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)).await.unwrap();
    drop(conn);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    s.kill9();
    let s = Server::start_with(dir.path(), port, &[]).await;
    // Past the queue's original deadline, but within its period from the recovery.
    let deadline = declared + Duration::from_millis(4500);
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
    let conn = s.connect().await;
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    // A passive declare uses the queue (restarts its countdown); list it over the CLI instead.
    let list = || {
        let out = Command::new(env!("CARGO_BIN_EXE_warrenctl")).arg("--data-dir").arg(dir.path()).args(["list_queues", "-q", "name"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "exp")
    };
    assert!(list(), "the queue expired on the clock of before the restart");
    let gone_by = Instant::now() + Duration::from_secs(30);
    while list() {
        assert!(Instant::now() < gone_by, "the queue never expired after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch.queue_declare("exp".into(), passive, FieldTable::default())).await;
    assert_eq!(common::amqp_error(&r.unwrap_err()).map(|e| e.0), Some(404));
    drop(conn);
    s.kill9();
}
