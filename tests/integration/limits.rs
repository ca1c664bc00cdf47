//! Vhost and user limits (rabbitmqctl's set_vhost_limits / set_user_limits) and channel_max,
//! enforced on real connections with RabbitMQ's codes and texts; the CLI's texts and exit codes.
//! Also runs against the reference RabbitMQ (WARREN_TEST_URL + WARREN_TEST_RABBITMQCTL).
use crate::common;
use amq_protocol::protocol::{AMQPClass, channel, connection};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

/// A fresh user (password "pw", tag-less) and vhost with full permissions for both.
async fn setup(b: &TestBroker) -> Option<(String, String)> {
    let (user, vhost) = (uniq("lu"), uniq("lv"));
    b.ctl_ok(&["add_user", &user, "pw"]).await?;
    b.ctl_ok(&["add_vhost", &vhost]).await?;
    b.ctl_ok(&["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"]).await?;
    Some((user, vhost))
}

async fn cleanup(b: &TestBroker, user: &str, vhost: &str) {
    let _ = b.ctl(&["delete_user", user]).await;
    let _ = b.ctl(&["delete_vhost", vhost]).await;
}

async fn try_connect(uri: &str) -> Result<Connection, lapin::Error> {
    timeout(Connection::connect(uri, ConnectionProperties::default())).await
}

#[tokio::test]
async fn vhost_connection_and_queue_limits() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b).await else { return };
    let out = b.ctl_ok(&["set_vhost_limits", "-p", &vh, r#"{"max-connections": 2, "max-queues": 2}"#]).await.unwrap();
    assert_eq!(out, format!("Setting vhost limits to \"{{\"max-connections\": 2, \"max-queues\": 2}}\" for vhost \"{vh}\" ...\n"));
    let out = b.ctl_ok(&["list_vhost_limits", "-p", &vh]).await.unwrap();
    assert_eq!(out, format!("Listing limits for vhost \"{vh}\" ...\n{{\"max-connections\":2,\"max-queues\":2}}\n"));
    let out = b.ctl_ok(&["list_vhost_limits", "--global"]).await.unwrap();
    assert!(out.starts_with("Listing limits for all vhosts ...\nvhost\tlimits\n"), "{out}");
    assert!(out.contains(&format!("{vh}\t{{\"max-connections\":2,\"max-queues\":2}}\n")), "{out}");

    let uri = b.uri_for(&user, "pw", &vh);
    let c1 = try_connect(&uri).await.unwrap();
    let _c2 = try_connect(&uri).await.unwrap();
    let err = try_connect(&uri).await.unwrap_err();
    assert_eq!(
        amqp_error(&err),
        Some((530, format!("NOT_ALLOWED - access to vhost '{vh}' refused for user '{user}': connection limit (2) is reached")))
    );

    // Queues: two may be created; redeclaring one is fine; a third is refused.
    let ch = timeout(c1.create_channel()).await.unwrap();
    for q in ["q1", "q2", "q1"] {
        timeout(ch.queue_declare(q.into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    }
    let r = timeout(ch.queue_declare("q3".into(), QueueDeclareOptions::default(), FieldTable::default())).await;
    assert_eq!(
        amqp_error(&r.unwrap_err()),
        Some((406, format!("PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '{vh}' (2) is reached")))
    );

    // Cleared: a third connection and queue are fine.
    let out = b.ctl_ok(&["clear_vhost_limits", "-p", &vh]).await.unwrap();
    assert_eq!(out, format!("Clearing vhost \"{vh}\" limits ...\n"));
    let c3 = try_connect(&uri).await.unwrap();
    let ch = timeout(c3.create_channel()).await.unwrap();
    timeout(ch.queue_declare("q3".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    let out = b.ctl_ok(&["list_vhost_limits", "-p", &vh]).await.unwrap();
    assert_eq!(out, format!("Listing limits for vhost \"{vh}\" ...\n\n"));
    // A negative value means no limit.
    b.ctl_ok(&["set_vhost_limits", "-p", &vh, r#"{"max-connections": -1}"#]).await.unwrap();
    let _c4 = try_connect(&uri).await.unwrap();
    cleanup(&b, &user, &vh).await;
    b.stop().await;
}

#[tokio::test]
async fn user_connection_and_channel_limits() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b).await else { return };
    let out = b.ctl_ok(&["set_user_limits", &user, r#"{"max-connections": 1, "max-channels": 2}"#]).await.unwrap();
    assert_eq!(out, format!("Setting user limits to \"{{\"max-connections\": 1, \"max-channels\": 2}}\" for user \"{user}\" ...\n"));
    let out = b.ctl_ok(&["list_user_limits", "--user", &user]).await.unwrap();
    assert_eq!(out, format!("Listing limits for user \"{user}\" ...\n{{\"max-channels\":2,\"max-connections\":1}}\n"));

    let uri = b.uri_for(&user, "pw", &vh);
    let c1 = try_connect(&uri).await.unwrap();
    let err = try_connect(&uri).await.unwrap_err();
    assert_eq!(
        amqp_error(&err),
        Some((530, format!("NOT_ALLOWED - connection refused for user '{user}': user connection limit (1) is reached")))
    );
    let _ch1 = timeout(c1.create_channel()).await.unwrap();
    let _ch2 = timeout(c1.create_channel()).await.unwrap();
    let err = timeout(c1.create_channel()).await.unwrap_err();
    assert_eq!(
        amqp_error(&err),
        Some((
            530,
            format!("NOT_ALLOWED - number of channels opened for user '{user}' has reached the maximum allowed user limit of (2)")
        ))
    );
    // Clearing one limit keeps the other.
    let out = b.ctl_ok(&["clear_user_limits", &user, "max-connections"]).await.unwrap();
    assert_eq!(out, format!("Clearing \"max-connections\" limit for user \"{user}\" ...\n"));
    let out = b.ctl_ok(&["list_user_limits", "--user", &user]).await.unwrap();
    assert_eq!(out, format!("Listing limits for user \"{user}\" ...\n{{\"max-channels\":2}}\n"));
    let c2 = try_connect(&uri).await.unwrap();
    let c3 = try_connect(&uri).await.unwrap();
    let _a = timeout(c2.create_channel()).await.unwrap();
    let _b = timeout(c2.create_channel()).await.unwrap();
    // The limit counts the user's channels on all connections.
    assert!(timeout(c3.create_channel()).await.is_err());
    let out = b.ctl_ok(&["clear_user_limits", &user, "all"]).await.unwrap();
    assert_eq!(out, format!("Clearing all limits for user \"{user}\" ...\n"));
    let c4 = try_connect(&uri).await.unwrap();
    let _c = timeout(c4.create_channel()).await.unwrap();
    cleanup(&b, &user, &vh).await;
    b.stop().await;
}

#[tokio::test]
async fn limit_commands_refuse_bad_input_like_rabbitmqctl() {
    let b = TestBroker::start().await;
    let Some((user, vh)) = setup(&b).await else { return };
    let check = |args: Vec<String>, code: i32, err: String| {
        let b = &b;
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let Some((c, _out, e)) = b.ctl(&a).await else { return };
            assert_eq!((c, e.as_str()), (code, err.as_str()), "{args:?}");
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    check(s(&["set_vhost_limits", "-p", &vh, r#"{"max-foo": 1}"#]), 69, "Error:\nValidation failed\n\nUnrecognised terms [{<<\"max-foo\">>,1}] in limits\n\n".into()).await;
    check(s(&["set_vhost_limits", "-p", &vh, "notjson"]), 69, "Error:\nJSON decoding error. Reason: badarg\n".into()).await;
    check(s(&["set_vhost_limits", "-p", &vh, r#"{"max-queues": "x"}"#]), 69, "Error:\nValidation failed\n\nmax-queues should be a number, actually was <<\"x\">>\n\n".into()).await;
    check(s(&["set_vhost_limits", "-p", "no-such-vhost", r#"{"max-queues": 1}"#]), 65, "Virtual host 'no-such-vhost' does not exist\n".into()).await;
    check(s(&["set_user_limits", "no-such-user", r#"{"max-channels": 1}"#]), 69, "Error:\n{:no_such_user, \"no-such-user\"}\n".into()).await;
    check(s(&["set_user_limits", &user, r#"{"max-queues": 1}"#]), 69, "Error:\nUnrecognised terms [{<<\"max-queues\">>,1}] in user-limits\n".into()).await;
    check(s(&["clear_vhost_limits", "-p", &vh]), 69, "Error:\nParameter does not exist\n".into()).await;
    check(s(&["list_user_limits", "--user", "no-such-user"]), 69, "Error:\n{:no_such_user, \"no-such-user\"}\n".into()).await;
    cleanup(&b, &user, &vh).await;
    b.stop().await;
}

#[tokio::test]
async fn channel_max_limits_how_many_channels_are_open() {
    let b = TestBroker::start().await;
    let mut raw = RawClient::connect(b.addr()).await;
    let o = HandshakeOpts { channel_max: 2, ..Default::default() };
    raw.start_and_tune(&o).await;
    raw.send_open("/").await;
    match raw.expect_method().await {
        (0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))) => {}
        other => panic!("expected open-ok, got {other:?}"),
    }
    // Channel numbers above channel_max are fine, as RabbitMQ: it counts open channels.
    raw.open_channel(1).await;
    raw.open_channel(500).await;
    raw.send_method(3, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))).await;
    let (code, text, class, method) = raw.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (530, "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)", 0, 0)
    );
    b.stop().await;
}

/// `[amqp] consumer_max_per_channel` (RabbitMQ 3.11+'s key; 3.10 has no such limit, so this
/// runs against Warren only): a channel holds that many consumers, another channel its own;
/// one more closes the connection with 530; a cancel makes room; a reused tag still gets its
/// own error.
#[tokio::test]
async fn consumer_max_per_channel_limits_each_channel() {
    let b = TestBroker::start_with(|c| c.amqp.consumer_max_per_channel = Some(2)).await;
    if b.is_external() {
        return;
    }
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let other = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.queue_declare("cm".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    // lapin cancels a consumer when its handle is dropped: keep them.
    let mut keep = Vec::new();
    for (c, tag) in [(&ch, "a"), (&ch, "b"), (&other, "a"), (&other, "b")] {
        keep.push(timeout(c.basic_consume("cm".into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())).await.unwrap());
    }
    // A cancel makes room for one more.
    timeout(ch.basic_cancel("a".into(), BasicCancelOptions::default())).await.unwrap();
    keep.push(timeout(ch.basic_consume("cm".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())).await.unwrap());
    // At the limit a reused tag is reported as such (RabbitMQ checks the tag first).
    let r = timeout(ch.basic_consume("cm".into(), "b".into(), BasicConsumeOptions::default(), FieldTable::default())).await;
    assert_eq!(amqp_error(&r.unwrap_err()), Some((530, "NOT_ALLOWED - attempt to reuse consumer tag 'b'".into())));

    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    for tag in ["a", "b"] {
        keep.push(timeout(ch.basic_consume("cm".into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())).await.unwrap());
    }
    let r = timeout(ch.basic_consume("cm".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())).await;
    assert_eq!(amqp_error(&r.unwrap_err()), Some((530, "NOT_ALLOWED - reached maximum (2) of consumers per channel".into())));
    assert!(!conn.status().connected(), "a hard error closes the connection");
}

/// `[amqp] channel_max = 0` is "no limit", as RabbitMQ's `channel_max = 0`: the client's own
/// maximum stands (lapin: 65535) and more channels than the default 2047 open.
#[tokio::test]
async fn channel_max_zero_means_no_limit() {
    let b = TestBroker::start_with(|c| c.amqp.channel_max = 0).await;
    if b.is_external() {
        return;
    }
    let conn = b.connect().await;
    assert_eq!(conn.configuration().channel_max(), 65535);
    let mut chans = Vec::new();
    for _ in 0..2100 {
        chans.push(timeout(conn.create_channel()).await.unwrap());
    }
    timeout(chans[2099].queue_declare("".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
}
