//! Auth-backend plugins that misbehave (plugins/fixtures/auth-faulty): a trap, an endless loop,
//! an answer the host cannot read (text that is not UTF-8) or a malformed user is a refusal and a
//! log line, never an allow; the broker keeps serving, and the chain goes on to the next backend
//! at login. A plugin that refuses its configuration stops the start with its reason.
use crate::common;
use common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/fixtures/auth-faulty.wasm")).expect("plugins/fixtures/auth-faulty.wasm")
}

/// A broker whose chain is [auth-faulty, internal], the fixture set to `mode` striking `on`.
async fn broker(mode: &str, on: &str) -> (TestBroker, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(plugins.path().join("auth-faulty.wasm"), fixture()).unwrap();
    let dir = plugins.path().to_path_buf();
    let (mode, on) = (mode.to_string(), on.to_string());
    let b = TestBroker::start_with(move |c| {
        c.plugins.dir = Some(dir);
        c.auth.backends = vec!["auth-faulty".into(), "internal".into()];
        let s = c.plugins.settings.entry("auth-faulty".into()).or_default();
        s.insert("mode".into(), mode);
        s.insert("on".into(), on);
    })
    .await;
    (b, plugins)
}

async fn login(b: &TestBroker, user: &str, pass: &str) -> Result<Connection, lapin::Error> {
    let uri = format!("amqp://{user}:{pass}@{}/%2f", b.addr());
    timeout(Connection::connect(&uri, ConnectionProperties::default())).await
}

const LOGIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_login_is_a_refusal_and_the_chain_goes_on() {
    for mode in ["trap", "loop", "garbage", "malformed"] {
        let (b, _dir) = broker(mode, "login").await;
        if b.is_external() {
            return;
        }
        // The fixture would accept bob/fixture if it behaved: a failure must not let him in.
        let e = login(&b, "bob", "fixture").await.expect_err(mode);
        assert_eq!(amqp_error(&e).unwrap(), (403, LOGIN_REFUSED.into()), "{mode}");
        // The next backend still answers, and the broker serves on.
        let c = login(&b, "guest", "guest").await.unwrap_or_else(|e| panic!("{mode}: internal login after a faulty plugin: {e}"));
        assert_channel_ok(&timeout(c.create_channel()).await.unwrap()).await;
        // and again: the failed instance was replaced
        let e = login(&b, "bob", "fixture").await.expect_err(mode);
        assert_eq!(amqp_error(&e).unwrap().0, 403, "{mode}");
        let counted = b.plugin_list(true);
        let st = counted.iter().find(|p| p.name == "auth-faulty").and_then(|p| p.details.clone()).expect("listed with counters");
        assert!(st.traps + st.timeouts >= 2 || mode == "malformed", "{mode}: failures not counted: {st:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_check_is_a_refusal() {
    for mode in ["trap", "loop", "garbage"] {
        let (b, _dir) = broker(mode, "check").await;
        if b.is_external() {
            return;
        }
        // login works (the fixture behaves there); connection.open's vhost check fails
        let e = login(&b, "bob", "fixture").await.expect_err(mode);
        assert_eq!(amqp_error(&e).unwrap(), (530, "NOT_ALLOWED - access to vhost '/' refused for user 'bob'".into()), "{mode}");
        let (_c, ch) = b.channel().await;
        timeout(ch.queue_declare("still-serving".into(), QueueDeclareOptions::default(), FieldTable::default())).await.expect(mode);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_update_secret_closes_the_connection() {
    for mode in ["trap", "garbage"] {
        let (b, _dir) = broker(mode, "update").await;
        if b.is_external() {
            return;
        }
        let c = login(&b, "bob", "fixture").await.expect("fixture login");
        let e = timeout(c.update_secret("fixture".into(), "rotate".into())).await.unwrap_err();
        assert_eq!(amqp_error(&e).unwrap(), (530, "NOT_ALLOWED - New secret was refused by one of the backends".into()), "{mode}");
        assert!(login(&b, "guest", "guest").await.is_ok());
    }
}

#[tokio::test]
async fn a_plugin_that_refuses_its_configuration_stops_the_start() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(plugins.path().join("auth-faulty.wasm"), fixture()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = warren::config::Config::for_tests(dir.path());
    cfg.plugins.dir = Some(plugins.path().to_path_buf());
    cfg.auth.backends = vec!["auth-faulty".into()];
    cfg.plugins.settings.entry("auth-faulty".into()).or_default().insert("mode".into(), "refuse-config".into());
    let e = timeout(warren::server::start(cfg)).await.err().expect("start refused").to_string();
    let place = plugins.path().join("auth-faulty.wasm");
    assert_eq!(
        e,
        format!("[auth] backends: auth-faulty ({}): configuration refused: auth-faulty fixture: configuration refused as configured", place.display())
    );
}
