//! Policies and operator policies: rabbitmqctl's set/clear/list commands with their texts and
//! exit codes, and their effect on live queues and exchanges (highest priority wins, arguments
//! against policies, operator policies by minimum, applied at once when set or cleared).
//! Runs against the reference RabbitMQ too (WARREN_TEST_URL + WARREN_TEST_RABBITMQCTL); the
//! restart test and the list_queues columns RabbitMQ 3.10's CLI lacks are Warren's only.
use crate::common;
use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;

/// A fresh vhost where guest may do everything, and a channel on it with confirms.
async fn setup(b: &TestBroker) -> Option<(String, Connection, lapin::Channel)> {
    let vh = uniq("polv");
    b.ctl_ok(&["add_vhost", &vh]).await?;
    b.ctl_ok(&["set_permissions", "-p", &vh, "guest", ".*", ".*", ".*"]).await?;
    let conn = timeout(Connection::connect(&b.uri_for("guest", "guest", &vh), ConnectionProperties::default())).await.unwrap();
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    Some((vh, conn, ch))
}

async fn declare(ch: &lapin::Channel, q: &str, args: FieldTable) {
    timeout(ch.queue_declare(q.into(), QueueDeclareOptions::default(), args)).await.expect("queue.declare");
}

async fn publish(ch: &lapin::Channel, x: &str, key: &str, body: &str) {
    let c = timeout(ch.basic_publish(x.into(), key.into(), Default::default(), body.as_bytes(), BasicProperties::default())).await.unwrap();
    assert!(timeout(c).await.unwrap().is_ack());
}

/// Ready messages of `q` (passive declare).
async fn count(ch: &lapin::Channel, q: &str) -> u32 {
    let opts = QueueDeclareOptions { passive: true, ..Default::default() };
    timeout(ch.queue_declare(q.into(), opts, FieldTable::default())).await.expect("passive declare").message_count()
}

/// Every ready message of `q`, in order (no-ack gets).
async fn drain(ch: &lapin::Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = timeout(ch.basic_get(q.into(), BasicGetOptions { no_ack: true })).await.unwrap() {
        out.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    out
}

#[tokio::test]
async fn policy_commands_texts_and_exit_codes() {
    let b = TestBroker::start().await;
    let Some((vh, _conn, _ch)) = setup(&b).await else { return };
    let out = b.ctl_ok(&["set_policy", "-p", &vh, "p1", "^a", r#"{"message-ttl":1000,"max-length":5}"#]).await.unwrap();
    assert_eq!(out, format!("Setting policy \"p1\" for pattern \"^a\" to \"{{\"message-ttl\":1000,\"max-length\":5}}\" with priority \"0\" for vhost \"{vh}\" ...\n"));
    b.ctl_ok(&["set_policy", "-p", &vh, "--priority", "3", "--apply-to", "queues", "p2", "^a\\.", r#"{"max-length":2}"#]).await.unwrap();
    let out = b.ctl_ok(&["list_policies", "-p", &vh]).await.unwrap();
    assert_eq!(
        out,
        format!(
            "Listing policies for vhost \"{vh}\" ...\nvhost\tname\tpattern\tapply-to\tdefinition\tpriority\n{vh}\tp1\t^a\tall\t{{\"max-length\":5,\"message-ttl\":1000}}\t0\n{vh}\tp2\t^a\\.\tqueues\t{{\"max-length\":2}}\t3\n"
        )
    );
    let out = b.ctl_ok(&["list_policies", "-p", &vh, "--formatter", "json"]).await.unwrap();
    assert_eq!(
        out,
        format!(
            "[\n{{\"vhost\":\"{vh}\",\"name\":\"p1\",\"pattern\":\"^a\",\"apply-to\":\"all\",\"definition\":\"{{\\\"max-length\\\":5,\\\"message-ttl\\\":1000}}\",\"priority\":0}}\n,{{\"vhost\":\"{vh}\",\"name\":\"p2\",\"pattern\":\"^a\\\\.\",\"apply-to\":\"queues\",\"definition\":\"{{\\\"max-length\\\":2}}\",\"priority\":3}}\n]\n"
        )
    );

    // Refusals: (arguments, exit code, stderr).
    let invalid = |why: &str| format!("Error:\nValidation failed\n\n{why}\n\n");
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (vec!["set_policy", "p3", "^a", r#"{"no-such-key":1}"#], 69, invalid(r#"[{<<"no-such-key">>,1}] are not recognised policy settings"#)),
        (vec!["set_policy", "p3", "^a", r#"{"max-priority":5}"#], 69, invalid(r#"[{<<"max-priority">>,5}] are not recognised policy settings"#)),
        (vec!["set_policy", "p3", "^a", r#"{"message-ttl":-1}"#], 69, invalid("-1 is not a valid message TTL")),
        (vec!["set_policy", "p3", "^a", r#"{"expires":0}"#], 69, invalid("0 is not a valid queue expiry")),
        (vec!["set_policy", "p3", "^a", r#"{"max-length":"x"}"#], 69, invalid(r#"<<"x">> is not a valid maximum length"#)),
        (vec!["set_policy", "p3", "^a", r#"{"overflow":"bogus"}"#], 69, invalid(r#"<<"bogus">> is not a valid overflow value"#)),
        (vec!["set_policy", "p3", "^a", r#"{"dead-letter-exchange":1}"#], 69, invalid("1 is not a valid dead letter exchange name")),
        (vec!["set_policy", "p3", "^a", "{}"], 69, invalid("no policy provided")),
        (vec!["set_policy", "p3", "^a", "notjson"], 69, "Error:\nJSON decoding error. Reason: badarg\n".into()),
        (vec!["set_policy", "p3", "(", r#"{"max-length":1}"#], 69, invalid(r#"pattern should be regular expression but is invalid: {"missing )",1}"#)),
        (
            vec!["set_policy", "--apply-to", "bogus", "p3", "^a", r#"{"max-length":1}"#],
            69,
            invalid("apply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'"),
        ),
        (vec!["set_operator_policy", "o1", "^a", r#"{"dead-letter-exchange":"x"}"#], 69, invalid(r#"[{<<"dead-letter-exchange">>,<<"x">>}] are not recognised policy settings"#)),
        (vec!["clear_policy", "nosuch"], 69, "Error:\nParameter does not exist\n".into()),
        (vec!["clear_operator_policy", "nosuch"], 69, "Error:\nParameter does not exist\n".into()),
    ];
    for (args, code, err) in cases {
        let mut full = args.clone();
        full.extend(["-q", "-p", vh.as_str()]);
        let (c, _, e) = b.ctl(&full).await.unwrap();
        assert_eq!((c, e.as_str()), (code, err.as_str()), "{args:?}");
    }
    let (c, _, e) = b.ctl(&["set_policy", "-p", &vh, "--priority", "x", "p3", "^a", r#"{"max-length":1}"#]).await.unwrap();
    assert_eq!(c, 64);
    assert!(e.starts_with("Error (argument validation): Invalid options for this command:\n--priority : x\n"), "{e}");
    let (c, _, e) = b.ctl(&["set_policy", "-p", &vh, "p3", "^a"]).await.unwrap();
    assert_eq!(c, 64);
    assert!(e.starts_with("Error (argument validation): not enough arguments.\n"), "{e}");
    let nosuch = uniq("nosuch");
    let (c, _, e) = b.ctl(&["set_policy", "-q", "-p", &nosuch, "p3", "^a", r#"{"max-length":1}"#]).await.unwrap();
    assert_eq!((c, e), (65, format!("Virtual host '{nosuch}' does not exist\n")));

    // Operator policies: their own commands and texts.
    let out = b.ctl_ok(&["set_operator_policy", "-p", &vh, "--apply-to", "queues", "op1", "^a", r#"{"max-length":3}"#]).await.unwrap();
    assert_eq!(out, format!("Setting operator policy override \"op1\" for pattern \"^a\" to \"{{\"max-length\":3}}\" with priority \"0\" for vhost \"{vh}\" ...\n"));
    let out = b.ctl_ok(&["list_operator_policies", "-p", &vh]).await.unwrap();
    assert_eq!(
        out,
        format!("Listing operator policy overrides for vhost \"{vh}\" ...\nvhost\tname\tpattern\tapply-to\tdefinition\tpriority\n{vh}\top1\t^a\tqueues\t{{\"max-length\":3}}\t0\n")
    );
    let out = b.ctl_ok(&["clear_operator_policy", "-p", &vh, "op1"]).await.unwrap();
    assert_eq!(out, format!("Clearing operator policy \"op1\" on vhost \"{vh}\" ...\n"));
    for p in ["p1", "p2"] {
        let out = b.ctl_ok(&["clear_policy", "-p", &vh, p]).await.unwrap();
        assert_eq!(out, format!("Clearing policy \"{p}\" on vhost \"{vh}\" ...\n"));
    }
    let out = b.ctl_ok(&["list_policies", "-p", &vh]).await.unwrap();
    assert_eq!(out, format!("Listing policies for vhost \"{vh}\" ...\n\n"));
    b.ctl_ok(&["delete_vhost", &vh]).await;
    b.stop().await;
}

#[tokio::test]
async fn policies_apply_live_to_queues() {
    let b = TestBroker::start().await;
    let Some((vh, _conn, ch)) = setup(&b).await else { return };
    // A max-length policy trims an existing queue from the head at once; an argument and a
    // policy: the smaller wins.
    declare(&ch, "len", FieldTable::default()).await;
    declare(&ch, "len.arg", ft(&[("x-max-length", AMQPValue::LongInt(2))])).await;
    declare(&ch, "other", FieldTable::default()).await;
    for i in 0..10 {
        for q in ["len", "len.arg", "other"] {
            publish(&ch, "", q, &i.to_string()).await;
        }
    }
    b.ctl_ok(&["set_policy", "-p", &vh, "--apply-to", "queues", "lim", "^len", r#"{"max-length":3}"#]).await.unwrap();
    assert_eq!(count(&ch, "len").await, 3);
    assert_eq!(count(&ch, "len.arg").await, 2, "the argument (2) is smaller than the policy (3)");
    assert_eq!(count(&ch, "other").await, 10, "the pattern does not match");
    assert_eq!(drain(&ch, "len").await, ["7", "8", "9"]);
    let out = b.ctl_ok(&["list_queues", "-p", &vh, "-q", "name", "policy"]).await.unwrap();
    for line in ["len\tlim\n", "len.arg\tlim\n", "other\t\n"] {
        assert!(out.contains(line), "{line:?} in {out}");
    }

    // A higher-priority policy replaces it entirely (no merging of user policies); cleared, the
    // lower one applies again. An operator policy merges by minimum.
    b.ctl_ok(&["set_policy", "-p", &vh, "--priority", "5", "hi", "^len$", r#"{"max-length":6}"#]).await.unwrap();
    for i in 0..8 {
        publish(&ch, "", "len", &i.to_string()).await;
    }
    assert_eq!(count(&ch, "len").await, 6);
    b.ctl_ok(&["set_operator_policy", "-p", &vh, "cap", "^len$", r#"{"max-length":4}"#]).await.unwrap();
    assert_eq!(count(&ch, "len").await, 4, "operator policy 4 < policy 6");
    if !b.is_external() {
        // RabbitMQ 3.10's rabbitmqctl has no such columns (its HTTP API has them).
        let out = b.ctl_ok(&["list_queues", "-p", &vh, "-q", "name", "policy", "operator_policy", "effective_policy_definition"]).await.unwrap();
        assert!(out.contains("len\thi\tcap\t{\"max-length\":4}\n"), "{out}");
        assert!(out.contains("other\t\t\t{}\n"), "{out}");
    }
    b.ctl_ok(&["clear_operator_policy", "-p", &vh, "cap"]).await.unwrap();
    b.ctl_ok(&["clear_policy", "-p", &vh, "hi"]).await.unwrap();
    assert_eq!(count(&ch, "len").await, 3, "back to the lower-priority policy");
    b.ctl_ok(&["clear_policy", "-p", &vh, "lim"]).await.unwrap();
    for i in 0..5 {
        publish(&ch, "", "len", &i.to_string()).await;
    }
    assert_eq!(count(&ch, "len").await, 8, "no limit any more");

    // message-ttl 0 by policy: new messages with no consumer expire at once; the messages
    // already queued keep the expiry they had (none).
    declare(&ch, "ttl", FieldTable::default()).await;
    publish(&ch, "", "ttl", "old").await;
    b.ctl_ok(&["set_policy", "-p", &vh, "ttl", "^ttl$", r#"{"message-ttl":0}"#]).await.unwrap();
    publish(&ch, "", "ttl", "new").await;
    assert_eq!(drain(&ch, "ttl").await, ["old"]);
    publish(&ch, "", "ttl", "gone").await;
    assert_eq!(count(&ch, "ttl").await, 0);
    b.ctl_ok(&["clear_policy", "-p", &vh, "ttl"]).await.unwrap();
    publish(&ch, "", "ttl", "kept").await;
    assert_eq!(drain(&ch, "ttl").await, ["kept"]);

    // Dead-lettering by policy: overflow victims go to the policy's dead-letter exchange, with
    // the policy's routing key and x-death reason maxlen.
    declare(&ch, "dl.src", FieldTable::default()).await;
    declare(&ch, "dlq", FieldTable::default()).await;
    b.ctl_ok(&["set_policy", "-p", &vh, "dl", "^dl\\.src$", r#"{"max-length":1,"dead-letter-exchange":"","dead-letter-routing-key":"dlq"}"#])
        .await
        .unwrap();
    publish(&ch, "", "dl.src", "first").await;
    publish(&ch, "", "dl.src", "second").await;
    // RabbitMQ dead-letters from the queue's process: poll.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        if let Some(m) = timeout(ch.basic_get("dlq".into(), BasicGetOptions { no_ack: true })).await.unwrap() {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(&m.delivery.data[..], b"first");
    let h = m.delivery.properties.headers().clone().unwrap();
    assert_eq!(h.inner().get("x-first-death-reason"), Some(&AMQPValue::LongString("maxlen".into())));
    assert_eq!(drain(&ch, "dl.src").await, ["second"]);
    b.ctl_ok(&["delete_vhost", &vh]).await;
    b.stop().await;
}

#[tokio::test]
async fn alternate_exchange_and_expires_by_policy() {
    let b = TestBroker::start().await;
    let Some((vh, _conn, ch)) = setup(&b).await else { return };
    timeout(ch.exchange_declare("main".into(), ExchangeKind::Direct, Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.exchange_declare("ae".into(), ExchangeKind::Fanout, Default::default(), FieldTable::default())).await.unwrap();
    declare(&ch, "caught", FieldTable::default()).await;
    timeout(ch.queue_bind("caught".into(), "ae".into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    publish(&ch, "main", "nowhere", "lost").await;
    b.ctl_ok(&["set_policy", "-p", &vh, "--apply-to", "exchanges", "alt", "^main$", r#"{"alternate-exchange":"ae"}"#]).await.unwrap();
    publish(&ch, "main", "nowhere", "caught").await;
    let out = b.ctl_ok(&["list_exchanges", "-p", &vh, "-q", "name", "policy"]).await.unwrap();
    assert!(out.contains("main\talt\n") && out.contains("ae\t\n"), "{out}");
    b.ctl_ok(&["clear_policy", "-p", &vh, "alt"]).await.unwrap();
    publish(&ch, "main", "nowhere", "lost again").await;
    assert_eq!(drain(&ch, "caught").await, ["caught"]);

    // expires by policy: an unused queue goes (polled, no timing asserted).
    declare(&ch, "short", FieldTable::default()).await;
    b.ctl_ok(&["set_policy", "-p", &vh, "--apply-to", "queues", "exp", "^short$", r#"{"expires":1}"#]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ch2 = timeout(_conn.create_channel()).await.unwrap();
        let opts = QueueDeclareOptions { passive: true, ..Default::default() };
        match timeout(ch2.queue_declare("short".into(), opts, FieldTable::default())).await {
            Err(e) => {
                assert_eq!(amqp_error(&e).map(|(c, _)| c), Some(404));
                break;
            }
            Ok(_) => assert!(tokio::time::Instant::now() < deadline, "queue 'short' never expired"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.ctl_ok(&["delete_vhost", &vh]).await;
    b.stop().await;
}

/// Policies are stored with the vhost and applied again after a restart (kill -9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_survive_a_restart() {
    use common::process::{Server, free_port};
    if std::env::var("WARREN_TEST_URL").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrenctl")).arg("--data-dir").arg(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let s = Server::start_with(dir.path(), port, &[]).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare("kept".into(), durable, FieldTable::default())).await.unwrap();
    ctl(&["set_policy", "--priority", "2", "lim", "^kept$", r#"{"max-length":2}"#]);
    ctl(&["set_operator_policy", "cap", "^kept$", r#"{"message-ttl":600000}"#]);
    ctl(&["set_vhost_limits", r#"{"max-queues":100}"#]);
    let props = BasicProperties::default().with_delivery_mode(2);
    for i in 0..5 {
        let c = timeout(ch.basic_publish("".into(), "kept".into(), Default::default(), i.to_string().as_bytes(), props.clone())).await.unwrap();
        timeout(c).await.unwrap();
    }
    drop(conn);
    s.kill9();
    let s = Server::start_with(dir.path(), port, &[]).await;
    assert!(ctl(&["list_policies", "-q"]).contains("/\tlim\t^kept$\tall\t{\"max-length\":2}\t2\n"));
    assert!(ctl(&["list_operator_policies", "-q"]).contains("/\tcap\t^kept$\tall\t{\"message-ttl\":600000}\t0\n"));
    assert!(ctl(&["list_vhost_limits", "-q"]).contains("{\"max-queues\":100}"), "limits and policies share the vhost record");
    let out = ctl(&["list_queues", "-q", "name", "messages", "policy", "operator_policy", "effective_policy_definition"]);
    assert!(out.contains("kept\t2\tlim\tcap\t{\"max-length\":2,\"message-ttl\":600000}\n"), "{out}");
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    let c = timeout(ch.basic_publish("".into(), "kept".into(), Default::default(), b"5", props)).await.unwrap();
    timeout(c).await.unwrap();
    assert_eq!(drain(&ch, "kept").await, ["4", "5"], "the limit still applies after the restart");
    drop(conn);
    s.kill9();
}
