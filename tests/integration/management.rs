//! The management plugin (`warren_management`, RabbitMQ's HTTP API) over real sockets with a
//! plain HTTP/1.1 client: enabled and disabled at run time, Basic auth with RabbitMQ's tag
//! rules, the resource endpoints, publish/get, definitions round trip, and a trapping
//! http-handler answering 500 while the broker goes on.
//!
//! With `WARREN_TEST_URL` set, the same requests go to the reference RabbitMQ's management
//! listener (`WARREN_TEST_HTTP`, default 127.0.0.1:15673), so status codes and bodies are
//! compared with RabbitMQ's.
use crate::common;
use base64::Engine;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP answer.
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Http {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request per connection (`Connection: close`).
pub async fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<(&str, &str)>, body: Option<&Value>) -> Http {
    let mut s = timeout(tokio::net::TcpStream::connect(addr)).await.expect("connect to the HTTP listener");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    if let Some((u, p)) = auth {
        let t = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    timeout(s.write_all(req.as_bytes())).await.unwrap();
    let mut raw = Vec::new();
    timeout(s.read_to_end(&mut raw)).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = unchunk(&body);
    }
    Http { status, headers, body }
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

/// A broker with the management plugin enabled (port 0 in-process): (broker, HTTP address).
pub async fn start() -> (TestBroker, SocketAddr) {
    let b = TestBroker::start_with(|c| c.management.port = 0).await;
    if b.is_external() {
        let addr = std::env::var("WARREN_TEST_HTTP").unwrap_or_else(|_| "127.0.0.1:15673".into());
        return (b, addr.parse().unwrap());
    }
    let r = b.admin_call("plugins_set", &["noforce", "rabbitmq_management"]).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    let addr = b.server().unwrap().plugins.http_addr("warren_management").expect("listener open");
    (b, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_opens_the_listener_and_disable_closes_it() {
    let (b, addr) = start().await;
    if b.is_external() {
        return;
    }
    let r = http(addr, "GET", "/api/overview", GUEST, None).await;
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(o["node"], "warren@localhost");
    assert!(o["object_totals"]["queues"].is_u64());
    assert!(o["exchange_types"].as_array().unwrap().iter().any(|t| t["name"] == "topic"));
    // rabbitmqadmin is served without credentials, as RabbitMQ does.
    let cli = http(addr, "GET", "/cli/rabbitmqadmin", None, None).await;
    assert_eq!(cli.status, 200);
    assert!(String::from_utf8_lossy(&cli.body).starts_with("#!/usr/bin/env python3"));
    let list = b.admin_call("plugins_list", &[]).await;
    let row = list.rows.iter().find(|r| r[1] == "warren_management").unwrap();
    assert_eq!(row[0], "[E*]");
    assert_eq!(row[3], "http-handler");
    let r = b.admin_call("plugins_set", &["noforce"]).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed after disable");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_follows_rabbitmq_tag_rules() {
    let (b, addr) = start().await;
    let r = http(addr, "GET", "/api/overview", None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"RabbitMQ Management\""));
    let r = http(addr, "GET", "/api/overview", Some(("guest", "wrong")), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "not_authorized", "reason": "Login failed"}));
    let plain = uniq("mgmt-plain");
    let mon = uniq("mgmt-mon");
    for (u, tags) in [(&plain, json!("")), (&mon, json!("monitoring"))] {
        let r = http(addr, "PUT", &format!("/api/users/{u}"), GUEST, Some(&json!({"password": "pw", "tags": tags}))).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let r = http(addr, "PUT", &format!("/api/permissions/%2F/{u}"), GUEST, Some(&json!({"configure": ".*", "write": ".*", "read": ".*"}))).await;
        assert_eq!(r.status, 201);
    }
    let r = http(addr, "GET", "/api/overview", Some((&plain, "pw")), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "not_authorised", "reason": "Not management user"}));
    // monitoring: reads everything, but administrator-only resources are refused.
    let r = http(addr, "GET", "/api/queues", Some((&mon, "pw")), None).await;
    assert_eq!(r.status, 200);
    let r = http(addr, "GET", "/api/users", Some((&mon, "pw")), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "not_authorised", "reason": "Not administrator user"}));
    let r = http(addr, "PUT", &format!("/api/vhosts/{}", uniq("mgmt-vh")), Some((&mon, "pw")), Some(&json!({}))).await;
    assert_eq!(r.status, 401);
    let r = http(addr, "GET", "/api/whoami", Some((&mon, "pw")), None).await;
    assert_eq!(r.json(), json!({"name": mon, "tags": ["monitoring"]}));
    for u in [&plain, &mon] {
        assert_eq!(http(addr, "DELETE", &format!("/api/users/{u}"), GUEST, None).await.status, 204);
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_exchanges_bindings_publish_and_get() {
    let (b, addr) = start().await;
    let q = uniq("mgmt-q");
    let x = uniq("mgmt-x");
    let r = http(addr, "PUT", &format!("/api/queues/%2F/{q}"), GUEST, Some(&json!({"durable": false, "arguments": {"x-max-length": 10}}))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(http(addr, "PUT", &format!("/api/queues/%2F/{q}"), GUEST, Some(&json!({"durable": false, "arguments": {"x-max-length": 10}}))).await.status, 204);
    let r = http(addr, "PUT", &format!("/api/queues/%2F/{q}"), GUEST, Some(&json!({"durable": true, "arguments": {"x-max-length": 10}}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
    assert!(r.json()["reason"].as_str().unwrap().contains("inequivalent arg 'durable'"), "{}", r.json());
    let r = http(addr, "GET", &format!("/api/queues/%2F/{q}"), GUEST, None).await;
    assert_eq!(r.status, 200);
    let row = r.json();
    assert_eq!((row["name"].as_str(), row["vhost"].as_str(), row["durable"].as_bool()), (Some(q.as_str()), Some("/"), Some(false)));
    assert_eq!(row["arguments"], json!({"x-max-length": 10}));
    assert_eq!(http(addr, "GET", "/api/queues/%2F/no-such-queue-here", GUEST, None).await.json(), json!({"error": "Object Not Found", "reason": "Not Found"}));

    assert_eq!(http(addr, "PUT", &format!("/api/exchanges/%2F/{x}"), GUEST, Some(&json!({"type": "topic", "durable": false}))).await.status, 201);
    let r = http(addr, "POST", &format!("/api/bindings/%2F/e/{x}/q/{q}"), GUEST, Some(&json!({"routing_key": "a.*", "arguments": {}}))).await;
    assert_eq!(r.status, 201);
    // Relative to the request path, the properties key percent-encoded (RabbitMQ's form).
    assert_eq!(r.header("location"), Some(format!("{q}/a.%252A").as_str()));
    let r = http(addr, "GET", &format!("/api/queues/%2F/{q}/bindings"), GUEST, None).await;
    let keys: Vec<Value> = r.json().as_array().unwrap().iter().map(|b| json!([b["source"], b["routing_key"], b["properties_key"]])).collect();
    assert_eq!(keys, vec![json!(["", q, q]), json!([x, "a.*", "a.%2A"])]);

    // Publish through the exchange (routed) and to nowhere (not routed), then get it back.
    let p = json!({"routing_key": "a.b", "payload": "hello", "payload_encoding": "string", "properties": {"delivery_mode": 1, "headers": {"h": "v"}}});
    let r = http(addr, "POST", &format!("/api/exchanges/%2F/{x}/publish"), GUEST, Some(&p)).await;
    assert_eq!((r.status, r.json()), (200, json!({"routed": true})));
    let p = json!({"routing_key": "zzz", "payload": "lost", "payload_encoding": "string", "properties": {}});
    assert_eq!(http(addr, "POST", &format!("/api/exchanges/%2F/{x}/publish"), GUEST, Some(&p)).await.json(), json!({"routed": false}));
    let g = json!({"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 3});
    let r = http(addr, "POST", &format!("/api/queues/%2F/{q}/get"), GUEST, Some(&g)).await;
    assert_eq!(r.status, 200);
    let m = &r.json()[0];
    assert_eq!((m["payload"].as_str(), m["payload_bytes"].as_u64(), m["redelivered"].as_bool()), (Some("hel"), Some(5), Some(false)));
    assert_eq!((m["exchange"].as_str(), m["routing_key"].as_str(), m["message_count"].as_u64()), (Some(x.as_str()), Some("a.b"), Some(0)));
    assert_eq!(m["properties"]["headers"], json!({"h": "v"}));
    // Requeued: a lapin consumer gets it, redelivered.
    let (_c, ch) = b.channel().await;
    let got = timeout(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().expect("requeued message");
    assert!(got.delivery.redelivered);
    assert_eq!(got.delivery.data, b"hello");
    // Purge, then delete; the queue's count goes with it.
    let r = http(addr, "POST", &format!("/api/exchanges/%2F/amq.default/publish"), GUEST, Some(&json!({"routing_key": q, "payload": "aGk=", "payload_encoding": "base64", "properties": {}}))).await;
    assert_eq!(r.json(), json!({"routed": true}));
    assert_eq!(http(addr, "DELETE", &format!("/api/queues/%2F/{q}/contents"), GUEST, None).await.status, 204);
    let n = timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())).await.unwrap();
    assert_eq!(n.message_count(), 0);
    assert_eq!(http(addr, "DELETE", &format!("/api/queues/%2F/{q}"), GUEST, None).await.status, 204);
    assert_eq!(http(addr, "DELETE", &format!("/api/queues/%2F/{q}"), GUEST, None).await.status, 404);
    assert_eq!(http(addr, "DELETE", &format!("/api/exchanges/%2F/{x}"), GUEST, None).await.status, 204);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_take_columns_sort_and_pages() {
    let (b, addr) = start().await;
    let (_c, ch) = b.channel().await;
    let prefix = uniq("mgmt-l");
    for i in 0..3 {
        let name = format!("{prefix}-{i}");
        timeout(ch.queue_declare(name.as_str().into(), QueueDeclareOptions { auto_delete: true, ..Default::default() }, FieldTable::default())).await.unwrap();
    }
    let r = http(addr, "GET", "/api/queues/%2F?columns=name,durable&sort=name&sort_reverse=true", GUEST, None).await;
    assert_eq!(r.status, 200);
    let mine: Vec<Value> = r.json().as_array().unwrap().iter().filter(|q| q["name"].as_str().unwrap().starts_with(&prefix)).cloned().collect();
    assert_eq!(
        Value::Array(mine),
        json!([
            {"name": format!("{prefix}-2"), "durable": false},
            {"name": format!("{prefix}-1"), "durable": false},
            {"name": format!("{prefix}-0"), "durable": false}
        ])
    );
    let r = http(addr, "GET", &format!("/api/queues/%2F?page=2&page_size=2&name={prefix}&columns=name"), GUEST, None).await;
    let p = r.json();
    assert_eq!((p["page"].as_u64(), p["page_count"].as_u64(), p["filtered_count"].as_u64(), p["item_count"].as_u64()), (Some(2), Some(2), Some(3), Some(1)));
    assert_eq!(p["items"], json!([{"name": format!("{prefix}-2")}]));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_round_trip_into_a_fresh_broker() {
    let (a, addr_a) = start().await;
    if a.is_external() {
        return;
    }
    let q = uniq("mgmt-def-q");
    let x = uniq("mgmt-def-x");
    let vh = uniq("mgmt-def-vh");
    assert_eq!(http(addr_a, "PUT", &format!("/api/vhosts/{vh}"), GUEST, Some(&json!({}))).await.status, 201);
    let perms = http(addr_a, "GET", &format!("/api/vhosts/{vh}/permissions"), GUEST, None).await.json();
    assert_eq!(perms, json!([{"user": "guest", "vhost": vh, "configure": ".*", "write": ".*", "read": ".*"}]));
    assert_eq!(http(addr_a, "PUT", &format!("/api/queues/{vh}/{q}"), GUEST, Some(&json!({"durable": true, "arguments": {"x-message-ttl": 5000}}))).await.status, 201);
    assert_eq!(http(addr_a, "PUT", &format!("/api/exchanges/{vh}/{x}"), GUEST, Some(&json!({"type": "fanout", "durable": true}))).await.status, 201);
    // Without "durable", RabbitMQ 3.10 declares both transient (rabbitmqadmin sends durable=true
    // itself).
    let tq = uniq("mgmt-def-transient-q");
    let tx = uniq("mgmt-def-transient-x");
    assert_eq!(http(addr_a, "PUT", &format!("/api/queues/{vh}/{tq}"), GUEST, Some(&json!({}))).await.status, 201);
    assert_eq!(http(addr_a, "PUT", &format!("/api/exchanges/{vh}/{tx}"), GUEST, Some(&json!({"type": "direct"}))).await.status, 201);
    assert_eq!(http(addr_a, "GET", &format!("/api/queues/{vh}/{tq}"), GUEST, None).await.json()["durable"], json!(false));
    assert_eq!(http(addr_a, "GET", &format!("/api/exchanges/{vh}/{tx}"), GUEST, None).await.json()["durable"], json!(false));
    assert_eq!(http(addr_a, "DELETE", &format!("/api/queues/{vh}/{tq}"), GUEST, None).await.status, 204);
    assert_eq!(http(addr_a, "DELETE", &format!("/api/exchanges/{vh}/{tx}"), GUEST, None).await.status, 204);
    assert_eq!(http(addr_a, "POST", &format!("/api/bindings/{vh}/e/{x}/q/{q}"), GUEST, Some(&json!({"routing_key": "k"}))).await.status, 201);
    let defs = http(addr_a, "GET", "/api/definitions", GUEST, None).await.json();
    for key in ["rabbit_version", "users", "vhosts", "permissions", "queues", "exchanges", "bindings", "policies", "parameters"] {
        assert!(defs.get(key).is_some(), "definitions lack {key}");
    }
    let (b, addr_b) = start().await;
    let r = http(addr_b, "POST", "/api/definitions", GUEST, Some(&defs)).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let got = http(addr_b, "GET", &format!("/api/queues/{vh}/{q}"), GUEST, None).await.json();
    assert_eq!(got["arguments"], json!({"x-message-ttl": 5000}));
    let binds = http(addr_b, "GET", &format!("/api/bindings/{vh}/e/{x}/q/{q}"), GUEST, None).await.json();
    assert_eq!(binds.as_array().unwrap().len(), 1);
    // Per vhost: objects without "vhost".
    let one = http(addr_b, "GET", &format!("/api/definitions/{vh}"), GUEST, None).await.json();
    assert_eq!(one["queues"], json!([{"name": q, "durable": true, "auto_delete": false, "arguments": {"x-message-ttl": 5000}}]));
    // What Warren cannot honour is refused, not dropped.
    let r = http(addr_b, "POST", "/api/definitions", GUEST, Some(&json!({"policies": [{"vhost": "/", "name": "p", "pattern": ".*", "definition": {}}]}))).await;
    assert_eq!(r.status, 400);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_and_aliveness() {
    let (b, addr) = start().await;
    for path in ["/api/health/checks/alarms", "/api/health/checks/local-alarms", "/api/health/checks/virtual-hosts", "/api/aliveness-test/%2F"] {
        let r = http(addr, "GET", path, GUEST, None).await;
        assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})), "{path}");
    }
    let r = http(addr, "GET", "/api/health/checks/port-listener/1", GUEST, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "failed");
    assert_eq!(r.json()["reason"], "No active listener");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_http_handler_answers_500_and_the_broker_goes_on() {
    let b = TestBroker::start_with(|c| {
        c.plugins.settings.insert("http-trap".into(), [("port".to_string(), "0".to_string()), ("call_timeout_ms".to_string(), "200".to_string())].into());
    })
    .await;
    if b.is_external() {
        return;
    }
    let dir = b.data_dir().unwrap().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/fixtures/http-trap.wasm"), dir.join("http-trap.wasm")).unwrap();
    let r = b.admin_call("plugins_set", &["noforce", "http-trap"]).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    let addr = b.server().unwrap().plugins.http_addr("http-trap").unwrap();
    let r = http(addr, "GET", "/trap", None, None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"], "internal_error");
    let r = http(addr, "GET", "/loop", None, None).await;
    assert_eq!(r.status, 500);
    assert!(r.json()["reason"].as_str().unwrap().contains("time limit"), "{}", r.json());
    // Still serving, and the principal reaches the guest on protected paths.
    let r = http(addr, "GET", "/api/x", GUEST, None).await;
    assert_eq!((r.status, r.body.as_slice()), (200, b"ok guest".as_slice()));
    let (_c, ch) = b.channel().await;
    timeout(ch.queue_declare("".into(), Default::default(), FieldTable::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_the_handler_on_the_same_listener() {
    let b = TestBroker::start_with(|c| {
        c.plugins.settings.insert("http-swap".into(), [("port".to_string(), "0".to_string())].into());
    })
    .await;
    if b.is_external() {
        return;
    }
    let dir = b.data_dir().unwrap().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("http-swap.wasm");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/fixtures/http-trap.wasm"), &file).unwrap();
    let r = b.admin_call("plugins_set", &["noforce", "http-swap"]).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    let addr = b.server().unwrap().plugins.http_addr("http-swap").unwrap();
    assert_eq!(http(addr, "GET", "/cli/rabbitmqadmin", None, None).await.body, b"ok ");
    // A new version of the file (here: the management plugin) takes over the same socket.
    let tmp = dir.join("http-swap.tmp");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/shipped/management.wasm"), &tmp).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let mut status = 0;
    for _ in 0..200 {
        status = http(addr, "GET", "/cli/rabbitmqadmin", None, None).await.status;
        if status == 200 && http(addr, "GET", "/cli/rabbitmqadmin", None, None).await.body.starts_with(b"#!") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = http(addr, "GET", "/cli/rabbitmqadmin", None, None).await;
    assert!(status == 200 && r.body.starts_with(b"#!/usr/bin/env python3"), "the new version serves on the same port");
    assert_eq!(b.server().unwrap().plugins.http_addr("http-swap"), Some(addr));
    b.stop().await;
}
