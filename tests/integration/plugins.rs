//! Wasm plugins over real sockets: warren-plugins enable/disable on a running broker, custom
//! exchange types from the example plugins routing real messages, sandboxed bad plugins, and hot
//! reload under load with publisher confirms.
use crate::common;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Broker {
    server: Option<warren::server::ServerHandle>,
    dir: tempfile::TempDir,
    uri: String,
}

impl Broker {
    async fn start() -> Broker {
        let _ = tracing_subscriber::fmt().with_env_filter("warren=info").with_test_writer().try_init();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        let server = timeout(warren::server::start(warren::config::Config::for_tests(dir.path()))).await.unwrap();
        let uri = format!("amqp://guest:guest@{}/%2f", server.amqp_addr);
        Broker { server: Some(server), dir, uri }
    }

    fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Drops a component into the plugins folder (temp file + rename, as operators should).
    fn install(&self, name: &str, from: &Path) {
        let tmp = self.plugins_dir().join(format!("{name}.tmp"));
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(tmp, self.plugins_dir().join(format!("{name}.wasm"))).unwrap();
    }

    /// Runs warren-plugins against this broker's data directory: (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_warren-plugins"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
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

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins").join(rel)
}

async fn declare(ch: &lapin::Channel, name: &str, kind: &str, args: FieldTable) -> Result<(), lapin::Error> {
    timeout(ch.exchange_declare(name.into(), ExchangeKind::Custom(kind.into()), Default::default(), args)).await
}

/// A named, non-exclusive queue (other connections of the test read it).
async fn shared_queue(ch: &lapin::Channel) -> String {
    let q = uniq("q");
    named_queue(ch, &q).await;
    q
}

async fn bind(ch: &lapin::Channel, q: &str, x: &str, key: &str) {
    timeout(ch.queue_bind(q.into(), x.into(), key.into(), Default::default(), FieldTable::default())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_declare_route_and_disable_consistent_hash() {
    let b = Broker::start().await;
    b.install("x-consistent-hash", &example("examples/consistent-hash/consistent-hash.wasm"));

    // Listed but not enabled; declaring its type is refused like an unknown type.
    let (code, out, _) = b.cli(&["list"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("[  ] x-consistent-hash")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("[e*] topic")), "{out}");
    let (c, ch) = b.channel().await;
    let err = declare(&ch, "ring", "x-consistent-hash", FieldTable::default()).await.unwrap_err();
    assert_eq!(amqp_error(&err).unwrap(), (503, "COMMAND_INVALID - unknown exchange type 'x-consistent-hash'".to_string()));
    drop(c);

    // Unknown names: an error and a non-zero exit, nothing changed.
    let (code, _, err) = b.cli(&["enable", "nope"]);
    assert_eq!(code, 70);
    assert!(err.contains("{:plugins_not_found, [:nope]}"), "{err}");

    let (code, out, err) = b.cli(&["enable", "x-consistent-hash"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("x-consistent-hash"), "{out}");
    assert_eq!(std::fs::read_to_string(b.dir.path().join("enabled_plugins")).unwrap(), "['x-consistent-hash'].\n");
    let (_, out, _) = b.cli(&["list"]);
    assert!(out.lines().any(|l| l.starts_with("[E*] x-consistent-hash")), "{out}");

    // Two queues with equal weights share 400 messages with distinct keys; each message once.
    let (_c, ch) = b.channel().await;
    declare(&ch, "ring", "x-consistent-hash", FieldTable::default()).await.unwrap();
    let (q1, q2) = (shared_queue(&ch).await, shared_queue(&ch).await);
    bind(&ch, &q1, "ring", "100").await;
    bind(&ch, &q2, "ring", "100").await;
    for i in 0..400 {
        publish_c(&ch, "ring", &format!("key-{i}"), i.to_string().as_bytes(), Default::default()).await;
    }
    let (n1, n2) = (drain(&ch, &q1).await.len(), drain(&ch, &q2).await.len());
    assert_eq!(n1 + n2, 400);
    assert!(n1 > 100 && n2 > 100, "spread {n1}/{n2}");
    // The same key always lands on the same queue.
    for _ in 0..5 {
        publish_c(&ch, "ring", "sticky", b"s", Default::default()).await;
    }
    let (s1, s2) = (drain(&ch, &q1).await.len(), drain(&ch, &q2).await.len());
    assert!((s1, s2) == (5, 0) || (s1, s2) == (0, 5), "{s1}/{s2}");
    // A binding key that is not a weight is refused by the plugin with 406.
    let q3 = temp_queue(&ch).await;
    let e = error_after(&ch, ch.queue_bind(q3.as_str().into(), "ring".into(), "heavy".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e.0, 406, "{e:?}");

    // Disabling while an exchange uses the type is refused, naming it; --force disables.
    let (code, _, err) = b.cli(&["disable", "x-consistent-hash"]);
    assert_eq!(code, 70);
    assert!(err.contains("'/':'ring'") && err.contains("--force"), "{err}");
    let (code, out, err) = b.cli(&["disable", "--force", "x-consistent-hash"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(b.dir.path().join("enabled_plugins")).unwrap(), "[].\n");
    // The exchange stays but routes nothing: a mandatory publish comes back.
    let (_c2, ch2) = b.channel().await;
    let r = timeout(ch2.basic_publish("ring".into(), "k".into(), BasicPublishOptions { mandatory: true, ..Default::default() }, b"x", Default::default()))
        .await
        .unwrap();
    let conf = timeout(r).await.unwrap();
    assert!(conf.take_message().is_some(), "unroutable while the plugin is disabled");
    // Re-enabling replays the bindings: routing works again.
    let (code, _, err) = b.cli(&["enable", "x-consistent-hash"]);
    assert_eq!(code, 0, "{err}");
    publish_c(&ch2, "ring", "again", b"a", Default::default()).await;
    assert_eq!(drain(&ch2, &q1).await.len() + drain(&ch2, &q2).await.len(), 1);
    b.stop().await;
}

/// Publishes `msgs` (routing key, properties) to `x` and returns how many landed in each queue.
async fn spread(ch: &lapin::Channel, x: &str, qs: &[String], msgs: Vec<(String, lapin::BasicProperties)>) -> Vec<usize> {
    let n = msgs.len();
    for (i, (rk, props)) in msgs.into_iter().enumerate() {
        publish_c(ch, x, &rk, i.to_string().as_bytes(), props).await;
    }
    let mut counts = Vec::new();
    for q in qs {
        counts.push(drain(ch, q).await.len());
    }
    assert_eq!(counts.iter().sum::<usize>(), n, "every message routed exactly once: {counts:?}");
    counts
}

fn used(counts: &[usize]) -> usize {
    counts.iter().filter(|c| **c > 0).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_a_header_or_a_message_property() {
    use lapin::BasicProperties as P;
    let b = Broker::start().await;
    b.install("x-consistent-hash", &example("examples/consistent-hash/consistent-hash.wasm"));
    let (code, _, err) = b.cli(&["enable", "x-consistent-hash"]);
    assert_eq!(code, 0, "{err}");

    // RabbitMQ 3.10's refusals, texts included.
    for (args, text) in [
        (
            ft(&[("hash-header", lstr("h")), ("hash-property", lstr("message_id"))]),
            "PRECONDITION_FAILED - hash-header and hash-property are mutually exclusive",
        ),
        (ft(&[("hash-property", lstr("app_id"))]), "PRECONDITION_FAILED - Unsupported property: app_id"),
    ] {
        let (_c, ch) = b.channel().await;
        let e = declare(&ch, "bad", "x-consistent-hash", args).await.unwrap_err();
        assert_eq!(amqp_error(&e).unwrap(), (406, text.to_string()));
    }

    let (_c, ch) = b.channel().await;
    let mut queues = Vec::new();
    for (x, args) in [
        ("by-id", ft(&[("hash-property", lstr("message_id"))])),
        ("by-corr", ft(&[("hash-property", lstr("correlation_id"))])),
        ("by-ts", ft(&[("hash-property", lstr("timestamp"))])),
        ("by-header", ft(&[("hash-header", lstr("user"))])),
    ] {
        declare(&ch, x, "x-consistent-hash", args).await.unwrap();
        let qs = vec![shared_queue(&ch).await, shared_queue(&ch).await, shared_queue(&ch).await];
        // weights 1 : 1 : 2
        for (q, w) in qs.iter().zip(["50", "50", "100"]) {
            bind(&ch, q, x, w).await;
        }
        queues.push((x, qs));
    }
    let user = |v: &str| ft(&[("user", lstr(v))]);
    type Make = Box<dyn Fn(usize) -> P>;
    let cases: Vec<(&str, Make, Make)> = vec![
        // (exchange, property varying with i, property fixed)
        ("by-id", Box::new(|i| P::default().with_message_id(format!("m-{i}").into())), Box::new(|_| P::default().with_message_id("m".into()))),
        ("by-corr", Box::new(|i| P::default().with_correlation_id(format!("c-{i}").into())), Box::new(|_| P::default().with_correlation_id("c".into()))),
        ("by-ts", Box::new(|i| P::default().with_timestamp(1_700_000_000 + i as u64)), Box::new(|_| P::default().with_timestamp(1_700_000_000))),
        ("by-header", Box::new(move |i| P::default().with_headers(user(&format!("u-{i}")))), Box::new(move |_| P::default().with_headers(ft(&[("user", lstr("alice"))])))),
    ];
    for ((x, vary, fixed), (_, qs)) in cases.iter().zip(&queues) {
        // the property decides: the same value with 30 different routing keys -> one queue ...
        let c = spread(&ch, x, qs, (0..30).map(|i| (format!("rk-{i}"), fixed(i))).collect()).await;
        assert_eq!(used(&c), 1, "{x}: same value, different keys: {c:?}");
        // ... 600 values with one routing key spread over all three, by weight
        let c = spread(&ch, x, qs, (0..600).map(|i| ("same-key".to_string(), vary(i))).collect()).await;
        assert_eq!(used(&c), 3, "{x}: {c:?}");
        assert!(c[2] > c[0] && c[2] > c[1] && c[2] > 200, "{x}: weight 2 gets most: {c:?}");
        // ... and the same value again lands where it did
        let again = spread(&ch, x, qs, (0..5).map(|i| (format!("other-{i}"), fixed(i))).collect()).await;
        let first = spread(&ch, x, qs, (0..1).map(|i| ("z".to_string(), fixed(i))).collect()).await;
        assert_eq!(again.iter().map(|n| n / 5).collect::<Vec<_>>(), first, "{x}");
        // messages without the property or header go, as in RabbitMQ, all to one queue
        let c = spread(&ch, x, qs, (0..30).map(|i| (format!("rk-{i}"), P::default())).collect()).await;
        assert_eq!(used(&c), 1, "{x}: without the property: {c:?}");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_random_exchange_routes_each_message_to_one_queue() {
    let b = Broker::start().await;
    b.install("x-random", &example("examples/random-c/random-c.wasm"));
    let (code, _, err) = b.cli(&["enable", "x-random"]);
    assert_eq!(code, 0, "{err}");
    let (_c, ch) = b.channel().await;
    declare(&ch, "rnd", "x-random", FieldTable::default()).await.unwrap();
    let qs = [temp_queue(&ch).await, temp_queue(&ch).await, temp_queue(&ch).await];
    for q in &qs {
        bind(&ch, q, "rnd", "").await;
    }
    for i in 0..300 {
        publish_c(&ch, "rnd", "k", i.to_string().as_bytes(), Default::default()).await;
    }
    let mut counts = Vec::new();
    for q in &qs {
        counts.push(drain(&ch, q).await.len());
    }
    assert_eq!(counts.iter().sum::<usize>(), 300, "{counts:?}");
    assert!(counts.iter().all(|n| *n > 40), "{counts:?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_plugins_route_real_messages() {
    let b = Broker::start().await;
    b.install("x-json-field", &example("examples/json-field-py/json-field-py.wasm"));
    b.install("x-prefix", &example("examples/js-prefix/js-prefix.wasm"));
    let (code, _, err) = b.cli(&["enable", "x-json-field", "x-prefix"]);
    assert_eq!(code, 0, "{err}");
    let (_c, ch) = b.channel().await;

    declare(&ch, "by-type", "x-json-field", FieldTable::default()).await.unwrap();
    let (orders, refunds) = (temp_queue(&ch).await, temp_queue(&ch).await);
    bind(&ch, &orders, "by-type", "order").await;
    bind(&ch, &refunds, "by-type", "refund").await;
    publish_c(&ch, "by-type", "", br#"{"type":"order","id":1}"#, Default::default()).await;
    publish_c(&ch, "by-type", "", br#"{"type":"refund","id":2}"#, Default::default()).await;
    publish_c(&ch, "by-type", "", b"not json", Default::default()).await;
    // Binary bodies (NUL bytes made json.loads guess UTF-32 and abort the interpreter) route nowhere.
    publish_c(&ch, "by-type", "", &[0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 0], Default::default()).await;
    assert_eq!(drain(&ch, &orders).await, vec![r#"{"type":"order","id":1}"#]);
    assert_eq!(drain(&ch, &refunds).await, vec![r#"{"type":"refund","id":2}"#]);

    declare(&ch, "prefixes", "x-prefix", FieldTable::default()).await.unwrap();
    let (eu, all) = (temp_queue(&ch).await, temp_queue(&ch).await);
    bind(&ch, &eu, "prefixes", "eu.").await;
    bind(&ch, &all, "prefixes", "").await;
    publish_c(&ch, "prefixes", "eu.paris", b"p", Default::default()).await;
    publish_c(&ch, "prefixes", "us.nyc", b"n", Default::default()).await;
    assert_eq!(drain(&ch, &eu).await, vec!["p"]);
    assert_eq!(drain(&ch, &all).await, vec!["p", "n"]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugins_close_only_the_publishing_channel_with_541() {
    let b = Broker::start().await;
    for f in ["loop", "hog", "wrong-world"] {
        b.install(&format!("fixture-{f}"), &example(&format!("fixtures/{f}.wasm")));
    }
    // A component of the wrong world is refused with a clear error naming it.
    let (code, _, err) = b.cli(&["enable", "fixture-wrong-world"]);
    assert_eq!(code, 70);
    assert!(err.contains("fixture-wrong-world") && err.contains("implements no world of warren:plugin@0.1.0"), "{err}");
    assert!(err.contains("its exports: [greet]"), "{err}");
    let (code, _, err) = b.cli(&["enable", "fixture-loop", "fixture-hog"]);
    assert_eq!(code, 0, "{err}");

    let (c, ch) = b.channel().await;
    declare(&ch, "looping", "x-fixture-loop", FieldTable::default()).await.unwrap();
    declare(&ch, "hungry", "x-fixture-hog", FieldTable::default()).await.unwrap();
    let q = temp_queue(&ch).await;
    bind(&ch, &q, "looping", "").await;
    bind(&ch, &q, "hungry", "").await;
    let (_c2, bystander) = b.channel().await;

    // An endless loop: the call is interrupted, the channel closed with 541 naming plugin and exchange.
    let started = std::time::Instant::now();
    let (code, text) = error_after(&ch, ch.basic_publish("looping".into(), "loop".into(), Default::default(), b"x", Default::default())).await;
    assert_eq!(code, 541, "{text}");
    assert!(text.contains("x-fixture-loop") && text.contains("looping") && text.contains("time limit"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Only the channel was closed: the same connection opens another one. Memory exhaustion likewise.
    let ch = confirm_channel(&c).await;
    let (code, text) = error_after(&ch, ch.basic_publish("hungry".into(), "grow".into(), Default::default(), b"x", Default::default())).await;
    assert_eq!(code, 541, "{text}");
    assert!(text.contains("hungry") && text.contains("memory limit"), "{text}");

    // Everything else goes on; the poisoned instances come back with their bindings.
    assert_channel_ok(&bystander).await;
    publish_c(&bystander, "looping", "fine", b"1", Default::default()).await;
    publish_c(&bystander, "hungry", "fine", b"2", Default::default()).await;
    let owner = confirm_channel(&c).await;
    assert_eq!(drain(&owner, &q).await, vec!["1", "2"]);

    // `list --verbose` shows, from the running broker, who uses each plugin and what failed.
    let (code, out, err) = b.cli(&["list", "--verbose"]);
    assert_eq!(code, 0, "{err}");
    let block = |name: &str| -> String {
        let start = out.find(&format!("[E*] {name}\n")).unwrap_or_else(|| panic!("{name} missing: {out}"));
        out[start..].lines().take(9).collect::<Vec<_>>().join("\n")
    };
    let lp = block("fixture-loop");
    assert!(lp.contains("Exchanges:   \t'/':'looping'"), "{lp}");
    assert!(lp.contains("Failures:    \ttrap 0, timeout 1, out of memory 0"), "{lp}");
    assert!(lp.contains("Rebuilds:    \t1") && lp.contains("Reloads:     \t0"), "{lp}");
    let hog = block("fixture-hog");
    assert!(hog.contains("'/':'hungry'") && hog.contains("trap 0, timeout 0, out of memory 1"), "{hog}");
    assert!(hog.contains("Rebuilds:    \t1"), "{hog}");
    // the built-ins are listed with their exchanges (amq.* included) and no failures
    assert!(out.contains("'/':'amq.topic'") && out.contains("trap 0, timeout 0, out of memory 0"), "{out}");
    // without --verbose: one line per plugin
    let (_, plain, _) = b.cli(&["list"]);
    assert!(!plain.contains("Failures:"), "{plain}");
    b.stop().await;
}

/// Appends a custom section: a different file (new hash) with the same behaviour.
fn with_custom_section(src: &Path, tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(src).unwrap();
    let name = b"warren-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0); // custom section id
    bytes.push(payload.len() as u8); // LEB128 size (< 128)
    bytes.extend_from_slice(&payload);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_loses_nothing() {
    let b = Broker::start().await;
    let src = example("examples/consistent-hash/consistent-hash.wasm");
    b.install("x-consistent-hash", &src);
    assert_eq!(b.cli(&["enable", "x-consistent-hash"]).0, 0);
    let (_c, ch) = b.channel().await;
    declare(&ch, "ring", "x-consistent-hash", FieldTable::default()).await.unwrap();
    let (q1, q2) = (shared_queue(&ch).await, shared_queue(&ch).await);
    bind(&ch, &q1, "ring", "50").await;
    bind(&ch, &q2, "ring", "50").await;

    // A publisher with confirms runs while the plugin file is replaced three times: once with
    // garbage (rejected, old version keeps serving) and twice with new valid versions.
    let publisher = {
        let ch = ch.clone();
        tokio::spawn(async move {
            let mut confirmed = 0u64;
            let deadline = std::time::Instant::now() + Duration::from_millis(2500);
            let mut i = 0u64;
            while std::time::Instant::now() < deadline {
                let c = ch.basic_publish("ring".into(), format!("k{i}").as_str().into(), Default::default(), b"m", Default::default()).await.unwrap();
                assert!(c.await.unwrap().is_ack());
                confirmed += 1;
                i += 1;
            }
            confirmed
        })
    };
    let write = |bytes: &[u8]| {
        let tmp = b.plugins_dir().join("x-consistent-hash.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, b.plugins_dir().join("x-consistent-hash.wasm")).unwrap();
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(b"definitely not a component");
    tokio::time::sleep(Duration::from_millis(600)).await;
    write(&with_custom_section(&src, "v2"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    write(&with_custom_section(&src, "v3"));
    let confirmed = timeout(publisher).await.unwrap();
    let (_c2, reader) = b.channel().await;
    let got = drain(&reader, &q1).await.len() + drain(&reader, &q2).await.len();
    assert!(confirmed > 50, "the publisher kept going ({confirmed})");
    assert_eq!(got as u64, confirmed, "every confirmed message routed exactly once across the reloads");
    // The connection survived; the new version serves (the list shows its new hash).
    let hash_v3 = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(with_custom_section(&src, "v3"));
        d.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>()
    };
    // Compiling the new version can take a while on a busy machine (other tests compile the 18 MB
    // Python and JavaScript components in parallel).
    let mut out = String::new();
    for _ in 0..600 {
        out = b.cli(&["list"]).1;
        if out.contains(&hash_v3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(out.contains(&hash_v3), "{out}");
    // The reloads were counted: v2 and v3 (v2 may have been read as v3 already if its reload
    // started late), not the rejected garbage.
    let out = b.cli(&["list", "-v"]).1;
    let at = out.find("[E*] x-consistent-hash").unwrap();
    let block: String = out[at..].lines().take(10).collect::<Vec<_>>().join("\n");
    assert!(block.contains("Reloads:     \t2") || block.contains("Reloads:     \t1"), "{block}");
    assert!(block.contains("Exchanges:   \t'/':'ring'") && block.contains("trap 0, timeout 0"), "{block}");
    b.stop().await;
}
