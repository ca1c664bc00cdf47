//! Starting a broker while another process holds the data directory's lock (real processes):
//! it waits up to `storage.lock_wait_ms` and opens once the lock is released (a previous broker
//! still being torn down after `kill -9`), and is refused with the clear message when the holder
//! keeps running. Then repeated `kill -9` + immediate restart under confirmed publishing.
use crate::common;
use common::process::{Server, free_port};
use common::*;
use lapin::options::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config_file(dir: &std::path::Path, lock_wait_ms: u64) -> std::path::PathBuf {
    let path = dir.join("warren.toml");
    let log = dir.join("logs").join("warren.log");
    std::fs::write(&path, format!("[storage]\nlock_wait_ms = {lock_wait_ms}\n[log]\nfile = {:?}\nconsole = true\n", log.display().to_string()))
        .unwrap();
    path
}

/// Everything the server logged to its log file so far (`config_file` puts it in `dir/logs`).
fn log_text(dir: &std::path::Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir.join("logs")) else { return String::new() };
    entries.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect()
}

fn spawn(data: &std::path::Path, config: &std::path::Path, port: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_warren-server"))
        .args(["--amqp-port", &port.to_string(), "--bind", "127.0.0.1", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("WARREN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren-server")
}

fn wait_listening(child: &mut std::process::Child, port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The lock is held by this test process (a `Store` open on the directory), standing in for a
/// broker that is still exiting: the server waits, logs why, and opens once it is released.
#[tokio::test]
async fn start_waits_for_a_lock_released_within_lock_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let holder = warren::store::Store::open(&data).unwrap();
    let cfg = config_file(tmp.path(), 10_000);
    let port = free_port();
    let mut child = spawn(&data, &cfg, port);
    // It says why it waits (startup before the store, e.g. compiling plugins, takes a while in
    // a debug build), and does not listen while the lock is held.
    let waiting = "is locked by another process (a previous broker still exiting?); waiting up to 10000 ms";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log_text(tmp.path()).contains(waiting) {
        assert!(Instant::now() < deadline, "no waiting line in the log: {}", log_text(tmp.path()));
        assert!(child.try_wait().unwrap().is_none(), "the server gave up while waiting for the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the server gave up while waiting for the lock");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "listening without the store");
    drop(holder);
    assert!(wait_listening(&mut child, port, Duration::from_secs(30)), "server did not start after the lock was released");
    child.kill().unwrap();
    let _ = child.wait();
}

/// A holder that keeps running: refused after the wait, with today's message.
#[tokio::test]
async fn second_broker_on_a_running_directory_is_refused_after_the_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = Server::start_with(&data, free_port(), &[]).await;
    let cfg = config_file(tmp.path(), 600);
    let port = free_port();
    let t = Instant::now();
    let child = spawn(&data, &cfg, port);
    let out = child.wait_with_output().unwrap();
    let waited = t.elapsed();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("warren.redb is already open by another Warren process"), "{log}");
    assert!(log.contains("waiting up to 600 ms"), "{log}");
    assert!(waited >= Duration::from_millis(600), "refused after {waited:?}, before the wait was over");
    // The first broker is untouched.
    let conn = first.connect().await;
    assert!(conn.status().connected());
}

/// `kill -9` and an immediate restart (the old process not reaped first), several times, under
/// confirmed persistent publishing: every restart opens, and every confirmed message is there.
#[tokio::test]
async fn kill9_and_immediate_restart_loses_nothing_confirmed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rounds = 8;
    let mut server = Server::start_with(&data, free_port(), &[]).await;
    let mut confirmed = 0u32;
    for round in 0..rounds {
        let conn = server.connect().await;
        let ch = confirm_channel(&conn).await;
        timeout(ch.queue_declare("kept".into(), QueueDeclareOptions { durable: true, ..Default::default() }, Default::default()))
            .await
            .unwrap();
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        for i in 0..50 {
            publish_c(&ch, "", "kept", format!("{round}-{i}").as_bytes(), props.clone()).await;
            confirmed += 1;
        }
        // Unconfirmed publishes in flight at the kill.
        for _ in 0..50 {
            let _ = ch.basic_publish("".into(), "kept".into(), BasicPublishOptions::default(), b"maybe", props.clone()).await;
        }
        // SIGKILL without waiting for the process to be reaped, then start at once.
        let mut old = server;
        old.child.kill().unwrap();
        // (A new port: the harness must not mistake the dying process's socket for the new one.)
        server = Server::start_with(&data, free_port(), &[]).await;
        let _ = old.child.wait();
    }
    let conn = server.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = timeout(ch.queue_declare("kept".into(), QueueDeclareOptions { passive: true, ..Default::default() }, Default::default()))
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    loop {
        match timeout(ch.basic_get("kept".into(), BasicGetOptions { no_ack: true })).await.unwrap() {
            Some(m) => {
                seen.insert(String::from_utf8_lossy(&m.delivery.data).into_owned());
            }
            None => break,
        }
    }
    let missing: Vec<String> =
        (0..rounds).flat_map(|r| (0..50).map(move |i| format!("{r}-{i}"))).filter(|k| !seen.contains(k)).collect();
    eprintln!("{rounds} kill -9 restarts: {confirmed} confirmed, {} in the queue, {} confirmed missing", q.message_count(), missing.len());
    assert!(missing.is_empty(), "confirmed messages lost: {missing:?}");
}
