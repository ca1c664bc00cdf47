//! The real `warrenctl` binary against a running broker: rabbitmqctl 3.10's output (stdout and
//! stderr, byte for byte) and exit codes for the user, vhost and permission commands. The expected
//! texts were recorded from `rabbitmqctl` against the reference RabbitMQ 3.10 node.
use crate::common;
use common::*;

/// Runs warrenctl; (exit code, stdout, stderr).
async fn ctl(b: &TestBroker, args: &[&str]) -> (i32, String, String) {
    b.ctl(args).await.expect("in-process broker")
}

#[tokio::test]
async fn user_commands_print_like_rabbitmqctl() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return; // compares warrenctl's own output
    }
    let ok = |out: &str| (0, out.to_string(), String::new());
    assert_eq!(
        ctl(&b, &["add_user", "zz_u1", "pw1"]).await,
        ok("Adding user \"zz_u1\" ...\nDone. Don't forget to grant the user permissions to some virtual hosts! See 'rabbitmqctl help set_permissions' to learn more.\n")
    );
    assert_eq!(
        ctl(&b, &["add_user", "zz_u1", "pw1"]).await,
        (70, "Adding user \"zz_u1\" ...\n".into(), "Error:\nUser \"zz_u1\" already exists\n".into())
    );
    let (code, out, err) = ctl(&b, &["add_user"]).await;
    assert_eq!((code, out.as_str()), (64, ""));
    assert!(err.starts_with("Error (argument validation): not enough arguments.\nArguments given:\n\tadd_user\n"), "{err}");
    // No password argument and nothing on stdin.
    assert_eq!(
        ctl(&b, &["add_user", "zz_u2"]).await,
        (65, "Adding user \"zz_u2\" ...\n".into(), "Error:\nPassword is not provided via argument or stdin\n".into())
    );
    assert_eq!(ctl(&b, &["authenticate_user", "zz_u1", "pw1"]).await, ok("Authenticating user \"zz_u1\" ...\nSuccess\n"));
    let bad = |u: &str| {
        (
            65,
            format!("Authenticating user \"{u}\" ...\n"),
            format!("Error:\nError: failed to authenticate user \"{u}\"\nuser '{u}' - invalid credentials\n"),
        )
    };
    assert_eq!(ctl(&b, &["authenticate_user", "zz_u1", "bad"]).await, bad("zz_u1"));
    assert_eq!(ctl(&b, &["authenticate_user", "zz_nobody", "bad"]).await, bad("zz_nobody"));
    assert_eq!(ctl(&b, &["change_password", "zz_u1", "pw2"]).await, ok("Changing password for user \"zz_u1\" ...\n"));
    assert_eq!(
        ctl(&b, &["change_password", "zz_nobody", "pw2"]).await,
        (67, "Changing password for user \"zz_nobody\" ...\n".into(), "Error:\nUser \"zz_nobody\" does not exist\n".into())
    );
    assert_eq!(ctl(&b, &["authenticate_user", "zz_u1", "pw2"]).await.0, 0);
    assert_eq!(ctl(&b, &["clear_password", "zz_u1"]).await, ok("Clearing password for user \"zz_u1\" ...\n"));
    assert_eq!(ctl(&b, &["authenticate_user", "zz_u1", "pw2"]).await, bad("zz_u1"));
    assert_eq!(
        ctl(&b, &["clear_password", "zz_nobody"]).await,
        (69, "Clearing password for user \"zz_nobody\" ...\n".into(), "Error:\n{:no_such_user, \"zz_nobody\"}\n".into())
    );
    assert_eq!(
        ctl(&b, &["set_user_tags", "zz_u1", "monitoring", "management"]).await,
        ok("Setting tags for user \"zz_u1\" to [monitoring, management] ...\n")
    );
    assert_eq!(
        ctl(&b, &["set_user_tags", "zz_nobody", "a"]).await,
        (67, "Setting tags for user \"zz_nobody\" to [a] ...\n".into(), "Error:\nUser \"zz_nobody\" does not exist\n".into())
    );
    assert_eq!(
        ctl(&b, &["list_users"]).await,
        ok("Listing users ...\nuser\ttags\nguest\t[administrator]\nzz_u1\t[monitoring, management]\n")
    );
    assert_eq!(ctl(&b, &["list_users", "-q"]).await, ok("user\ttags\nguest\t[administrator]\nzz_u1\t[monitoring, management]\n"));
    assert_eq!(ctl(&b, &["list_users", "-s"]).await, ok("guest\t[administrator]\nzz_u1\t[monitoring, management]\n"));
    assert_eq!(
        ctl(&b, &["list_users", "--formatter", "json"]).await,
        ok("[\n{\"user\":\"guest\",\"tags\":[\"administrator\"]}\n,{\"user\":\"zz_u1\",\"tags\":[\"monitoring\",\"management\"]}\n]\n")
    );
    let (code, _, err) = ctl(&b, &["list_users", "name"]).await;
    assert_eq!(code, 64);
    assert!(err.starts_with("Error (argument validation): too many arguments.\n"), "{err}");
    assert_eq!(ctl(&b, &["set_user_tags", "zz_u1"]).await, ok("Setting tags for user \"zz_u1\" to [] ...\n"));
    assert_eq!(ctl(&b, &["list_users", "-q"]).await, ok("user\ttags\nguest\t[administrator]\nzz_u1\t[]\n"));
    assert_eq!(ctl(&b, &["add_user", "-q", "zz_u4", "pw"]).await, ok(""));
    assert_eq!(ctl(&b, &["delete_user", "zz_u4"]).await, ok("Deleting user \"zz_u4\" ...\n"));
    assert_eq!(
        ctl(&b, &["delete_user", "zz_u4"]).await,
        (67, "Deleting user \"zz_u4\" ...\n".into(), "Error:\nUser \"zz_u4\" does not exist\n".into())
    );
}

#[tokio::test]
async fn vhost_and_permission_commands_print_like_rabbitmqctl() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return;
    }
    let ok = |out: &str| (0, out.to_string(), String::new());
    assert_eq!(ctl(&b, &["add_user", "-q", "zz_u1", "pw"]).await.0, 0);
    assert_eq!(ctl(&b, &["add_vhost", "zz_v1"]).await, ok("Adding vhost \"zz_v1\" ...\n"));
    assert_eq!(ctl(&b, &["add_vhost", "zz_v1"]).await, ok("Adding vhost \"zz_v1\" ...\n"), "existing vhost: rc 0");
    assert_eq!(ctl(&b, &["list_vhosts"]).await, ok("Listing vhosts ...\nname\n/\nzz_v1\n"));
    let setting = "Setting permissions for user \"zz_u1\" in vhost \"zz_v1\" ...\n";
    assert_eq!(ctl(&b, &["set_permissions", "-p", "zz_v1", "zz_u1", "^q", "^x", ".*"]).await, ok(setting));
    let (code, out, err) = ctl(&b, &["set_permissions", "-p", "zz_v1", "zz_u1", "(", "^x", ".*"]).await;
    assert_eq!((code, out.as_str()), (69, setting));
    assert!(err.starts_with("Error:\n{:invalid_regexp, '(', {'"), "{err}");
    assert_eq!(
        ctl(&b, &["set_permissions", "-p", "zz_nov", "zz_u1", "^q", "^x", ".*"]).await,
        (69, "Setting permissions for user \"zz_u1\" in vhost \"zz_nov\" ...\n".into(), "Error:\nVirtual host zz_nov does not exist\n".into())
    );
    assert_eq!(
        ctl(&b, &["set_permissions", "-p", "zz_v1", "zz_nobody", "^q", "^x", ".*"]).await,
        (67, "Setting permissions for user \"zz_nobody\" in vhost \"zz_v1\" ...\n".into(), "Error:\nUser zz_nobody does not exist\n".into())
    );
    let (code, out, _) = ctl(&b, &["set_permissions", "-p", "zz_v1", "zz_u1", "^q", "^x"]).await;
    assert_eq!((code, out.as_str()), (64, ""));
    assert_eq!(
        ctl(&b, &["list_permissions", "-p", "zz_v1"]).await,
        ok("Listing permissions for vhost \"zz_v1\" ...\nuser\tconfigure\twrite\tread\nzz_u1\t^q\t^x\t.*\n")
    );
    assert_eq!(
        ctl(&b, &["list_permissions"]).await,
        ok("Listing permissions for vhost \"/\" ...\nuser\tconfigure\twrite\tread\nguest\t.*\t.*\t.*\n")
    );
    assert_eq!(
        ctl(&b, &["list_permissions", "--formatter", "json"]).await,
        ok("[\n{\"user\":\"guest\",\"configure\":\".*\",\"write\":\".*\",\"read\":\".*\"}\n]\n")
    );
    assert_eq!(
        ctl(&b, &["list_permissions", "-p", "zz_nov"]).await,
        (65, "Listing permissions for vhost \"zz_nov\" ...\n".into(), "Virtual host 'zz_nov' does not exist\n".into())
    );
    assert_eq!(
        ctl(&b, &["list_user_permissions", "zz_u1"]).await,
        ok("Listing permissions for user \"zz_u1\" ...\nvhost\tconfigure\twrite\tread\nzz_v1\t^q\t^x\t.*\n")
    );
    assert_eq!(
        ctl(&b, &["list_user_permissions", "zz_nobody"]).await,
        (69, "Listing permissions for user \"zz_nobody\" ...\n".into(), "Error:\n{:no_such_user, \"zz_nobody\"}\n".into())
    );
    let clearing = "Clearing permissions for user \"zz_u1\" in vhost \"zz_v1\" ...\n";
    assert_eq!(ctl(&b, &["clear_permissions", "-p", "zz_v1", "zz_u1"]).await, ok(clearing));
    assert_eq!(ctl(&b, &["clear_permissions", "-p", "zz_v1", "zz_u1"]).await, ok(clearing), "clearing twice is fine");
    assert_eq!(
        ctl(&b, &["clear_permissions", "-p", "zz_nov", "zz_u1"]).await,
        (69, "Clearing permissions for user \"zz_u1\" in vhost \"zz_nov\" ...\n".into(), "Error:\nVirtual host zz_nov does not exist\n".into())
    );
    assert_eq!(
        ctl(&b, &["clear_permissions", "-p", "zz_v1", "zz_nobody"]).await,
        (67, "Clearing permissions for user \"zz_nobody\" in vhost \"zz_v1\" ...\n".into(), "Error:\nUser zz_nobody does not exist\n".into())
    );
    // Empty listings are one blank line, as rabbitmqctl prints them; JSON gives [].
    assert_eq!(ctl(&b, &["list_user_permissions", "zz_u1"]).await, ok("Listing permissions for user \"zz_u1\" ...\n\n"));
    assert_eq!(ctl(&b, &["list_permissions", "-q", "-p", "zz_v1"]).await, ok("\n"));
    assert_eq!(ctl(&b, &["list_user_permissions", "zz_u1", "--formatter", "json"]).await, ok("[]\n"));
    assert_eq!(ctl(&b, &["delete_vhost", "zz_v1"]).await, ok("Deleting vhost \"zz_v1\" ...\n"));
    assert_eq!(
        ctl(&b, &["delete_vhost", "zz_v1"]).await,
        (65, "Deleting vhost \"zz_v1\" ...\n".into(), "Virtual host 'zz_v1' does not exist\n".into())
    );
    let (code, _, err) = ctl(&b, &["delete_vhost"]).await;
    assert_eq!(code, 64);
    assert!(err.starts_with("Error (argument validation): not enough arguments.\n"), "{err}");
    assert_eq!(ctl(&b, &["list_vhosts", "-q"]).await, ok("name\n/\n"));
}

/// The list_* commands that take columns: rabbitmqctl 3.10's info keys, info lines, and the
/// table, JSON and csv formatters' texts (recorded against the reference node for the same
/// queues, exchange, binding and consumer; Warren prints field tables in key order and its own
/// pids).
#[tokio::test]
async fn list_commands_take_rabbitmqctls_info_keys_and_print_like_it() {
    use amq_protocol::types::{AMQPValue, FieldTable};
    use lapin::options::*;
    let b = TestBroker::start().await;
    if b.is_external() {
        return; // compares warrenctl's own output
    }
    let ok = |out: &str| (0, out.to_string(), String::new());
    assert_eq!(ctl(&b, &["add_vhost", "-q", "zz_l"]).await.0, 0);
    assert_eq!(ctl(&b, &["set_permissions", "-q", "-p", "zz_l", "guest", ".*", ".*", ".*"]).await.0, 0);
    let pol = ["set_policy", "-q", "-p", "zz_l", "--priority", "2", "--apply-to", "queues", "pol1", "^q_args$", r#"{"max-length":5}"#];
    assert_eq!(ctl(&b, &pol).await.0, 0);
    let conn = lapin::Connection::connect(&b.uri_for("guest", "guest", "zz_l"), lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    let args = ft(&[("x-max-length", AMQPValue::LongInt(10)), ("x-dead-letter-exchange", lstr("dlx"))]);
    timeout(ch.queue_declare("q_args".into(), durable, args)).await.unwrap();
    timeout(ch.queue_declare("q_plain".into(), durable, FieldTable::default())).await.unwrap();
    let xargs = ft(&[("alternate-exchange", lstr("q_plain"))]);
    timeout(ch.exchange_declare("ex_args".into(), lapin::ExchangeKind::Headers, ExchangeDeclareOptions::default(), xargs)).await.unwrap();
    let bargs = ft(&[("x-match", lstr("all")), ("k", lstr("v"))]);
    timeout(ch.queue_bind("q_args".into(), "ex_args".into(), "".into(), QueueBindOptions::default(), bargs)).await.unwrap();
    for _ in 0..3 {
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        timeout(ch.basic_publish("".into(), "q_plain".into(), BasicPublishOptions::default(), b"hellohello", props)).await.unwrap();
    }
    let cch = conn.create_channel().await.unwrap();
    timeout(cch.basic_qos(7, BasicQosOptions::default())).await.unwrap();
    let _consumer = timeout(cch.basic_consume("q_plain".into(), "ctag-1".into(), BasicConsumeOptions::default(), ft(&[("x-priority", AMQPValue::LongInt(3))])))
        .await
        .unwrap();
    // Until the three messages are delivered (unacknowledged).
    loop {
        let out = b.ctl_ok(&["list_queues", "-p", "zz_l", "-s", "name", "messages_unacknowledged"]).await.unwrap();
        if out.contains("q_plain\t3\n") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // list_queues with arguments and policy (refused before).
    let queues = "name\tmessages\tconsumers\targuments\tpolicy\n\
                  q_args\t0\t0\t[{\"x-dead-letter-exchange\",\"dlx\"},{\"x-max-length\",10}]\tpol1\n\
                  q_plain\t3\t1\t[]\t\n";
    let cols = ["name", "messages", "consumers", "arguments", "policy"];
    let with = |opts: &[&'static str]| ["list_queues", "-p", "zz_l"].iter().chain(opts).chain(cols.iter()).copied().collect::<Vec<&str>>();
    assert_eq!(ctl(&b, &with(&[])).await, ok(&format!("Timeout: 60.0 seconds ...\nListing queues for vhost zz_l ...\n{queues}")));
    assert_eq!(ctl(&b, &with(&["-q"])).await, ok(queues));
    assert_eq!(ctl(&b, &with(&["-s"])).await, ok(queues.split_once('\n').unwrap().1));
    assert_eq!(ctl(&b, &with(&["--no-table-headers"])).await.1.lines().nth(2), Some("q_args\t0\t0\t[{\"x-dead-letter-exchange\",\"dlx\"},{\"x-max-length\",10}]\tpol1"));
    assert_eq!(ctl(&b, &with(&["-t", "5", "-q"])).await, ok(queues), "--timeout is taken");
    assert_eq!(
        ctl(&b, &with(&["--formatter", "csv"])).await,
        ok("\"name\",\"messages\",\"consumers\",\"arguments\",\"policy\"\n\
            \"q_args\",\"0\",\"0\",\"[{\"\"x-dead-letter-exchange\"\",\"\"dlx\"\"},{\"\"x-max-length\"\",10}]\",\"pol1\"\n\
            \"q_plain\",\"3\",\"1\",\"[]\",\"\"\n")
    );
    assert_eq!(
        ctl(&b, &with(&["--formatter", "json"])).await,
        ok("[\n{\"name\":\"q_args\",\"messages\":0,\"consumers\":0,\"arguments\":[[\"x-dead-letter-exchange\",\"longstr\",\"dlx\"],[\"x-max-length\",\"signedint\",10]],\"policy\":\"pol1\"}\n\
            ,{\"name\":\"q_plain\",\"messages\":3,\"consumers\":1,\"arguments\":[],\"policy\":\"\"}\n]\n")
    );
    // Every one of 3.10's keys, parsed as JSON: byte and persistence counts of the unacked messages.
    let all = warren::admin::listing::keys("list_queues").unwrap().all;
    let mut args = vec!["list_queues", "-p", "zz_l", "--formatter", "json"];
    args.extend(all.iter().copied());
    let (code, out, _) = ctl(&b, &args).await;
    assert_eq!(code, 0);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("JSON array");
    let plain = rows.as_array().unwrap().iter().find(|r| r["name"] == "q_plain").unwrap().clone();
    assert_eq!(plain.as_object().unwrap().len(), all.len());
    for (k, v) in [
        ("messages_persistent", serde_json::json!(3)),
        ("message_bytes", serde_json::json!(30)),
        ("message_bytes_unacknowledged", serde_json::json!(30)),
        ("message_bytes_persistent", serde_json::json!(30)),
        ("messages_unacknowledged_ram", serde_json::json!(3)),
        ("disk_writes", serde_json::json!(3)),
        ("durable", serde_json::json!(true)),
        ("exclusive", serde_json::json!(false)),
        ("slave_pids", serde_json::json!("")),
        ("owner_pid", serde_json::json!("")),
        ("type", serde_json::json!("classic")),
        ("state", serde_json::json!("running")),
    ] {
        assert_eq!(plain[k], v, "{k} in {plain}");
    }
    assert!(plain["pid"].as_str().unwrap().starts_with("#PID<"), "{plain}");

    // Unknown keys: rabbitmqctl's refusal, exit code 64, nothing on stdout.
    let (code, out, err) = ctl(&b, &["list_queues", "name", "bogus", "foo"]).await;
    assert_eq!((code, out.as_str()), (64, ""));
    assert!(err.starts_with("Error (argument validation): Info key(s) bogus,foo are not supported\nArguments given:\n\tlist_queues name bogus foo\n"), "{err}");
    let (code, _, err) = ctl(&b, &["list_exchanges", "name", "slave_pids"]).await;
    assert_eq!(code, 64);
    assert!(err.starts_with("Error (argument validation): Info key(s) slave_pids are not supported\n"), "{err}");
    // A vhost that does not exist lists nothing (rc 0), as rabbitmqctl.
    assert_eq!(ctl(&b, &["list_queues", "-p", "zz_nov"]).await, ok("Timeout: 60.0 seconds ...\nListing queues for vhost zz_nov ...\n"));
    assert_eq!(ctl(&b, &["list_consumers", "-p", "zz_nov", "--formatter", "json"]).await, ok("[\n]\n"));
    // Formatters rabbitmqctl has and warrenctl does not print are refused; unknown ones fail as rabbitmqctl does.
    assert_eq!(ctl(&b, &["list_queues", "--formatter", "pretty_table"]).await.0, 64);
    let (code, _, err) = ctl(&b, &["list_queues", "--formatter", "bogus"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("\"Elixir.RabbitMQ.CLI.Formatters.Bogus\""), "{err}");
    let (code, _, err) = ctl(&b, &["list_queues", "--formatter", "csv", "--no-table-headers"]).await;
    assert_eq!(code, 64);
    assert!(err.starts_with("Error (argument validation): Invalid options for this command:\n--no-table-headers : \n"), "{err}");

    // list_exchanges with arguments: the default exchange first.
    let (code, out, _) = ctl(&b, &["list_exchanges", "-p", "zz_l", "name", "type", "arguments"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("Listing exchanges for vhost zz_l ...\nname\ttype\targuments\n\tdirect\t[]\namq.direct\tdirect\t[]\n"), "{out}");
    assert!(out.contains("\nex_args\theaders\t[{\"alternate-exchange\",\"q_plain\"}]\n"), "{out}");
    // list_bindings: arguments by key.
    let (_, out, _) = ctl(&b, &["list_bindings", "-p", "zz_l"]).await;
    assert!(out.starts_with("Listing bindings for vhost zz_l...\nsource_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n\texchange\tq_args\tqueue\tq_args\t[]\n"), "{out}");
    assert!(out.contains("\nex_args\texchange\tq_args\tqueue\t\t[{\"k\",\"v\"},{\"x-match\",\"all\"}]\n"), "{out}");

    // list_consumers: the default columns; the channel pid is list_channels' pid of that channel.
    let chans = b.ctl_ok(&["list_channels", "-s", "pid", "consumer_count", "vhost"]).await.unwrap();
    let pid = chans.lines().find(|l| l.ends_with("\t1\tzz_l")).and_then(|l| l.split('\t').next()).expect("the consumer's channel").to_string();
    assert!(pid.starts_with("<warren@localhost.1.") && pid.ends_with('>'), "{pid}");
    assert_eq!(
        ctl(&b, &["list_consumers", "-p", "zz_l"]).await,
        ok(&format!(
            "Listing consumers in vhost zz_l ...\nqueue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments\n\
             q_plain\t{pid}\tctag-1\ttrue\t7\ttrue\t[{{\"x-priority\",3}}]\n"
        ))
    );
    let (code, out, _) = ctl(&b, &["list_consumers", "-p", "zz_l", "--formatter", "json", "queue_name", "channel_pid", "activity_status", "arguments"]).await;
    assert_eq!(code, 0);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("JSON array");
    let json_pid = format!("#PID<{}>", pid.trim_start_matches("<warren@localhost.").trim_end_matches('>'));
    assert_eq!(
        rows,
        serde_json::json!([{"queue_name": "q_plain", "channel_pid": json_pid, "activity_status": "up", "arguments": [["x-priority", "signedint", 3]]}])
    );
    // list_connections: pid, peer_host as an address (JSON: its numbers), protocol; close_connection takes the pid.
    let (_, out, _) = ctl(&b, &["list_connections", "--formatter", "json", "pid", "peer_host", "protocol", "vhost"]).await;
    let conns: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mine = conns.as_array().unwrap().iter().find(|c| c["vhost"] == "zz_l").unwrap();
    assert_eq!((&mine["peer_host"], &mine["protocol"]), (&serde_json::json!([127, 0, 0, 1]), &serde_json::json!([0, 9, 1])));
    let (_, out, _) = ctl(&b, &["list_connections", "-s", "pid", "vhost", "protocol"]).await;
    let line = out.lines().find(|l| l.ends_with("\tzz_l\t{0,9,1}")).expect("the connection");
    let conn_pid = line.split('\t').next().unwrap();
    assert_eq!(ctl(&b, &["close_connection", conn_pid, "bye"]).await.0, 0);
    let _ = conn;

    // The limit listings of one vhost or user, in each formatter (rabbitmqctl's csv formatter
    // fails on them with exit code 70).
    assert_eq!(ctl(&b, &["list_user_limits"]).await, ok("Listing limits for user \"guest\" ...\n{}\n"));
    assert_eq!(ctl(&b, &["list_user_limits", "--formatter", "json"]).await, ok("{\"message\":\"{}\"}\n"));
    assert_eq!(
        ctl(&b, &["list_user_limits", "--formatter", "csv"]).await,
        (70, String::new(), "%Protocol.UndefinedError{protocol: Enumerable, value: \"{}\", description: \"\"}\n\n".into())
    );
    assert_eq!(ctl(&b, &["list_vhost_limits", "-p", "zz_l", "--formatter", "json"]).await, ok("[]\n"));
    assert_eq!(ctl(&b, &["list_vhost_limits", "-p", "zz_l", "--formatter", "csv"]).await, ok("\r\n\r\n\n"));
    assert_eq!(ctl(&b, &["set_vhost_limits", "-q", "-p", "zz_l", r#"{"max-queues":9}"#]).await.0, 0);
    assert_eq!(
        ctl(&b, &["list_vhost_limits", "-p", "zz_l", "--formatter", "json"]).await,
        ok("{\"node\":\"warren@localhost\",\"result\":\"ok\",\"value\":\"{\\\"max-queues\\\":9}\"}\n")
    );
    // Empty non-streamed listings in csv.
    assert_eq!(ctl(&b, &["list_topic_permissions", "-p", "zz_l", "--formatter", "csv"]).await, ok("\r\n\r\n\n"));

    // head_message_timestamp: the timestamp property of the message at the head.
    let conn = lapin::Connection::connect(&b.uri_for("guest", "guest", "zz_l"), lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    timeout(ch.confirm_select(ConfirmSelectOptions::default())).await.unwrap();
    timeout(ch.queue_declare("q_ts".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    for t in [1_700_000_000, 1_700_000_005] {
        let props = lapin::BasicProperties::default().with_timestamp(t);
        timeout(ch.basic_publish("".into(), "q_ts".into(), BasicPublishOptions::default(), b"x", props)).await.unwrap().await.unwrap();
    }
    let out = b.ctl_ok(&["list_queues", "-p", "zz_l", "-s", "name", "head_message_timestamp", "messages"]).await.unwrap();
    assert!(out.lines().any(|l| l == "q_ts\t1700000000\t2") && out.lines().any(|l| l == "q_args\t\t0"), "{out}");
    conn.close(200, "bye".into()).await.unwrap();
}

/// `--timeout`: a broker that does not answer in time gives rabbitmqctl's "timed out" error and
/// exit code 75 (a socket that accepts and never answers stands in for a stuck broker).
#[tokio::test]
async fn timeout_gives_rabbitmqctls_error() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(warren::admin::control::socket_path(dir.path())).unwrap();
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["list_queues", "-q", "--timeout", "0.2"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error: operation list_queues on node warren@localhost timed out. Timeout value used: 200\n");
    drop(held.join());
}
