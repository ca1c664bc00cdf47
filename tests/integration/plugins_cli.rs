//! `warren-plugins` as rabbitmq-plugins over a running broker: the plugins shipped inside the
//! binary on a fresh data directory, RabbitMQ's plugin names as aliases, `list` filters,
//! `set`, `is_enabled`, `directories`, files that cannot load flagged with their whole reason,
//! and bindings made while a type's plugin is disabled.
use crate::common;
use common::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use std::process::Command;

struct Broker {
    server: Option<warren::server::ServerHandle>,
    dir: tempfile::TempDir,
    uri: String,
}

impl Broker {
    async fn start() -> Broker {
        let _ = tracing_subscriber::fmt().with_env_filter("warren=info").with_test_writer().try_init();
        let dir = tempfile::tempdir().unwrap();
        let server = timeout(warren::server::start(warren::config::Config::for_tests(dir.path()))).await.unwrap();
        let uri = format!("amqp://guest:guest@{}/%2f", server.amqp_addr);
        Broker { server: Some(server), dir, uri }
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli(self.dir.path(), args)
    }

    async fn channel(&self) -> (Connection, lapin::Channel) {
        let c = timeout(Connection::connect(&self.uri, ConnectionProperties::default())).await.unwrap();
        let ch = confirm_channel(&c).await;
        (c, ch)
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// Runs warren-plugins against `data_dir`: (exit code, stdout, stderr).
fn cli(data_dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warren-plugins")).arg("--data-dir").arg(data_dir).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

async fn declare(ch: &lapin::Channel, name: &str, kind: &str) -> Result<(), lapin::Error> {
    timeout(ch.exchange_declare(name.into(), ExchangeKind::Custom(kind.into()), Default::default(), FieldTable::default())).await
}

async fn bind(ch: &lapin::Channel, q: &str, x: &str, key: &str) {
    timeout(ch.queue_bind(q.into(), x.into(), key.into(), Default::default(), FieldTable::default())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_plugins_listed_and_enabled_by_rabbitmq_names() {
    let b = Broker::start().await;
    // A fresh data directory lists the shipped plugins, not enabled, beside the built-ins.
    let (code, out, err) = b.cli(&["list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Listing plugins with pattern \".*\" ...");
    assert_eq!(lines[1], " Configured: E = explicitly enabled; e = implicitly enabled");
    assert_eq!(lines[2], " | Status: * = running on warren@localhost");
    assert_eq!(lines[3], " |/");
    let version = env!("CARGO_PKG_VERSION");
    for n in ["warren_auth_backend_oauth2", "warren_consistent_hash_exchange", "warren_prometheus", "warren_random_exchange"] {
        let l = lines.iter().find(|l| l.contains(n)).unwrap_or_else(|| panic!("{n} missing:\n{out}"));
        assert!(l.starts_with(&format!("[  ] {n}")) && l.ends_with(version), "{l}");
    }
    assert!(lines.iter().any(|l| l.starts_with("[e*] topic")), "{out}");
    // A pattern matches names and RabbitMQ's names; -v describes.
    let (_, out, _) = b.cli(&["list", "-v", "rabbitmq_consistent"]);
    assert!(out.starts_with("Listing plugins with pattern \"rabbitmq_consistent\" ..."), "{out}");
    assert!(out.contains("[  ] warren_consistent_hash_exchange\n     Version:     \t"), "{out}");
    assert!(out.contains("     Dependencies:\t[]\n     Description: \t"), "{out}");
    assert!(out.contains("     Kind:        \texchange-type\n     Aliases:     \trabbitmq_consistent_hash_exchange"), "{out}");
    assert!(!out.contains("warren_random_exchange"), "{out}");
    // Nothing enabled yet.
    let (code, out, err) = b.cli(&["is_enabled", "rabbitmq_consistent_hash_exchange"]);
    assert_eq!(code, 69);
    assert_eq!(out, "Asking node warren@localhost if plugin rabbitmq_consistent_hash_exchange is enabled...\n");
    assert!(err.starts_with("Error:\nPlugin rabbitmq_consistent_hash_exchange is not enabled on node warren@localhost. Enabled plugins and dependencies: "), "{err}");
    let (_c, ch) = b.channel().await;
    assert_eq!(amqp_error(&declare(&ch, "ring", "x-consistent-hash").await.unwrap_err()).unwrap().0, 503);

    // Enabled by RabbitMQ's name; the file holds Warren's.
    let (code, out, err) = b.cli(&["enable", "rabbitmq_consistent_hash_exchange"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "Enabling plugins on node warren@localhost:\nrabbitmq_consistent_hash_exchange\n\
         The following plugins have been configured:\n  warren_consistent_hash_exchange\n\
         Applying plugin configuration to warren@localhost...\n\
         The following plugins have been enabled:\n  warren_consistent_hash_exchange\n\nstarted 1 plugins.\n"
    );
    assert_eq!(std::fs::read_to_string(b.dir.path().join("enabled_plugins")).unwrap(), "[warren_consistent_hash_exchange].\n");
    let (code, out, _) = b.cli(&["enable", "warren_consistent_hash_exchange"]);
    assert_eq!(code, 0);
    assert!(out.ends_with("Plugin configuration unchanged.\n"), "{out}");
    let (code, out, _) = b.cli(&["is_enabled", "rabbitmq_consistent_hash_exchange"]);
    assert_eq!(code, 0);
    assert!(out.ends_with("Plugin rabbitmq_consistent_hash_exchange is enabled on node warren@localhost\n"), "{out}");
    let (_, out, _) = b.cli(&["list", "-E", "-m"]);
    assert_eq!(out, "Listing plugins with pattern \".*\" ...\nwarren_consistent_hash_exchange\n");
    let (_, out, _) = b.cli(&["list", "-e", "-m"]);
    assert_eq!(out.lines().count(), 6, "built-ins are implicitly enabled:\n{out}");

    // It routes: each message to exactly one of two weighted queues.
    let (_c, ch) = b.channel().await;
    declare(&ch, "ring", "x-consistent-hash").await.unwrap();
    let (q1, q2) = (temp_queue(&ch).await, temp_queue(&ch).await);
    bind(&ch, &q1, "ring", "10").await;
    bind(&ch, &q2, "ring", "10").await;
    for i in 0..100 {
        publish_c(&ch, "ring", &format!("k{i}"), b"m", Default::default()).await;
    }
    let (n1, n2) = (drain(&ch, &q1).await.len(), drain(&ch, &q2).await.len());
    assert!(n1 + n2 == 100 && n1 > 10 && n2 > 10, "{n1}/{n2}");

    // `set` replaces the enabled set (forced: the ring exchange uses the type).
    let (code, out, err) = b.cli(&["set", "rabbitmq_random_exchange"]);
    assert_eq!(code, 70, "{out}");
    assert!(err.contains("'/':'ring'") && err.contains("--force"), "{err}");
    let (code, out, err) = b.cli(&["set", "--force", "rabbitmq_random_exchange"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("The following plugins have been enabled:\n  warren_random_exchange\n"), "{out}");
    assert!(out.contains("The following plugins have been disabled:\n  warren_consistent_hash_exchange\n"), "{out}");
    assert_eq!(std::fs::read_to_string(b.dir.path().join("enabled_plugins")).unwrap(), "[warren_random_exchange].\n");
    declare(&ch, "rnd", "x-random").await.unwrap();
    let qs = [temp_queue(&ch).await, temp_queue(&ch).await];
    for q in &qs {
        bind(&ch, q, "rnd", "").await;
    }
    for _ in 0..60 {
        publish_c(&ch, "rnd", "k", b"r", Default::default()).await;
    }
    let counts = [drain(&ch, &qs[0]).await.len(), drain(&ch, &qs[1]).await.len()];
    assert!(counts[0] + counts[1] == 60 && counts[0] > 5 && counts[1] > 5, "{counts:?}");

    let (code, out, _) = b.cli(&["directories"]);
    assert_eq!(code, 0);
    let d = b.dir.path().display();
    assert_eq!(
        out,
        format!(
            "Listing plugin directories used by node warren@localhost\nPlugin archives directory: {d}/plugins\n\
             Plugin expansion directory: {d}/plugin-cache\nEnabled plugins file: {d}/enabled_plugins\n"
        )
    );
    // Unknown names and no names: rabbitmq-plugins' errors.
    let (code, _, err) = b.cli(&["enable", "rabbitmq_nonexistent"]);
    assert_eq!(code, 70);
    assert!(err.starts_with("Error:\n{:plugins_not_found, [:rabbitmq_nonexistent]}\n"), "{err}");
    let (code, _, err) = b.cli(&["enable"]);
    assert_eq!(code, 64);
    assert_eq!(err, "Error (argument validation): not enough arguments.\n");
    b.stop().await;
}

#[tokio::test]
async fn without_a_broker_list_and_enable_use_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = cli(dir.path(), &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(" | Status: [failed to contact warren@localhost - status not shown]\n"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("[  ] warren_random_exchange")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("[e ] direct")), "{out}");
    let (code, out, err) = cli(dir.path(), &["enable", "rabbitmq_random_exchange"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("set 1 plugins.\nOffline change; changes will take effect at broker restart.\n"), "{out}");
    assert_eq!(std::fs::read_to_string(dir.path().join("enabled_plugins")).unwrap(), "[warren_random_exchange].\n");
    let (_, out, _) = cli(dir.path(), &["list", "-E"]);
    assert!(out.lines().any(|l| l.starts_with("[E ] warren_random_exchange")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_load_is_flagged_with_its_whole_reason() {
    let b = Broker::start().await;
    let plugins = b.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("garbage.wasm"), b"this is not wasm at all").unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/examples/random-c/random-c.wasm"),
        plugins.join("rabbitmq_random_exchange.wasm"),
    )
    .unwrap();
    let (code, out, _) = b.cli(&["list"]);
    assert_eq!(code, 0);
    let at = out.find("[ !] garbage").unwrap_or_else(|| panic!("{out}"));
    let reason = out[at..].lines().nth(1).unwrap();
    // The parser's whole message, on one line (it used to stop at `expected=[`).
    assert!(reason.starts_with("     Error:       \t"), "{reason}");
    assert!(reason.contains("garbage.wasm") && reason.contains("expected=[") && reason.contains("actual=["), "{reason}");
    assert!(reason.trim_end().ends_with("(at offset 0x0)"), "{reason}");
    let at = out.find("[ !] rabbitmq_random_exchange").unwrap_or_else(|| panic!("{out}"));
    assert!(out[at..].lines().nth(1).unwrap().contains("is taken by a plugin inside the binary"), "{out}");
    // Enabling it fails with the same reason; nothing is enabled.
    let (code, _, err) = b.cli(&["enable", "garbage"]);
    assert_eq!(code, 70);
    assert!(err.contains("plugin garbage: ") && err.contains("actual=["), "{err}");
    assert_eq!(std::fs::read_to_string(b.dir.path().join("enabled_plugins")).unwrap(), "[].\n");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_wait_for_their_type_while_its_plugin_is_disabled() {
    let b = Broker::start().await;
    assert_eq!(b.cli(&["enable", "warren_consistent_hash_exchange"]).0, 0);
    let (c, ch) = b.channel().await;
    declare(&ch, "ring", "x-consistent-hash").await.unwrap();
    let q1 = temp_queue(&ch).await;
    bind(&ch, &q1, "ring", "10").await;
    let (code, _, err) = b.cli(&["disable", "--force", "rabbitmq_consistent_hash_exchange"]);
    assert_eq!(code, 0, "{err}");
    // While the type is away, no binding can be checked by it: refused, not stored unchecked.
    let q2 = temp_queue(&ch).await;
    for key in ["not-a-weight", "10"] {
        let ch = timeout(c.create_channel()).await.unwrap();
        let e = error_after(&ch, ch.queue_bind(q2.as_str().into(), "ring".into(), key.into(), Default::default(), FieldTable::default())).await;
        assert_eq!(e, (406, "PRECONDITION_FAILED - exchange type 'x-consistent-hash' is not available (its plugin is not enabled)".to_string()));
    }
    // Enabled again: the existing binding is replayed, routing works at once.
    let (code, out, err) = b.cli(&["enable", "rabbitmq_consistent_hash_exchange"]);
    assert_eq!(code, 0, "{out}{err}");
    for i in 0..10 {
        publish_c(&ch, "ring", &format!("k{i}"), b"m", Default::default()).await;
    }
    assert_eq!(drain(&ch, &q1).await.len(), 10);
    let e = error_after(&ch, ch.queue_bind(q1.as_str().into(), "ring".into(), "heavy".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e.0, 406, "the type checks bindings again: {e:?}");
    b.stop().await;
}
