//! `warrenctl stop_app` / `start_app` / `reset` and `export_definitions` / `import_definitions`:
//! the real `warrenctl` binary against a real broker (a `warren-server` process where the test
//! restarts it), with rabbitmqctl 3.10's texts and exit codes, recorded from the reference node.
use crate::common;
use common::process::{Server, free_port};
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use std::path::Path;
use std::process::Stdio;

/// Runs warrenctl on data directory `dir`, with `stdin` as its standard input (none: empty);
/// (exit code, stdout, stderr).
async fn ctl_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run warrenctl");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output()).await.expect("warrenctl timed out").unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn ctl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    ctl_in(dir, args, None).await
}

/// rabbitmqctl's refusal of a command before it runs: the line, the arguments, the usage.
fn refusal(first: &str, given: &str, usage: &str) -> String {
    format!("{first}\nArguments given:\n\t{given}\n\n\x1b[1mUsage\x1b[0m\n\nwarrenctl [--data-dir <dir>] [--quiet] {usage}\n")
}

const NEEDS_RUNNING: &str =
    "Error: this command requires the 'rabbit' app to be running on the target node. Start it with 'warrenctl start_app'.";
const NEEDS_STOPPED: &str =
    "Error: this command requires the 'rabbit' app to be stopped on the target node. Stop it with 'warrenctl stop_app'.";

/// A durable topology: queue `q` (durable, two persistent messages), exchange `x` bound to it
/// with key `k`, declared through lapin.
async fn declare_topology(conn: &lapin::Connection, q: &str) {
    let ch = confirm_channel(conn).await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.queue_declare(q.into(), durable, FieldTable::default())).await.unwrap();
    let xd = ExchangeDeclareOptions { durable: true, ..Default::default() };
    timeout(ch.exchange_declare("app.x".into(), lapin::ExchangeKind::Topic, xd, FieldTable::default())).await.unwrap();
    timeout(ch.queue_bind(q.into(), "app.x".into(), "k.#".into(), QueueBindOptions::default(), FieldTable::default())).await.unwrap();
    for body in ["m1", "m2"] {
        publish_c(&ch, "app.x", "k.1", body.as_bytes(), lapin::BasicProperties::default().with_delivery_mode(2)).await;
    }
}

#[tokio::test]
async fn definitions_round_trip_through_a_file_and_through_stdin_stdout() {
    let a = TestBroker::start().await;
    if a.is_external() {
        return; // needs the control socket
    }
    let dir_a = a.data_dir().unwrap().to_owned();
    let conn = a.connect().await;
    declare_topology(&conn, "app.q").await;
    assert_eq!(ctl(&dir_a, &["add_user", "-q", "app_user", "pw"]).await.0, 0);
    assert_eq!(ctl(&dir_a, &["set_policy", "-q", "app_pol", "^app\\.", "{\"max-length\":10}"]).await.0, 0);

    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("defs.json");
    let path = file.to_str().unwrap();
    let (code, out, err) = ctl(&dir_a, &["export_definitions", path]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, format!("Exporting definitions in JSON to a file at \"{path}\" ...\n").as_str(), ""));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(doc["queues"].as_array().unwrap().iter().any(|q| q["name"] == "app.q" && q["durable"] == true), "{doc}");
    // `-`: the document alone on stdout (no info line, no newline after it, as rabbitmqctl).
    let (code, out, err) = ctl(&dir_a, &["export_definitions", "-"]).await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.ends_with('}'), "{out}");
    let from_stdout: serde_json::Value = serde_json::from_str(&out).expect("stdout is the JSON document");
    assert_eq!(from_stdout["exchanges"], doc["exchanges"]);
    assert_eq!(ctl(&dir_a, &["export_definitions", "-", "--format", "json"]).await.1, out);
    // `-p` is ignored, as by rabbitmqctl 3.10: the whole broker's definitions.
    assert_eq!(ctl(&dir_a, &["export_definitions", "-", "-p", "no-such-vhost"]).await, (0, out.clone(), String::new()));

    // Into a fresh broker from the file, and into another from stdin (`-`, and no argument).
    for how in ["file", "-", "none"] {
        let b = TestBroker::start().await;
        let dir_b = b.data_dir().unwrap().to_owned();
        let (code, out, err) = match how {
            "file" => ctl(&dir_b, &["import_definitions", path]).await,
            "-" => ctl_in(&dir_b, &["import_definitions", "-"], Some(out.as_bytes())).await,
            // No file: stdin too (`--skip-if-unchanged` imports all the same, as in 3.10).
            _ => ctl_in(&dir_b, &["import_definitions", "--skip-if-unchanged"], Some(out.as_bytes())).await,
        };
        let from = if how == "file" { format!("a file at \"{path}\"") } else { "standard input".to_string() };
        assert_eq!(
            (code, out, err),
            (
                0,
                format!("Importing definitions in JSON from {from} ...\nSuccessfully started definition import. This process is asynchronous and can take some time.\n"),
                String::new()
            ),
            "{how}"
        );
        // Queue, exchange, binding, user and policy are there: routing through the imported
        // binding reaches the imported queue, and the policy applies to it.
        let conn = b.connect().await;
        let ch = confirm_channel(&conn).await;
        publish_c(&ch, "app.x", "k.2", b"routed", Default::default()).await;
        assert_eq!(drain(&ch, "app.q").await, vec!["routed".to_string()], "{how}");
        let users = ctl(&dir_b, &["list_users", "-q"]).await.1;
        assert!(users.contains("app_user\t[]"), "{users}");
        let policies = ctl(&dir_b, &["list_policies", "-q"]).await.1;
        assert!(policies.contains("app_pol"), "{policies}");
        let queues = b.admin_call("list_queues", &["name", "policy"]).await;
        assert!(queues.rows.iter().any(|r| r[0] == "app.q" && r[1] == "app_pol"), "{queues:?}");
        assert_eq!(ctl(&dir_b, &["authenticate_user", "-q", "app_user", "pw"]).await.0, 0, "{how}: the password hash came along");
        b.stop().await;
    }
    a.stop().await;
}

#[tokio::test]
async fn definitions_commands_refuse_bad_input_as_rabbitmqctl() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return;
    }
    let dir = b.data_dir().unwrap().to_owned();
    let export_usage = "export_definitions <file_path | \"-\"> [--format <json | erlang>]";
    let import_usage = "import_definitions <file_path | \"-\"> [--format <json | erlang>] [--skip-if-unchanged]";
    assert_eq!(
        ctl(&dir, &["export_definitions", "/nonexistent-dir/defs.json"]).await,
        (
            65,
            String::new(),
            refusal("Error (argument validation): Bad argument: Directory /nonexistent-dir does not exist", "export_definitions /nonexistent-dir/defs.json", export_usage)
        )
    );
    assert_eq!(
        ctl(&dir, &["export_definitions"]).await,
        (64, String::new(), refusal("Error (argument validation): not enough arguments.", "export_definitions", export_usage))
    );
    assert_eq!(
        ctl(&dir, &["export_definitions", "-", "--format", "yaml"]).await,
        (65, String::new(), refusal("Error (argument validation): Bad argument: Format should be either json or erlang", "export_definitions - --format yaml", export_usage))
    );
    let (code, out, err) = ctl(&dir, &["export_definitions", "-", "--format", "erlang"]).await;
    assert_eq!((code, out.as_str()), (65, ""));
    assert!(err.starts_with("Error (argument validation): Bad argument: Format erlang"), "{err}");
    let (code, _, err) = ctl(&dir, &["export_definitions", "/tmp"]).await;
    assert_eq!((code, err.as_str()), (65, "Error:\nPath /tmp is a directory\n"));
    assert_eq!(
        ctl(&dir, &["import_definitions", "/nonexistent.json"]).await,
        (65, String::new(), refusal("Error (argument validation): Bad argument: File /nonexistent.json does not exist", "import_definitions /nonexistent.json", import_usage))
    );
    assert_eq!(
        ctl(&dir, &["import_definitions", "a", "b"]).await,
        (64, String::new(), refusal("Error (argument validation): too many arguments.", "import_definitions a b", import_usage))
    );
    let banner = "Importing definitions in JSON from standard input ...\n".to_string();
    // A parameter of a component Warren does not have: RabbitMQ's validation failure, exit 69,
    // and nothing imported.
    let bad = br#"{"vhosts":[{"name":"app_v2"}],"parameters":[{"vhost":"/","component":"federation-upstream","name":"x","value":{}}]}"#;
    assert_eq!(
        ctl_in(&dir, &["import_definitions", "-"], Some(bad)).await,
        (69, banner.clone(), "Error:\nValidation failed\n\ncomponent federation-upstream not found\n (//federation-upstream/x)\n".into())
    );
    assert!(!ctl(&dir, &["list_vhosts"]).await.1.contains("app_v2"));
    let (code, out, err) = ctl_in(&dir, &["import_definitions"], Some(b"{\"vhosts\":[")).await;
    assert_eq!((code, out), (65, banner));
    assert!(err.starts_with("Error:\nFailed to deserialise input (format: JSON) (error: "), "{err}");
    b.stop().await;
}

#[tokio::test]
async fn stop_app_closes_connections_and_listeners_start_app_serves_durable_state_again() {
    if std::env::var("WARREN_TEST_URL").is_ok_and(|u| !u.is_empty()) {
        return; // stops the broker's listeners
    }
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let s = Server::start_with(dir, free_port(), &[]).await;
    let conn = s.connect().await;
    declare_topology(&conn, "app.dq").await;
    // Non-durable objects, which RabbitMQ 3.10 no longer has after stop_app / start_app.
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.queue_declare("app.tq".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    let transient_x = ExchangeDeclareOptions::default();
    timeout(ch.exchange_declare("app.tx".into(), lapin::ExchangeKind::Fanout, transient_x, FieldTable::default())).await.unwrap();
    let mut events = Box::pin(conn.events_listener());

    assert_eq!(ctl(dir, &["stop_app"]).await, (0, "Stopping rabbit application on node warren@localhost ...\n".into(), String::new()));
    // The client is told, as by RabbitMQ's stop_app.
    let closed = timeout(async {
        loop {
            if let Some(lapin::Event::Error(e)) = events.next().await {
                return amqp_error(&e);
            }
        }
    })
    .await;
    assert_eq!(closed, Some((320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'".to_string())));
    // The port is closed; the control socket answers.
    assert!(std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err(), "the AMQP listener is closed");
    assert_eq!(
        ctl(dir, &["list_queues"]).await,
        (64, String::new(), refusal(NEEDS_RUNNING, "list_queues", "list_queues [--vhost <vhost>] [--online] [--offline] [--local] [--no-table-headers] [<column>, ...] [--timeout <timeout>]"))
    );
    assert_eq!(ctl(dir, &["status"]).await.0, 64, "status needs the running app, as in RabbitMQ 3.10");
    // A second stop_app is no error, as in RabbitMQ.
    assert_eq!(ctl(dir, &["-q", "stop_app"]).await, (0, String::new(), String::new()));

    // A port taken meanwhile: start_app fails with the reason and the app stays stopped.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", s.port)).unwrap();
    let (code, out, err) = ctl(dir, &["start_app"]).await;
    assert_eq!((code, out.as_str()), (70, "Starting node warren@localhost ...\n"));
    assert!(err.starts_with("Error:\ncannot start the listeners: "), "{err}");
    assert_eq!(ctl(dir, &["list_queues"]).await.0, 64);
    drop(squatter);
    assert_eq!(ctl(dir, &["start_app"]).await, (0, "Starting node warren@localhost ...\n".into(), String::new()));
    assert_eq!(ctl(dir, &["-q", "start_app"]).await, (0, String::new(), String::new()), "start_app on a running app");
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_eq!(drain(&ch, "app.dq").await, vec!["m1".to_string(), "m2".to_string()]);
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    assert_amqp_err(timeout(ch.queue_declare("app.tq".into(), passive, FieldTable::default())).await, 404, "NOT_FOUND - no queue 'app.tq' in vhost '/'");
    let ch = timeout(conn.create_channel()).await.unwrap();
    let passive_x = ExchangeDeclareOptions { passive: true, ..Default::default() };
    let r = timeout(ch.exchange_declare("app.tx".into(), lapin::ExchangeKind::Fanout, passive_x, FieldTable::default())).await;
    assert_amqp_err(r, 404, "NOT_FOUND - no exchange 'app.tx' in vhost '/'");
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch.exchange_declare("app.x".into(), lapin::ExchangeKind::Topic, passive_x, FieldTable::default())).await;
    assert!(r.is_ok(), "the durable exchange is still there: {r:?}");
    let (code, out, _) = ctl(dir, &["status"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&format!("port: {}", s.port)), "{out}");
}

#[tokio::test]
async fn reset_needs_the_stopped_app_and_returns_the_node_to_its_first_start() {
    if std::env::var("WARREN_TEST_URL").is_ok_and(|u| !u.is_empty()) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let port = free_port();
    let s = Server::start_with(dir, port, &[]).await;
    let conn = s.connect().await;
    declare_topology(&conn, "app.rq").await;
    for args in [
        &["-q", "add_vhost", "app_v"][..],
        &["-q", "add_user", "app_u", "pw"],
        &["-q", "set_permissions", "-p", "app_v", "app_u", ".*", ".*", ".*"],
        &["-q", "set_policy", "app_p", ".*", "{\"max-length\":5}"],
        &["-q", "set_global_parameter", "cluster_name", "\"app-cluster\""],
    ] {
        assert_eq!(ctl(dir, args).await.0, 0, "{args:?}");
    }

    assert_eq!(ctl(dir, &["reset"]).await, (64, String::new(), refusal(NEEDS_STOPPED, "reset", "reset")));
    assert_eq!(ctl(dir, &["force_reset"]).await, (64, String::new(), refusal(NEEDS_STOPPED, "force_reset", "force_reset")));
    assert_eq!(ctl(dir, &["-q", "stop_app"]).await.0, 0);
    assert_eq!(ctl(dir, &["reset"]).await, (0, "Resetting node warren@localhost ...\n".into(), String::new()));
    assert_eq!(ctl(dir, &["-q", "start_app"]).await.0, 0);

    let fresh = |dir: std::path::PathBuf| async move {
        assert_eq!(ctl(&dir, &["list_vhosts"]).await.1, "Listing vhosts ...\nname\n/\n");
        assert_eq!(ctl(&dir, &["list_users"]).await.1, "Listing users ...\nuser\ttags\nguest\t[administrator]\n");
        assert_eq!(ctl(&dir, &["list_policies", "-q"]).await.1, "\n");
        let defs: serde_json::Value = serde_json::from_str(&ctl(&dir, &["export_definitions", "-"]).await.1).unwrap();
        for k in ["queues", "exchanges", "bindings", "policies", "parameters", "topic_permissions"] {
            assert_eq!(defs[k], serde_json::json!([]), "{k}: {defs}");
        }
        let globals: Vec<&str> = defs["global_parameters"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
        assert_eq!(globals, vec!["internal_cluster_id"], "{defs}");
    };
    fresh(dir.to_owned()).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    assert_amqp_err(timeout(ch.queue_declare("app.rq".into(), passive, FieldTable::default())).await, 404, "NOT_FOUND - no queue 'app.rq' in vhost '/'");
    drop(conn);
    // The store was reset too: after a restart of the process the node is still fresh.
    s.kill9();
    let s = Server::start_with(dir, port, &[]).await;
    fresh(dir.to_owned()).await;
    let conn = s.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(timeout(ch.queue_declare("app.rq".into(), passive, FieldTable::default())).await, 404, "NOT_FOUND - no queue 'app.rq' in vhost '/'");
}

/// The management plugin's HTTP listener closes with `stop_app` and opens again, on the same
/// port, with `start_app`; a plugin enabled while the app is stopped opens its listener only
/// then (as rabbitmq-plugins' offline change takes effect when the app starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_app_closes_the_http_listeners_start_app_opens_them_on_the_same_ports() {
    let (b, addr) = crate::management::start().await;
    if b.is_external() {
        return;
    }
    let dir = b.data_dir().unwrap().to_owned();
    let guest = Some(("guest", "guest"));
    assert_eq!(crate::management::http(addr, "GET", "/api/whoami", guest, None).await.status, 200);
    assert_eq!(ctl(&dir, &["-q", "stop_app"]).await, (0, String::new(), String::new()));
    assert!(std::net::TcpStream::connect(addr).is_err(), "the HTTP listener is closed");
    assert!(std::net::TcpStream::connect(b.addr()).is_err(), "the AMQP listener is closed");
    // Disabled and enabled again while stopped: still closed until start_app.
    assert!(b.admin_call("plugins_set", &["noforce"]).await.error.is_none());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren-plugins"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["enable", "rabbitmq_management"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // As rabbitmq-plugins on a node whose app is stopped.
    assert!(stdout.ends_with("\nset 1 plugins.\nOffline change; changes will take effect at broker restart.\n"), "{stdout}");
    assert!(std::net::TcpStream::connect(addr).is_err(), "enabled while stopped: opens at start_app");
    assert_eq!(ctl(&dir, &["-q", "start_app"]).await, (0, String::new(), String::new()));
    assert_eq!(b.server().unwrap().plugins.http_addr("warren_management"), Some(addr));
    let r = crate::management::http(addr, "GET", "/api/whoami", guest, None).await;
    assert_eq!((r.status, r.json()["name"].clone()), (200, serde_json::json!("guest")));
    b.stop().await;
}
