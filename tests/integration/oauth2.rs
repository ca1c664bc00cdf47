//! The shipped warren_auth_backend_oauth2 plugin over real sockets (lapin): JWTs as passwords,
//! minted here (HS256 with a shared secret, RS256 with a key made by `openssl`), scopes as
//! permissions with RabbitMQ's refusal texts, refused tokens, the internal users asked first,
//! `connection.update-secret`, and a token that expires on a live connection.
use crate::common;
use common::*;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use sha2::Sha256;

const SECRET: &[u8] = b"warren-test-secret-0123456789abcdef";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An HS256 token signed with `secret` over `claims` (a JSON object).
fn hs256(secret: &[u8], claims: serde_json::Value) -> String {
    let signed = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(signed.as_bytes());
    format!("{signed}.{}", b64(&m.finalize().into_bytes()))
}

/// A token for user `sub` with `scopes` (space-separated, as an authorization server sends them).
fn token(sub: &str, scopes: &str) -> String {
    hs256(SECRET, serde_json::json!({"sub": sub, "aud": ["rabbitmq"], "scope": scopes, "exp": now() + 3600}))
}

fn oauth2(c: &mut warren::config::Config) {
    c.auth.backends = vec!["internal".into(), "rabbitmq_auth_backend_oauth2".into()];
    c.auth_oauth2.resource_server_id = "rabbitmq".into();
    c.auth_oauth2.default_key = Some("id1".into());
    c.auth_oauth2.signing_keys.insert(
        "id1".into(),
        warren::config::SigningKey { kty: Some("oct".into()), k: Some(b64(SECRET)), ..Default::default() },
    );
}

async fn login(b: &TestBroker, user: &str, token: &str, vhost: &str) -> Result<Connection, lapin::Error> {
    let uri = format!("amqp://{user}:{token}@{}/{vhost}", b.addr());
    timeout(Connection::connect(&uri, ConnectionProperties::default())).await
}

const LOGIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";

/// Publishes on a confirm channel and returns the error that closes the channel.
async fn publish_refused(ch: &lapin::Channel, exchange: &str, rk: &str) -> (u16, String) {
    let r = async {
        let confirm = ch.basic_publish(exchange.into(), rk.into(), BasicPublishOptions::default(), b"x", Default::default()).await?;
        confirm.await
    };
    let e = timeout(r).await.expect_err("publish should be refused");
    amqp_error(&e).unwrap_or_else(|| panic!("expected an AMQP error, got {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_become_permissions_with_rabbitmqs_texts() {
    let b = TestBroker::start_with(oauth2).await;
    if b.is_external() {
        return;
    }
    // a queue to read from, made by the internal admin
    let (_admin, ach) = b.channel().await;
    timeout(ach.queue_declare("shared".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();

    // read-only: may consume, may not declare or publish; the user name comes from `sub`
    let ro = login(&b, "ignored", &token("reader", "rabbitmq.read:*/* other.write:*/*"), "%2f").await.expect("token login");
    let ch = timeout(ro.create_channel()).await.unwrap();
    timeout(ch.basic_get("shared".into(), Default::default())).await.expect("read allowed");
    assert_amqp_err(
        timeout(ch.queue_declare("mine".into(), QueueDeclareOptions::default(), FieldTable::default())).await,
        403,
        "ACCESS_REFUSED - access to queue 'mine' in vhost '/' refused for user 'reader'",
    );
    let ch = confirm_channel(&ro).await;
    assert_eq!(
        publish_refused(&ch, "", "shared").await,
        (403, "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'reader'".into())
    );

    // narrowed patterns: q-* only
    let narrow = "rabbitmq.configure:%2F/q-* rabbitmq.write:%2F/q-* rabbitmq.read:%2F/q-*";
    let c = login(&b, "", &token("narrow", narrow), "%2f").await.expect("token login");
    let ch = timeout(c.create_channel()).await.unwrap();
    timeout(ch.queue_declare("q-1".into(), QueueDeclareOptions::default(), FieldTable::default())).await.expect("q-1 allowed");
    assert_amqp_err(
        timeout(ch.queue_declare("x-1".into(), QueueDeclareOptions::default(), FieldTable::default())).await,
        403,
        "ACCESS_REFUSED - access to queue 'x-1' in vhost '/' refused for user 'narrow'",
    );

    // a token for another vhost only: connection.open refused
    let e = login(&b, "", &token("elsewhere", "rabbitmq.read:prod/*"), "%2f").await.unwrap_err();
    assert_eq!(amqp_error(&e).unwrap(), (530, "NOT_ALLOWED - access to vhost '/' refused for user 'elsewhere'".into()));

    // topic permissions: publishing to amq.topic needs a scope with a routing-key pattern
    let t = token("topical", "rabbitmq.write:*/amq.topic/a.* rabbitmq.write:*/amq.topic rabbitmq.read:*/*");
    let c = login(&b, "", &t, "%2f").await.expect("token login");
    let ch = confirm_channel(&c).await;
    publish_c(&ch, "amq.topic", "a.b", b"x", Default::default()).await;
    assert_eq!(
        publish_refused(&ch, "amq.topic", "b.c").await,
        (403, "ACCESS_REFUSED - access to topic 'b.c' in exchange 'amq.topic' in vhost '/' refused for user 'topical'".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_forged_and_wrong_audience_tokens_are_refused_and_internal_users_come_first() {
    let b = TestBroker::start_with(oauth2).await;
    if b.is_external() {
        return;
    }
    let all = "rabbitmq.configure:*/* rabbitmq.write:*/* rabbitmq.read:*/*";
    let expired = hs256(SECRET, serde_json::json!({"sub": "a", "aud": "rabbitmq", "scope": all, "exp": now() - 10}));
    let forged = hs256(b"not-the-secret", serde_json::json!({"sub": "a", "aud": "rabbitmq", "scope": all, "exp": now() + 60}));
    let wrong_aud = hs256(SECRET, serde_json::json!({"sub": "a", "aud": ["other"], "scope": all, "exp": now() + 60}));
    let not_yet = hs256(SECRET, serde_json::json!({"sub": "a", "aud": "rabbitmq", "scope": all, "nbf": now() + 3600}));
    for (what, t) in [("expired", expired), ("forged", forged), ("wrong audience", wrong_aud), ("not yet valid", not_yet)] {
        let e = login(&b, "a", &t, "%2f").await.expect_err(what);
        assert_eq!(amqp_error(&e).unwrap(), (403, LOGIN_REFUSED.into()), "{what}");
    }
    // The internal backend is asked first: guest/guest is the internal guest. A token sent with
    // the user name guest is the oauth2 plugin's user, named by the token.
    let c = login(&b, "guest", "guest", "%2f").await.expect("internal user");
    drop(c);
    let c = login(&b, "guest", &token("svc", all), "%2f").await.expect("token user");
    let ch = confirm_channel(&c).await;
    // user-id must be the token's user (RabbitMQ's check_user_id_header)
    let props = lapin::BasicProperties::default().with_user_id("svc".into());
    publish_c(&ch, "", "nowhere", b"x", props).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_verified_with_a_pem_file() {
    let b0 = tempfile::tempdir().unwrap();
    let key = b0.path().join("key.pem");
    let public = b0.path().join("public.pem");
    let ok = |args: &[&str]| {
        let s = std::process::Command::new("openssl").args(args).output().expect("openssl");
        assert!(s.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&s.stderr));
        s.stdout
    };
    ok(&["genrsa", "-out", key.to_str().unwrap(), "2048"]);
    ok(&["rsa", "-in", key.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    let sign = |claims: serde_json::Value| {
        let signed = format!("{}.{}", b64(br#"{"alg":"RS256","kid":"rsa1"}"#), b64(claims.to_string().as_bytes()));
        let input = b0.path().join("signed");
        std::fs::write(&input, &signed).unwrap();
        let sig = ok(&["dgst", "-sha256", "-sign", key.to_str().unwrap(), input.to_str().unwrap()]);
        format!("{signed}.{}", b64(&sig))
    };
    let public2 = public.clone();
    let b = TestBroker::start_with(move |c| {
        oauth2(c);
        c.auth_oauth2.signing_keys.insert("rsa1".into(), warren::config::SigningKey { pem_file: Some(public2), ..Default::default() });
    })
    .await;
    if b.is_external() {
        return;
    }
    let good = sign(serde_json::json!({"client_id": "rsa-app", "sub": "x", "aud": "rabbitmq", "scope": "rabbitmq.write:*/*", "exp": now() + 60}));
    let c = login(&b, "", &good, "%2f").await.expect("RS256 token");
    let ch = confirm_channel(&c).await;
    let props = lapin::BasicProperties::default().with_user_id("rsa-app".into());
    publish_c(&ch, "", "nowhere", b"x", props).await;
    // a token signed with the RSA key but naming the HMAC key is refused
    let mut tampered = good.clone();
    tampered.replace_range(..tampered.find('.').unwrap(), &b64(br#"{"alg":"RS256","kid":"id1"}"#));
    let e = login(&b, "", &tampered, "%2f").await.unwrap_err();
    assert_eq!(amqp_error(&e).unwrap(), (403, LOGIN_REFUSED.into()));

    // a missing pem_file stops the start with the reason
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = warren::config::Config::for_tests(dir.path());
    oauth2(&mut cfg);
    cfg.auth_oauth2
        .signing_keys
        .insert("k2".into(), warren::config::SigningKey { pem_file: Some("/nonexistent/jwt.pem".into()), ..Default::default() });
    let e = timeout(warren::server::start(cfg)).await.err().expect("start refused").to_string();
    assert!(e.starts_with("[auth_oauth2] signing_keys.k2: cannot read pem_file /nonexistent/jwt.pem"), "{e}");
    // a key the plugin cannot use: refused by its init, named
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = warren::config::Config::for_tests(dir.path());
    oauth2(&mut cfg);
    cfg.auth_oauth2.signing_keys.insert("k3".into(), warren::config::SigningKey { kty: Some("oct".into()), ..Default::default() });
    let e = timeout(warren::server::start(cfg)).await.err().expect("start refused").to_string();
    assert_eq!(
        e,
        "[auth] backends: rabbitmq_auth_backend_oauth2 (inside the binary): configuration refused: [auth_oauth2] signing_keys.k3: kty \"oct\" needs \"k\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_secret_replaces_the_token_and_a_bad_one_closes_the_connection() {
    let b = TestBroker::start_with(oauth2).await;
    if b.is_external() {
        return;
    }
    let c = login(&b, "", &token("rotating", "rabbitmq.read:*/*"), "%2f").await.expect("token login");
    let ch = confirm_channel(&c).await;
    assert_eq!(
        publish_refused(&ch, "", "q").await,
        (403, "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'rotating'".into())
    );
    // a new token with write permission: update-secret-ok, and the next publish is allowed
    let t2 = token("rotating", "rabbitmq.read:*/* rabbitmq.write:*/*");
    timeout(c.update_secret(t2.as_str().into(), "refresh".into())).await.expect("update-secret-ok");
    let ch = confirm_channel(&c).await;
    publish_c(&ch, "", "nowhere", b"x", Default::default()).await;
    // a forged one closes the connection with RabbitMQ's code and text
    let forged = hs256(b"wrong", serde_json::json!({"sub": "rotating", "aud": "rabbitmq", "scope": ""}));
    let e = timeout(c.update_secret(forged.as_str().into(), "refresh".into())).await.unwrap_err();
    assert_eq!(amqp_error(&e).unwrap(), (530, "NOT_ALLOWED - New secret was refused by one of the backends".into()));

    // internal users: the secret is accepted as it is (RabbitMQ: state cannot expire)
    let g = b.connect().await;
    timeout(g.update_secret("anything".into(), "rotate".into())).await.expect("update-secret-ok for an internal user");
    assert_channel_ok(&timeout(g.create_channel()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_on_the_next_operation_as_rabbitmq_3_10_does() {
    let b = TestBroker::start_with(oauth2).await;
    if b.is_external() {
        return;
    }
    let exp = now() + 3;
    let t = hs256(SECRET, serde_json::json!({"sub": "brief", "aud": "rabbitmq", "scope": "rabbitmq.write:*/* rabbitmq.read:*/*", "exp": exp}));
    let c = login(&b, "", &t, "%2f").await.expect("token login");
    let ch = confirm_channel(&c).await;
    publish_c(&ch, "", "nowhere", b"x", Default::default()).await;
    // wait until the token has expired (the broker's clock, seconds)
    while now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (code, text) = publish_refused(&ch, "", "nowhere").await;
    let prefix = "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'brief', backend warren_auth_backend_oauth2 returned an error: \"Provided JWT token has expired at timestamp ";
    assert_eq!(code, 403);
    assert!(text.starts_with(&format!("{prefix}{exp} (validated at ")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_does_not_call_the_plugin_per_message() {
    let b = TestBroker::start_with(oauth2).await;
    if b.is_external() {
        return;
    }
    let plugin = b.plugin_manager().auth_plugin("warren_auth_backend_oauth2").expect("loaded");
    let t = token("busy", "rabbitmq.write:*/* rabbitmq.write:*/amq.topic/* rabbitmq.read:*/*");
    let c = login(&b, "", &t, "%2f").await.expect("token login");
    let ch = confirm_channel(&c).await;
    publish_c(&ch, "", "nowhere", b"x", Default::default()).await;
    publish_c(&ch, "amq.topic", "a.b", b"x", Default::default()).await;
    let before = plugin.calls();
    for _ in 0..500 {
        publish_c(&ch, "", "nowhere", b"x", Default::default()).await;
        publish_c(&ch, "amq.topic", "a.b", b"x", Default::default()).await;
    }
    assert_eq!(plugin.calls(), before, "1,000 publishes entered the plugin");
    // a new routing key is one more topic check, then cached too
    for _ in 0..10 {
        publish_c(&ch, "amq.topic", "c.d", b"x", Default::default()).await;
    }
    assert_eq!(plugin.calls(), before + 1);
}
