//! A panic inside a Rust guest: its message reaches the broker's log (the guest's panic hook
//! sends it through the host `log` import before the `unreachable` trap), and the publishing
//! channel is closed with 541 as for any trap.
#[path = "integration/common/mod.rs"]
mod common;
use common::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything the broker logs, kept for the test to read.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_panic_message_reaches_the_broker_log() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt().with_env_filter("warren=info").with_ansi(false).with_writer(move || writer.clone()).init();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/fixtures/trap-nth.wasm"), plugins.join("trap-nth.wasm")).unwrap();
    std::fs::write(dir.path().join("enabled_plugins"), "['trap-nth'].\n").unwrap();
    let server = timeout(warren::server::start(warren::config::Config::for_tests(dir.path()))).await.unwrap();
    let uri = format!("amqp://guest:guest@{}/%2f", server.amqp_addr);
    let c = timeout(Connection::connect(&uri, ConnectionProperties::default())).await.unwrap();
    let ch = confirm_channel(&c).await;
    timeout(ch.exchange_declare("tn".into(), ExchangeKind::Custom("x-fixture-trap-nth".into()), Default::default(), FieldTable::default()))
        .await
        .unwrap();
    // Every third route panics (config key n, default 3).
    publish_c(&ch, "tn", "a", b"1", Default::default()).await;
    publish_c(&ch, "tn", "b", b"2", Default::default()).await;
    let (code, text) = error_after(&ch, ch.basic_publish("tn".into(), "c".into(), Default::default(), b"3", Default::default())).await;
    assert_eq!(code, 541, "{text}");
    let logged = log.text();
    let line = logged.lines().find(|l| l.contains("trap-nth fixture: call 3")).unwrap_or_else(|| panic!("no panic message in the log:\n{logged}"));
    assert!(line.contains("ERROR") && line.contains("plugin=") && line.contains("panicked at"), "{line}");
    server.shutdown().await;
}
