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

/// Polls `warren-plugins list -v` until `f` holds for the plugin's entry (hot reload is async).
async fn wait_entry(b: &TestBroker, name: &str, f: impl Fn(&warren::admin::plugins::PluginEntry) -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if b.plugin_list(true).iter().any(|p| p.name == name && f(p)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{name}: {:?}", b.plugin_list(true).iter().find(|p| p.name == name));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_plugin_file_is_hot_reloaded_and_a_bad_version_is_refused() {
    let plugins = tempfile::tempdir().unwrap();
    let file = plugins.path().join("auth-faulty.wasm");
    std::fs::write(&file, fixture()).unwrap();
    let dir = plugins.path().to_path_buf();
    let secret = b"reload-secret-0123456789abcdef01";
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let keys = format!(r#"{{"id1":{{"kty":"oct","k":"{}"}}}}"#, b64(secret));
    let b = TestBroker::start_with(move |c| {
        c.plugins.dir = Some(dir);
        c.auth.backends = vec!["auth-faulty".into()];
        // settings for both versions of the file: the fixture's and the oauth2 plugin's
        let s = c.plugins.settings.entry("auth-faulty".into()).or_default();
        s.insert("signing_keys".into(), keys);
        s.insert("default_key".into(), "id1".into());
        s.insert("resource_server_id".into(), "rabbitmq".into());
    })
    .await;
    if b.is_external() {
        return;
    }
    let c = login(&b, "bob", "fixture").await.expect("the fixture's user");
    // A file that is not a component: refused, the old version serves on (and keeps its users).
    std::fs::write(&file, b"not wasm").unwrap();
    wait_entry(&b, "auth-faulty", |p| p.error.as_deref().is_some_and(|e| e.starts_with("new version rejected"))).await;
    assert!(login(&b, "bob", "fixture").await.is_ok());
    assert_channel_ok(&timeout(c.create_channel()).await.unwrap()).await;
    // Another auth backend in its place (the oauth2 plugin): it answers from now on.
    let oauth2 = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/shipped/auth-oauth2.wasm")).unwrap();
    std::fs::write(&file, oauth2).unwrap();
    wait_entry(&b, "auth-faulty", |p| p.details.as_ref().is_some_and(|d| d.reloads == 1) && p.error.is_none()).await;
    let e = login(&b, "bob", "fixture").await.unwrap_err();
    assert_eq!(amqp_error(&e).unwrap(), (403, LOGIN_REFUSED.into()));
    let t = {
        use hmac::Mac;
        let claims = serde_json::json!({"sub": "carol", "aud": "rabbitmq", "scope": "rabbitmq.read:*/*"});
        let signed = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(claims.to_string().as_bytes()));
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        m.update(signed.as_bytes());
        format!("{signed}.{}", b64(&m.finalize().into_bytes()))
    };
    login(&b, "", &t).await.expect("token accepted by the reloaded plugin");
}
