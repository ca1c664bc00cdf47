//! The broker's log as an operator sees it (a real `warren-server` process): channel and
//! connection errors sent to clients are logged in RabbitMQ's words, stderr that is not a
//! terminal gets no ANSI colour codes, and `[log] file` writes the same lines to a file.
use crate::common;
use common::process::free_port;
use common::*;
use lapin::options::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(data: &std::path::Path, config: Option<&std::path::Path>, port: u16) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warren-server"));
    c.args(["--amqp-port", &port.to_string(), "--bind", "127.0.0.1", "--data-dir"]).arg(data);
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    let mut child = c.env_remove("WARREN_LOG").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn warren-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "warren-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A 404 and a 406 on channels, then a connection error (a frame on a channel never opened).
async fn provoke_errors(port: u16) {
    let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let conn = timeout(lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())).await.unwrap();
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = ch.queue_declare("no-such-queue-logged".into(), QueueDeclareOptions { passive: true, ..Default::default() }, Default::default()).await;
    assert!(r.is_err());
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = ch.basic_ack(99, BasicAckOptions::default()).await;
    assert!(r.is_ok());
    // The 406 comes back as channel.close; wait for it to be processed.
    let deadline = Instant::now() + WAIT;
    while ch.status().connected() {
        assert!(Instant::now() < deadline, "no channel.close for an unknown delivery tag");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = conn.close(200, "bye".into()).await;
    let mut raw = RawClient::handshake(format!("127.0.0.1:{port}").parse().unwrap(), HandshakeOpts::default()).await;
    raw.send_method(
        5,
        amq_protocol::protocol::AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(Default::default())),
    )
    .await;
    let (code, _, _, _) = raw.expect_connection_close().await;
    assert_eq!(code, 504);
}

fn stop(mut child: std::process::Child) -> String {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    err
}

fn assert_rabbitmq_lines(log: &str) {
    assert!(
        log.contains("Channel error on connection ")
            && log.contains(", vhost: '/', user: 'guest'), channel 1:\noperation queue.declare caused a channel exception not_found: no queue 'no-such-queue-logged' in vhost '/'"),
        "{log}"
    );
    assert!(
        log.contains("channel 2:\noperation basic.ack caused a channel exception precondition_failed: unknown delivery tag 99"),
        "{log}"
    );
    assert!(
        log.contains("Error on AMQP connection ")
            && log.contains(", vhost: '/', user: 'guest', state: running), channel 5:\n operation queue.declare caused a connection exception channel_error: \"expected 'channel.open'\""),
        "{log}"
    );
}

#[tokio::test]
async fn errors_are_logged_as_rabbitmq_and_stderr_has_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = start(&tmp.path().join("data"), None, port);
    provoke_errors(port).await;
    let log = stop(child);
    assert_rabbitmq_lines(&log);
    assert!(!log.contains('\x1b'), "ANSI escape codes in a non-terminal stderr:\n{log}");
}

#[tokio::test]
async fn log_file_gets_the_lines_and_stderr_stays_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("logs/warren.log");
    let cfg = tmp.path().join("warren.toml");
    std::fs::write(&cfg, format!("[log]\nfile = {:?}\nrotation = \"daily\"\nrotation_count = 3\n", file.display().to_string())).unwrap();
    let port = free_port();
    let child = start(&tmp.path().join("data"), Some(&cfg), port);
    provoke_errors(port).await;
    let stderr = stop(child);
    assert!(!stderr.contains("Channel error"), "without console = true nothing goes to stderr: {stderr}");
    // Daily rotation: the file carries the date suffix.
    let written: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(written[0].file_name().unwrap().to_string_lossy().starts_with("warren.log."), "{written:?}");
    let log = std::fs::read_to_string(&written[0]).unwrap();
    assert_rabbitmq_lines(&log);
    assert!(!log.contains('\x1b'), "ANSI escape codes in the log file");
    assert!(log.contains("started TCP listener for AMQP 0-9-1"), "{log}");
}

#[tokio::test]
async fn a_bad_log_rotation_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("warren.toml");
    std::fs::write(&cfg, "[log]\nfile = \"x.log\"\nrotation = \"weekly\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warren-server"))
        .args(["--amqp-port", "0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid log rotation \"weekly\""), "{out:?}");
}

/// `[log] rotation_size` (RabbitMQ's log.file.rotation.size): a broker whose log outgrows the
/// size moves it to `<file>.1`, `<file>.2`, keeping `rotation_count` of them, every file about
/// the size; the lines are all there, in order across the files.
#[tokio::test]
async fn log_file_rotates_by_size() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("logs/warren.log");
    let cfg = tmp.path().join("warren.toml");
    std::fs::write(&cfg, format!("[log]\nfile = {:?}\nrotation_size = 4000\nrotation_count = 2\n", file.display().to_string())).unwrap();
    let port = free_port();
    let child = start(&tmp.path().join("data"), Some(&cfg), port);
    // Each connection logs two lines (accepted, authenticated) of about 150 bytes: ~30 KB.
    for _ in 0..100 {
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let conn = timeout(lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())).await.unwrap();
        let _ = conn.close(200, "bye".into()).await;
    }
    provoke_errors(port).await;
    stop(child);
    let dir = file.parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["warren.log", "warren.log.1", "warren.log.2"]);
    for n in &names {
        let len = std::fs::metadata(dir.join(n)).unwrap().len();
        assert!(len < 4000 + 1000, "{n} holds {len} bytes");
    }
    let log: String = ["warren.log.2", "warren.log.1", "warren.log"].iter().map(|n| std::fs::read_to_string(dir.join(n)).unwrap()).collect();
    assert_rabbitmq_lines(&log);
    assert!(!log.contains("started TCP listener"), "the oldest lines were rotated away");
}

#[tokio::test]
async fn log_rotation_by_time_and_size_together_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("warren.toml");
    std::fs::write(&cfg, format!("[log]\nfile = {:?}\nrotation = \"daily\"\nrotation_size = 10000\n", tmp.path().join("x.log").display().to_string())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warren-server"))
        .args(["--amqp-port", "0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rotate by time or by size, not both"), "{out:?}");
}
