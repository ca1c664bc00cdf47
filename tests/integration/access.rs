//! Users, vhosts and permissions created through the operator CLI (`warrenctl`, or rabbitmqctl
//! against the reference node via `WARREN_TEST_RABBITMQCTL`), then enforced on real AMQP
//! connections with RabbitMQ's exact reply texts.
use crate::common;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

/// A fresh user (password "pw") and vhost; guest gets full permissions there, the user `perms`.
/// None when the broker cannot be administered (external broker without a CLI configured).
async fn setup(b: &TestBroker, perms: [&str; 3]) -> Option<(String, String)> {
    let (user, vhost) = (uniq("u"), uniq("v"));
    b.ctl_ok(&["add_user", &user, "pw"]).await?;
    b.ctl_ok(&["add_vhost", &vhost]).await?;
    b.ctl_ok(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]).await?;
    b.ctl_ok(&["set_permissions", "-p", &vhost, &user, perms[0], perms[1], perms[2]]).await?;
    Some((user, vhost))
}

async fn cleanup(b: &TestBroker, user: &str, vhost: &str) {
    let _ = b.ctl(&["delete_user", user]).await;
    let _ = b.ctl(&["delete_vhost", vhost]).await;
}

async fn connect(uri: &str) -> Connection {
    timeout(Connection::connect(uri, ConnectionProperties::default())).await.expect("connect")
}

/// Publishes on a fresh channel of `conn` and returns the error that closes the channel (a consumer
/// on the user's own queue `probe` observes it).
async fn publish_error(conn: &Connection, probe: &str, exchange: &str, rk: &str) -> (u16, String) {
    use futures_lite::StreamExt;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let mut c = timeout(ch.basic_consume(probe.into(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default()))
        .await
        .expect("probe consumer");
    let _ = timeout(ch.basic_publish(exchange.into(), rk.into(), Default::default(), b"m", Default::default())).await;
    loop {
        match tokio::time::timeout(WAIT, c.next()).await.expect("no channel error within the timeout") {
            // Messages already in the probe queue are not what we wait for.
            Some(Ok(_)) => continue,
            Some(Err(e)) => return amqp_error(&e).unwrap_or_else(|| panic!("expected an AMQP error, got {e:?}")),
            None => panic!("the channel closed without an AMQP error"),
        }
    }
}

#[tokio::test]
async fn permission_denials_have_rabbitmq_texts() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b, ["^own-", "^own-", "^own-"]).await else { return };
    // guest creates what the user may not touch.
    let admin = connect(&b.uri_for("guest", "guest", &vh)).await;
    let ach = timeout(admin.create_channel()).await.unwrap();
    timeout(ach.queue_declare("q1".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ach.exchange_declare("x1".into(), ExchangeKind::Direct, Default::default(), FieldTable::default())).await.unwrap();

    let conn = connect(&b.uri_for(&user, "pw", &vh)).await;
    let refused = |kind: &str, name: &str| format!("ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vh}' refused for user '{user}'");
    let ch = || async { timeout(conn.create_channel()).await.unwrap() };

    // What the user may do: its own objects, and passive declares of anything.
    let own = ch().await;
    timeout(own.queue_declare("own-q".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(own.exchange_declare("own-x".into(), ExchangeKind::Direct, Default::default(), FieldTable::default())).await.unwrap();
    timeout(own.queue_bind("own-q".into(), "own-x".into(), "k".into(), Default::default(), FieldTable::default())).await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    timeout(own.queue_declare("q1".into(), passive, FieldTable::default())).await.expect("passive declare needs no permission");
    let pc = timeout(own.basic_publish("own-x".into(), "k".into(), Default::default(), b"hi", Default::default())).await.unwrap();
    drop(pc);

    // configure
    let e = expect_amqp_err(ch().await.queue_declare("nq".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e, (403, refused("queue", "nq")));
    let e = expect_amqp_err(ch().await.exchange_declare("nx".into(), ExchangeKind::Fanout, Default::default(), FieldTable::default())).await;
    assert_eq!(e, (403, refused("exchange", "nx")));
    let e = expect_amqp_err(ch().await.queue_delete("q1".into(), Default::default())).await;
    assert_eq!(e, (403, refused("queue", "q1")));
    let e = expect_amqp_err(ch().await.exchange_delete("x1".into(), Default::default())).await;
    assert_eq!(e, (403, refused("exchange", "x1")));
    // A server-named queue needs configure permission on its amq.gen-… name.
    let (code, text) = expect_amqp_err(ch().await.queue_declare("".into(), QueueDeclareOptions::exclusive(), FieldTable::default())).await;
    assert_eq!(code, 403);
    assert!(text.starts_with("ACCESS_REFUSED - access to queue 'amq.gen-") && text.ends_with(&format!("' in vhost '{vh}' refused for user '{user}'")), "{text}");
    // read
    let e = expect_amqp_err(ch().await.basic_get("q1".into(), Default::default())).await;
    assert_eq!(e, (403, refused("queue", "q1")));
    let e = expect_amqp_err(ch().await.basic_consume("q1".into(), "".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e, (403, refused("queue", "q1")));
    let e = expect_amqp_err(ch().await.queue_purge("q1".into(), Default::default())).await;
    assert_eq!(e, (403, refused("queue", "q1")));
    // Permissions come before existence: a missing queue is refused, not 404.
    let e = expect_amqp_err(ch().await.basic_get("missing".into(), Default::default())).await;
    assert_eq!(e, (403, refused("queue", "missing")));
    // bind: write on the destination, read on the source.
    let e = expect_amqp_err(ch().await.queue_bind("own-q".into(), "x1".into(), "k".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e, (403, refused("exchange", "x1")));
    let e = expect_amqp_err(ch().await.queue_bind("q1".into(), "own-x".into(), "k".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e, (403, refused("queue", "q1")));
    let e = expect_amqp_err(ch().await.exchange_bind("x1".into(), "own-x".into(), "k".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e, (403, refused("exchange", "x1")));
    // write: publishing, including to the default exchange (amq.default) and to a missing one.
    assert_eq!(publish_error(&conn, "own-q", "x1", "k").await, (403, refused("exchange", "x1")));
    assert_eq!(publish_error(&conn, "own-q", "", "own-q").await, (403, refused("exchange", "amq.default")));
    assert_eq!(publish_error(&conn, "own-q", "nope", "k").await, (403, refused("exchange", "nope")));
    // The connection survived all of these (channel errors only).
    assert_channel_ok(&ch().await).await;
    let _ = admin.close(200, "bye".into()).await;
    let _ = conn.close(200, "bye".into()).await;
    cleanup(&b, &user, &vh).await;
}

#[tokio::test]
async fn vhost_without_permissions_is_530() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b, [".*", ".*", ".*"]).await else { return };
    let r = Connection::connect(&b.uri_for(&user, "pw", "/"), ConnectionProperties::default()).await;
    match r {
        Ok(_) => panic!("user without permissions on / was let in"),
        Err(e) => assert_eq!(amqp_error(&e), Some((530, format!("NOT_ALLOWED - access to vhost '/' refused for user '{user}'")))),
    }
    // The user's own vhost works, with both mechanisms.
    for mechanism in ["PLAIN", "AMQPLAIN"] {
        let o = HandshakeOpts { user: user.clone(), pass: "pw".into(), vhost: vh.clone(), mechanism: mechanism.into(), ..Default::default() };
        let _c = RawClient::handshake(b.addr(), o).await;
    }
    cleanup(&b, &user, &vh).await;
}

#[tokio::test]
async fn permission_changes_apply_to_the_next_operation_of_open_channels() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b, [".*", ".*", ".*"]).await else { return };
    if b.is_external() {
        // RabbitMQ caches permission checks per channel; Warren applies changes at once.
        cleanup(&b, &user, &vh).await;
        return;
    }
    let conn = connect(&b.uri_for(&user, "pw", &vh)).await;
    let ch = confirm_channel(&conn).await;
    timeout(ch.queue_declare("own-q".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_declare("own-probe".into(), Default::default(), FieldTable::default())).await.unwrap();
    publish_c(&ch, "", "own-q", b"1", Default::default()).await;
    // Read-only now: the same channel's next publish is refused, its gets still work.
    b.ctl_ok(&["set_permissions", "-p", &vh, &user, "", "", ".*"]).await.unwrap();
    let refused = format!("ACCESS_REFUSED - access to exchange 'amq.default' in vhost '{vh}' refused for user '{user}'");
    assert_eq!(publish_error(&conn, "own-probe", "", "own-q").await, (403, refused));
    let get = timeout(conn.create_channel()).await.unwrap();
    assert_eq!(drain(&get, "own-q").await, vec!["1".to_string()]);
    // Cleared: reads are refused too; restored: everything works again on a new channel.
    b.ctl_ok(&["clear_permissions", "-p", &vh, &user]).await.unwrap();
    let e = expect_amqp_err(get.basic_get("own-q".into(), Default::default())).await;
    assert_eq!(e, (403, format!("ACCESS_REFUSED - access to queue 'own-q' in vhost '{vh}' refused for user '{user}'")));
    b.ctl_ok(&["set_permissions", "-p", &vh, &user, ".*", ".*", ".*"]).await.unwrap();
    let ch = confirm_channel(&conn).await;
    publish_c(&ch, "", "own-q", b"2", Default::default()).await;
    // A new password: open connections stay, new logins need it.
    b.ctl_ok(&["change_password", &user, "pw2"]).await.unwrap();
    assert_channel_ok(&ch).await;
    assert!(Connection::connect(&b.uri_for(&user, "pw", &vh), ConnectionProperties::default()).await.is_err());
    let c2 = connect(&b.uri_for(&user, "pw2", &vh)).await;
    let _ = c2.close(200, "bye".into()).await;
    cleanup(&b, &user, &vh).await;
}

#[tokio::test]
async fn delete_user_closes_its_connections_with_320() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b, [".*", ".*", ".*"]).await else { return };
    let o = || HandshakeOpts { user: user.clone(), pass: "pw".into(), vhost: vh.clone(), ..Default::default() };
    let mut c1 = RawClient::handshake(b.addr(), o()).await;
    c1.open_channel(1).await;
    let mut c2 = RawClient::handshake(b.addr(), o()).await;
    let mut guest = RawClient::handshake(b.addr(), HandshakeOpts { vhost: vh.clone(), ..Default::default() }).await;
    b.ctl_ok(&["delete_user", &user]).await.unwrap();
    let text = format!("CONNECTION_FORCED - user '{user}' is deleted");
    assert_eq!(c1.expect_connection_close().await, (320, text.clone(), 0, 0));
    assert_eq!(c2.expect_connection_close().await, (320, text, 0, 0));
    // Other users' connections stay.
    assert!(!guest.closed_within(QUIET).await);
    // The user cannot log in any more.
    let r = Connection::connect(&b.uri_for(&user, "pw", &vh), ConnectionProperties::default()).await;
    assert!(r.is_err());
    cleanup(&b, &user, &vh).await;
}

#[tokio::test]
async fn delete_vhost_removes_its_contents_and_closes_its_connections() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b, [".*", ".*", ".*"]).await else { return };
    let conn = connect(&b.uri_for("guest", "guest", &vh)).await;
    let ch = confirm_channel(&conn).await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("dq".into(), durable, FieldTable::default())).await.unwrap();
    publish_c(&ch, "", "dq", b"m", lapin::BasicProperties::default().with_delivery_mode(2)).await;
    let mut raw = RawClient::handshake(b.addr(), HandshakeOpts { user: user.clone(), pass: "pw".into(), vhost: vh.clone(), ..Default::default() }).await;
    let mut other = RawClient::handshake(b.addr(), HandshakeOpts::default()).await;
    b.ctl_ok(&["delete_vhost", &vh]).await.unwrap();
    assert_eq!(raw.expect_connection_close().await, (320, format!("CONNECTION_FORCED - vhost '{vh}' is deleted"), 0, 0));
    assert!(!other.closed_within(QUIET).await, "connections to other vhosts stay");
    let r = Connection::connect(&b.uri_for("guest", "guest", &vh), ConnectionProperties::default()).await;
    match r {
        Ok(_) => panic!("connected to a deleted vhost"),
        Err(e) => assert_eq!(amqp_error(&e), Some((530, format!("NOT_ALLOWED - vhost {vh} not found")))),
    }
    // Re-created, it is empty, and nobody has permissions there.
    b.ctl_ok(&["add_vhost", &vh]).await.unwrap();
    let out = b.ctl_ok(&["list_permissions", "-q", "-p", &vh]).await.unwrap();
    assert_eq!(out, "\n", "permissions went with the vhost");
    b.ctl_ok(&["set_permissions", "-p", &vh, "guest", ".*", ".*", ".*"]).await.unwrap();
    let conn = connect(&b.uri_for("guest", "guest", &vh)).await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let e = expect_amqp_err(ch.queue_declare("dq".into(), passive, FieldTable::default())).await;
    assert_eq!(e, (404, format!("NOT_FOUND - no queue 'dq' in vhost '{vh}'")));
    cleanup(&b, &user, &vh).await;
}

/// A non-loopback address of this machine, if it has one.
fn external_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?; // no packet is sent
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn only_guest_is_limited_to_loopback() {
    let Some(ip) = external_ip() else {
        eprintln!("no non-loopback address: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = warren::config::Config::for_tests(dir.path());
    cfg.amqp.bind = "0.0.0.0".into();
    let server = timeout(warren::server::start(cfg)).await.unwrap();
    let addr = std::net::SocketAddr::new(ip, server.amqp_addr.port());
    server.broker.create_user("alice", "pw").unwrap();
    server.broker.set_permissions("alice", "/", ".*", ".*", ".*").unwrap();
    let mut c = RawClient::connect(addr).await;
    let o = HandshakeOpts::default();
    assert!(!c.start_and_tune(&o).await, "guest from {ip} must be refused");
    assert_eq!(
        c.expect_connection_close().await,
        (403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.".into(), 0, 0)
    );
    let _alice = RawClient::handshake(addr, HandshakeOpts { user: "alice".into(), pass: "pw".into(), ..Default::default() }).await;
    let _guest_local = RawClient::handshake(std::net::SocketAddr::new([127, 0, 0, 1].into(), addr.port()), HandshakeOpts::default()).await;
    timeout(server.shutdown()).await;
}
