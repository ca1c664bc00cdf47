//! Topic permissions (`set_topic_permissions`, RabbitMQ's internal backend): the routing key of a
//! publish and the binding key of a bind/unbind on a topic exchange must match the user's write
//! or read pattern for that exchange, with `{username}` and `{vhost}` expanded; refusals close
//! the channel with RabbitMQ's 403 text. Set through the operator CLI (warrenctl, or rabbitmqctl
//! against the reference node via `WARREN_TEST_RABBITMQCTL`).
use crate::common;
use common::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

/// A fresh user (password "pw", full permissions) and vhost. None when the broker cannot be
/// administered (external broker without a CLI configured).
async fn setup(b: &TestBroker) -> Option<(String, String)> {
    let (user, vhost) = (uniq("tu"), uniq("tv"));
    b.ctl_ok(&["add_user", &user, "pw"]).await?;
    b.ctl_ok(&["add_vhost", &vhost]).await?;
    b.ctl_ok(&["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"]).await?;
    Some((user, vhost))
}

async fn cleanup(b: &TestBroker, user: &str, vhost: &str) {
    let _ = b.ctl(&["delete_user", user]).await;
    let _ = b.ctl(&["delete_vhost", vhost]).await;
}

async fn connect(uri: &str) -> Connection {
    timeout(Connection::connect(uri, ConnectionProperties::default())).await.expect("connect")
}

/// Publishes with a confirm on `ch` (a confirm channel): Ok if acked, else the channel's error.
async fn try_publish(ch: &lapin::Channel, exchange: &str, rk: &str) -> Result<(), (u16, String)> {
    let confirm = timeout(ch.basic_publish(exchange.into(), rk.into(), Default::default(), b"m", Default::default()))
        .await
        .map_err(|e| amqp_error(&e).expect("AMQP error"))?;
    match timeout(confirm).await {
        Ok(c) if c.is_ack() => Ok(()),
        Ok(c) => panic!("publish {exchange}/{rk} nacked: {c:?}"),
        Err(e) => Err(amqp_error(&e).unwrap_or_else(|| panic!("expected an AMQP error, got {e:?}"))),
    }
}

fn refused(user: &str, vhost: &str, exchange: &str, key: &str) -> (u16, String) {
    (403, format!("ACCESS_REFUSED - access to topic '{key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'"))
}

#[tokio::test]
async fn publish_and_bind_keys_must_match_the_topic_permission() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b).await else { return };
    // {username} and {vhost} stand for the user's name and the vhost.
    b.ctl_ok(&["set_topic_permissions", "-p", &vh, &user, "amq.topic", "^{username}\\.", "^{vhost}\\."]).await.unwrap();
    // A row for a direct exchange restricts nothing: only topic exchanges are checked.
    b.ctl_ok(&["set_topic_permissions", "-p", &vh, &user, "amq.direct", "", ""]).await.unwrap();
    let conn = connect(&b.uri_for(&user, "pw", &vh)).await;

    // write: the routing key of a publish
    let ch = confirm_channel(&conn).await;
    try_publish(&ch, "amq.topic", &format!("{user}.a")).await.expect("matching routing key");
    try_publish(&ch, "amq.direct", "anything").await.expect("not a topic exchange");
    let other = timeout(conn.create_channel()).await.unwrap();
    timeout(other.exchange_declare("free-x".into(), ExchangeKind::Topic, Default::default(), FieldTable::default())).await.unwrap();
    try_publish(&ch, "free-x", "any.key").await.expect("a topic exchange without a row allows every key");
    assert_eq!(try_publish(&ch, "amq.topic", "other.a").await, Err(refused(&user, &vh, "amq.topic", "other.a")));
    assert!(!ch.status().connected(), "the refusal closes the channel");
    assert_channel_ok(&other).await;

    // read: the binding key of queue.bind, queue.unbind and exchange.bind
    let q = temp_queue(&other).await;
    let ok_key = format!("{vh}.x");
    timeout(other.queue_bind(q.as_str().into(), "amq.topic".into(), ok_key.as_str().into(), Default::default(), FieldTable::default()))
        .await
        .expect("matching binding key");
    timeout(other.queue_unbind(q.as_str().into(), "amq.topic".into(), ok_key.as_str().into(), FieldTable::default()))
        .await
        .expect("matching unbind");
    let ch = timeout(conn.create_channel()).await.unwrap();
    let e = expect_amqp_err(ch.queue_bind(q.as_str().into(), "amq.topic".into(), "zz".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e, refused(&user, &vh, "amq.topic", "zz"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let e = expect_amqp_err(ch.queue_unbind(q.as_str().into(), "amq.topic".into(), "zz".into(), FieldTable::default())).await;
    assert_eq!(e, refused(&user, &vh, "amq.topic", "zz"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let e = expect_amqp_err(ch.exchange_bind("free-x".into(), "amq.topic".into(), "zz".into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e, refused(&user, &vh, "amq.topic", "zz"));
    // The write pattern does not grant read, nor the read pattern write.
    let ch = timeout(conn.create_channel()).await.unwrap();
    let e = expect_amqp_err(ch.queue_bind(q.as_str().into(), "amq.topic".into(), format!("{user}.a").as_str().into(), Default::default(), FieldTable::default())).await;
    assert_eq!(e, refused(&user, &vh, "amq.topic", &format!("{user}.a")));
    let ch = confirm_channel(&conn).await;
    assert_eq!(try_publish(&ch, "amq.topic", &ok_key).await, Err(refused(&user, &vh, "amq.topic", &ok_key)));
    cleanup(&b, &user, &vh).await;
}

/// A change applies to open channels from their next operation on (their caches of allowed
/// checks are dropped), and clearing lifts the restriction.
#[tokio::test]
async fn set_and_clear_apply_to_open_channels() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b).await else { return };
    let conn = connect(&b.uri_for(&user, "pw", &vh)).await;
    let ch = confirm_channel(&conn).await;
    try_publish(&ch, "amq.topic", "k.1").await.expect("no topic permissions: every key");
    try_publish(&ch, "amq.topic", "k.1").await.expect("again, now cached");
    b.ctl_ok(&["set_topic_permissions", "-p", &vh, &user, "amq.topic", "^ok\\.", ".*"]).await.unwrap();
    try_publish(&ch, "amq.topic", "ok.1").await.expect("matching key");
    assert_eq!(try_publish(&ch, "amq.topic", "k.1").await, Err(refused(&user, &vh, "amq.topic", "k.1")));

    let ch = confirm_channel(&conn).await;
    try_publish(&ch, "amq.topic", "ok.2").await.unwrap();
    b.ctl_ok(&["clear_topic_permissions", "-p", &vh, &user, "amq.topic"]).await.unwrap();
    try_publish(&ch, "amq.topic", "k.2").await.expect("cleared: every key again");
    // Clearing all of the user's rows in the vhost.
    b.ctl_ok(&["set_topic_permissions", "-p", &vh, &user, "amq.topic", "^ok\\.", ".*"]).await.unwrap();
    assert_eq!(try_publish(&ch, "amq.topic", "k.3").await, Err(refused(&user, &vh, "amq.topic", "k.3")));
    b.ctl_ok(&["clear_topic_permissions", "-p", &vh, &user]).await.unwrap();
    let ch = confirm_channel(&conn).await;
    try_publish(&ch, "amq.topic", "k.4").await.expect("all cleared");
    cleanup(&b, &user, &vh).await;
}

async fn ctl(b: &TestBroker, args: &[&str]) -> (i32, String, String) {
    b.ctl(args).await.expect("an operator CLI")
}

/// rabbitmqctl's texts, columns and errors for the four commands.
#[tokio::test]
async fn cli_texts_columns_and_errors() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b).await else { return };
    let (code, out, err) = ctl(&b, &["set_topic_permissions", "-p", &vh, &user, "amq.topic", "^a", "^b"]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, format!("Setting topic permissions on \"amq.topic\" for user \"{user}\" in vhost \"{vh}\" ...\n").as_str(), ""));
    ctl(&b, &["set_topic_permissions", "-p", &vh, &user, "x2", "", ""]).await;
    let (code, out, _) = ctl(&b, &["list_topic_permissions", "-p", &vh]).await;
    assert_eq!(code, 0);
    // RabbitMQ lists rows in no particular order.
    let mut lines: Vec<&str> = out.lines().collect();
    lines[2..].sort();
    assert_eq!(
        lines,
        [format!("Listing topic permissions for vhost \"{vh}\" ..."), "user\texchange\twrite\tread".into(), format!("{user}\tamq.topic\t^a\t^b"), format!("{user}\tx2\t\t")]
    );
    ctl(&b, &["clear_topic_permissions", "-p", &vh, &user, "x2"]).await;
    let (_, out, _) = ctl(&b, &["list_topic_permissions", "-p", &vh, "--formatter", "json"]).await;
    assert_eq!(out, format!("[\n{{\"user\":\"{user}\",\"exchange\":\"amq.topic\",\"write\":\"^a\",\"read\":\"^b\"}}\n]\n"));
    // rabbitmqctl 3.10 prints this list without a header row.
    let (code, out, _) = ctl(&b, &["list_user_topic_permissions", &user]).await;
    assert_eq!((code, out), (0, format!("Listing topic permissions for user \"{user}\" ...\n{vh}\tamq.topic\t^a\t^b\n")));
    let (_, out, _) = ctl(&b, &["list_user_topic_permissions", &user, "--formatter", "json"]).await;
    assert_eq!(out, format!("[\n{{\"vhost\":\"{vh}\",\"exchange\":\"amq.topic\",\"write\":\"^a\",\"read\":\"^b\"}}\n]\n"));
    let (code, out, _) = ctl(&b, &["clear_topic_permissions", "-p", &vh, &user]).await;
    assert_eq!((code, out), (0, format!("Clearing topic permissions for user \"{user}\" in vhost \"{vh}\" ...\n")));
    let (code, out, _) = ctl(&b, &["list_topic_permissions", "-q", "-p", &vh]).await;
    assert_eq!((code, out.as_str()), (0, "\n"), "nothing left: one blank line");

    // errors: unknown user, unknown vhost, invalid pattern, argument count
    let (code, _, err) = ctl(&b, &["set_topic_permissions", "-p", &vh, "no-such-user", "amq.topic", "a", "b"]).await;
    assert_eq!((code, err.as_str()), (67, "Error:\nUser no-such-user does not exist\n"));
    let (code, _, err) = ctl(&b, &["set_topic_permissions", "-p", "no-such-vhost", &user, "amq.topic", "a", "b"]).await;
    assert_eq!((code, err.as_str()), (69, "Error:\nVirtual host no-such-vhost does not exist\n"));
    let (code, _, err) = ctl(&b, &["set_topic_permissions", "-p", &vh, &user, "amq.topic", "(", "b"]).await;
    assert_eq!(code, 69);
    assert!(err.ends_with("Error:\n{:invalid_regexp, \"(\", {'missing )', 1}}\n"), "{err}");
    let (code, _, err) = ctl(&b, &["clear_topic_permissions", "-p", &vh, "no-such-user"]).await;
    assert_eq!((code, err.as_str()), (67, "Error:\nUser no-such-user does not exist\n"));
    let (code, _, err) = ctl(&b, &["clear_topic_permissions", "-p", "no-such-vhost", &user, "amq.topic"]).await;
    assert_eq!((code, err.as_str()), (69, "Error:\nVirtual host no-such-vhost does not exist\n"));
    let (code, _, err) = ctl(&b, &["list_topic_permissions", "-p", "no-such-vhost"]).await;
    assert_eq!((code, err.as_str()), (65, "Virtual host 'no-such-vhost' does not exist\n"));
    let (code, _, err) = ctl(&b, &["list_user_topic_permissions", "no-such-user"]).await;
    assert_eq!((code, err.as_str()), (69, "Error:\n{:no_such_user, \"no-such-user\"}\n"));
    let (code, _, err) = ctl(&b, &["set_topic_permissions", &user, "amq.topic", "a"]).await;
    assert_eq!(code, 64);
    assert!(err.starts_with("Error (argument validation): not enough arguments.\n"), "{err}");
    let (code, _, err) = ctl(&b, &["clear_topic_permissions", &user, "a", "b"]).await;
    assert_eq!(code, 64);
    assert!(err.starts_with("Error (argument validation): too many arguments.\n"), "{err}");

    // Deleting the user (or the vhost) takes its topic permissions with it.
    ctl(&b, &["set_topic_permissions", "-p", &vh, &user, "amq.topic", "^a", "^b"]).await;
    let other = uniq("tu2");
    ctl(&b, &["add_user", &other, "pw"]).await;
    ctl(&b, &["set_topic_permissions", "-p", &vh, &other, "amq.topic", "^c", "^d"]).await;
    ctl(&b, &["delete_user", &user]).await;
    let (_, out, _) = ctl(&b, &["list_topic_permissions", "-q", "-p", &vh]).await;
    assert_eq!(out, format!("user\texchange\twrite\tread\n{other}\tamq.topic\t^c\t^d\n"));
    ctl(&b, &["delete_vhost", &vh]).await;
    let (code, out, _) = ctl(&b, &["list_user_topic_permissions", "-q", &other]).await;
    assert_eq!((code, out.as_str()), (0, "\n"));
    let _ = ctl(&b, &["delete_user", &other]).await;
}

/// Topic permissions are durable: after `kill -9` and a restart they are listed and enforced
/// as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_permissions_survive_a_restart() {
    use crate::durability::{wait_for_control_socket, warrenctl};
    use common::process::{Server, free_port};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let port = free_port();
    let s = Server::start_with(data, port, &[]).await;
    wait_for_control_socket(data).await;
    for args in [
        &["add_user", "tp", "pw"][..],
        &["set_permissions", "tp", ".*", ".*", ".*"],
        &["set_topic_permissions", "tp", "amq.topic", "^{username}\\.", ".*"],
        &["set_topic_permissions", "tp", "gone", "a", "b"],
        &["clear_topic_permissions", "tp", "gone"],
    ] {
        assert_eq!(warrenctl(data, args).0, 0, "{args:?}");
    }
    s.kill9();

    let s = Server::start_with(data, port, &[]).await;
    wait_for_control_socket(data).await;
    assert_eq!(warrenctl(data, &["list_topic_permissions", "-q"]), (0, "user\texchange\twrite\tread\ntp\tamq.topic\t^{username}\\.\t.*\n".into()));
    let conn = connect(&format!("amqp://tp:pw@127.0.0.1:{port}/%2f")).await;
    let ch = confirm_channel(&conn).await;
    try_publish(&ch, "amq.topic", "tp.1").await.expect("matching key after the restart");
    assert_eq!(try_publish(&ch, "amq.topic", "x.1").await, Err(refused("tp", "/", "amq.topic", "x.1")));
    drop(conn);
    s.kill9();
}
