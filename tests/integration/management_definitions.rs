//! Definitions through the management API beyond the round trip of `management`: a file exported
//! from RabbitMQ 3.10 imports into Warren (runtime parameters `vhost-limits` and
//! `operator_policy`, global parameters, policies, quorum queues, exchange-to-exchange bindings,
//! users whose password hashes log in), components Warren does not have are refused with
//! RabbitMQ's text before anything is imported, and the multipart/form-data upload that
//! RabbitMQ's UI and `rabbitmqadmin import` use.
//!
//! The RabbitMQ export: when the reference node's management API (127.0.0.1:15673, or
//! `WARREN_TEST_HTTP`) is reachable and has the vhost `defs-fixture`, its live
//! `GET /api/definitions`, narrowed to that vhost, its user and the global parameters (the node
//! is shared); otherwise `fixtures/rabbitmq-3.10-definitions.json`, made the same way from it
//! (`scripts/rabbitmq-defs-fixture.py` creates the objects on the reference and prints the file).
use crate::common;
use crate::management::{Http, http, start};
use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));
const FIXTURE: &str = include_str!("fixtures/rabbitmq-3.10-definitions.json");
const VHOST: &str = "defs-fixture";

/// An HTTP request with a body of its own content type.
async fn http_body(addr: SocketAddr, method: &str, path: &str, content_type: &str, body: &[u8]) -> Http {
    let mut s = timeout(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Basic {auth}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    timeout(s.write_all(head.as_bytes())).await.unwrap();
    timeout(s.write_all(body)).await.unwrap();
    let mut raw = Vec::new();
    timeout(s.read_to_end(&mut raw)).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    Http { status, headers, body: raw[split + 4..].to_vec() }
}

/// A multipart/form-data body with the given (name, content) fields, as browsers send it.
fn form(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----WarrenTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, content) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if *name == "file" {
            body.extend_from_slice(b"Content-Disposition: form-data; name=\"file\"; filename=\"defs.json\"\r\nContent-Type: application/json\r\n\r\n");
        } else {
            body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The RabbitMQ export (see the module doc).
async fn rabbitmq_export() -> (Value, &'static str) {
    let addr: SocketAddr = std::env::var("WARREN_TEST_HTTP").unwrap_or_else(|_| "127.0.0.1:15673".into()).parse().unwrap();
    if tokio::net::TcpStream::connect(addr).await.is_ok() {
        let r = http(addr, "GET", "/api/definitions", GUEST, None).await;
        if r.status == 200 {
            let d = r.json();
            if d["vhosts"].as_array().unwrap().iter().any(|v| v["name"] == VHOST) {
                let of_vhost = |k: &str| -> Vec<Value> { d[k].as_array().unwrap().iter().filter(|o| o["vhost"] == VHOST).cloned().collect() };
                let live = json!({
                    "rabbit_version": d["rabbit_version"], "rabbitmq_version": d["rabbitmq_version"],
                    "product_name": d["product_name"], "product_version": d["product_version"],
                    "users": d["users"].as_array().unwrap().iter().filter(|u| u["name"] == "defs-fixture-user").cloned().collect::<Vec<_>>(),
                    "vhosts": d["vhosts"].as_array().unwrap().iter().filter(|v| v["name"] == VHOST).cloned().collect::<Vec<_>>(),
                    "permissions": of_vhost("permissions"), "topic_permissions": of_vhost("topic_permissions"),
                    "parameters": of_vhost("parameters"), "global_parameters": d["global_parameters"],
                    "policies": of_vhost("policies"), "queues": of_vhost("queues"), "exchanges": of_vhost("exchanges"),
                    "bindings": of_vhost("bindings"),
                });
                return (live, "the reference node");
            }
        }
    }
    (serde_json::from_str(FIXTURE).unwrap(), "the committed fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_3_10_export_imports_into_warren() {
    let (b, addr) = start().await;
    if b.is_external() {
        return;
    }
    let (export, source) = rabbitmq_export().await;
    let r = http(addr, "POST", "/api/definitions", GUEST, Some(&export)).await;
    assert_eq!(r.status, 204, "import of {source}: {}", String::from_utf8_lossy(&r.body));

    // The user logs in with its RabbitMQ password hash and its permissions.
    let uri = b.uri_for("defs-fixture-user", "fixture-pw", VHOST);
    let conn = timeout(lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())).await.expect("the imported user logs in");
    conn.close(200, "bye".into()).await.unwrap();
    let user = http(addr, "GET", "/api/users/defs-fixture-user", GUEST, None).await.json();
    assert_eq!(user["tags"], json!(["monitoring"]));

    // Queues with their arguments and types, the policies that apply, the bindings.
    let q = http(addr, "GET", "/api/queues/defs-fixture/fx-orders", GUEST, None).await.json();
    assert_eq!(q["arguments"]["x-max-length"], 1000);
    assert_eq!(q["policy"], "fx-ttl", "{q}");
    assert_eq!(q["operator_policy"], "fx-cap", "{q}");
    assert_eq!(q["effective_policy_definition"]["message-ttl"], 60000, "{q}");
    let quorum = http(addr, "GET", "/api/queues/defs-fixture/fx-quorum", GUEST, None).await.json();
    assert_eq!(quorum["arguments"]["x-queue-type"], "quorum");
    let bindings = http(addr, "GET", "/api/bindings/defs-fixture", GUEST, None).await.json();
    let e2e = bindings.as_array().unwrap().iter().find(|b| b["destination_type"] == "exchange").expect("the exchange-to-exchange binding");
    assert_eq!((e2e["source"].as_str(), e2e["routing_key"].as_str(), e2e["arguments"]["x-note"].as_str()), (Some("fx-topic"), Some("audit.*"), Some("e2e")));
    // The vhost limits (RabbitMQ's `vhost-limits` parameter) apply.
    let limits = b.ctl_ok(&["list_vhost_limits", "-p", VHOST]).await.unwrap();
    assert!(limits.contains("\"max-queues\":20") && limits.contains("\"max-connections\":50"), "{limits}");

    // Exported again by Warren in RabbitMQ's form: parameters and global parameters included.
    let again = http(addr, "GET", "/api/definitions", GUEST, None).await.json();
    let params: Vec<&Value> = again["parameters"].as_array().unwrap().iter().filter(|p| p["vhost"] == VHOST).collect();
    let limits = params.iter().find(|p| p["component"] == "vhost-limits").expect("vhost-limits exported");
    assert_eq!((limits["name"].as_str(), limits["value"]["max-queues"].as_u64()), (Some("limits"), Some(20)));
    let op = params.iter().find(|p| p["component"] == "operator_policy").expect("operator_policy exported");
    assert_eq!((op["name"].as_str(), op["value"]["pattern"].as_str(), op["value"]["apply-to"].as_str()), (Some("fx-cap"), Some("^fx-"), Some("queues")));
    assert_eq!(op["value"]["definition"]["max-length"], 5000);
    let id = export["global_parameters"].as_array().unwrap().iter().find(|g| g["name"] == "internal_cluster_id").unwrap()["value"].clone();
    assert!(again["global_parameters"].as_array().unwrap().contains(&json!({"name": "internal_cluster_id", "value": id})), "{}", again["global_parameters"]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_of_components_warren_lacks_are_refused_before_anything_is_imported() {
    let (b, addr) = start().await;
    let q = uniq("never-imported");
    let doc = json!({
        "queues": [{"name": q, "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}],
        "parameters": [{"value": {"uri": "amqp://elsewhere"}, "vhost": "/", "component": "federation-upstream", "name": "up"}],
    });
    let r = http(addr, "POST", "/api/definitions", GUEST, Some(&doc)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), json!({"error": "bad_request", "reason": "Validation failed\n\ncomponent federation-upstream not found\n (//federation-upstream/up)"}));
    let bad_limit = json!({"parameters": [{"value": {"max-connections": "x"}, "vhost": "/", "component": "vhost-limits", "name": "limits"}]});
    let r = http(addr, "POST", "/api/definitions", GUEST, Some(&bad_limit)).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["reason"].as_str().unwrap().starts_with("Validation failed\n\n"), "{}", r.json());
    // Nothing of the refused document was imported.
    assert_eq!(http(addr, "GET", &format!("/api/queues/%2F/{q}"), GUEST, None).await.status, 404);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_upload_as_a_multipart_form() {
    let (b, addr) = start().await;
    let q = uniq("uploaded");
    let doc = json!({"queues": [{"name": q, "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}]}).to_string();
    let (ctype, body) = form(&[("file", doc.as_bytes())]);
    let r = http_body(addr, "POST", "/api/definitions", &ctype, &body).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(http(addr, "GET", &format!("/api/queues/%2F/{q}"), GUEST, None).await.status, 200);
    // With a `redirect` field (RabbitMQ's UI form): 303 to it.
    let (ctype, body) = form(&[("file", doc.as_bytes()), ("redirect", b"../../#/")]);
    let r = http_body(addr, "POST", "/api/definitions", &ctype, &body).await;
    assert_eq!((r.status, r.header("location")), (303, Some("../../#/")));
    // No `file` part, or one that is not JSON: RabbitMQ's 400.
    for fields in [vec![("other", doc.as_bytes())], vec![("file", &b"{not json"[..])]] {
        let (ctype, body) = form(&fields);
        let r = http_body(addr, "POST", "/api/definitions", &ctype, &body).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json(), json!({"error": "bad_request", "reason": "failed_to_parse_json"}));
    }
    http(addr, "DELETE", &format!("/api/queues/%2F/{q}"), GUEST, None).await;
    b.stop().await;
}
