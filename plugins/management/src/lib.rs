//! `warren_management`: RabbitMQ's management HTTP API as a Wasm component (world
//! `http-handler`). This crate is the HTTP edge only: it maps RabbitMQ's paths and status codes
//! onto the broker's typed admin operations (the `admin` import), which check the caller's tags
//! and permissions and answer rows with RabbitMQ's field names. A list operation gets the query
//! string as `query`: the host applies `columns`, `sort`, `sort_reverse`, `page`, `page_size`,
//! `name` and `use_regex` to its typed rows, so only the rows answered cross the boundary. A
//! single-object operation gets it too, for the host to apply `columns`: nothing is picked here.

mod parameters;

use serde_json::{Value, json};
use warren_plugin_sdk::http::{HttpHandler, Request, Response, admin, decode_segment as decode, query_pairs as query};

/// RabbitMQ 3.10's own `rabbitmqadmin`, served at `/cli/rabbitmqadmin` (MPL 2.0, unchanged).
const RABBITMQADMIN: &[u8] = include_bytes!("../assets/rabbitmqadmin");

/// The web UI (plugins/management-ui: plain files, no build step), served at `/`.
const UI: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../management-ui/index.html")),
    ("app.css", "text/css; charset=utf-8", include_str!("../../management-ui/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../management-ui/app.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_str!("../../management-ui/charts.js")),
    ("pages.js", "text/javascript; charset=utf-8", include_str!("../../management-ui/pages.js")),
    ("admin.js", "text/javascript; charset=utf-8", include_str!("../../management-ui/admin.js")),
];

/// The UI loads nothing from elsewhere and runs no inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// A file of the web UI, or `None` when `path` names none.
fn ui_file(path: &str) -> Option<Response> {
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        n => n,
    };
    let (_, mime, body) = UI.iter().find(|(n, _, _)| *n == name)?;
    Some(Response {
        status: 200,
        headers: vec![
            ("content-type".into(), (*mime).into()),
            ("content-security-policy".into(), CSP.into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        body: body.as_bytes().to_vec(),
    })
}

struct Management;

impl HttpHandler for Management {
    fn describe() -> String {
        "RabbitMQ's management HTTP API (/api), its web UI (/) and rabbitmqadmin (/cli)".into()
    }

    fn protected_prefixes() -> Vec<String> {
        vec!["/api/".into()]
    }

    fn handle(req: Request) -> Response {
        let r = route(&req);
        match r {
            Ok(resp) => resp,
            Err(f) => error(f.status, &f.error, &f.reason),
        }
    }
}

warren_plugin_sdk::export_http_handler!(Management);

type Failure = admin::Failure;

fn failure(status: u16, error: &str, reason: &str) -> Failure {
    Failure { status, error: error.into(), reason: reason.into() }
}

fn not_found() -> Failure {
    failure(404, "Object Not Found", "Not Found")
}

fn bad_request(reason: &str) -> Failure {
    failure(400, "bad_request", reason)
}

fn error(status: u16, error: &str, reason: &str) -> Response {
    json_response(status, &json!({"error": error, "reason": reason}))
}

fn json_response(status: u16, v: &Value) -> Response {
    json_text(status, v.to_string().into_bytes())
}

fn json_text(status: u16, body: Vec<u8>) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into()), ("cache-control".into(), "no-cache".into())],
        body,
    }
}

fn empty(status: u16) -> Response {
    Response { status, headers: Vec::new(), body: Vec::new() }
}

/// Runs an admin operation.
fn call(op: &str, args: Value) -> Result<Value, Failure> {
    let text = admin::call(op, &args.to_string())?;
    serde_json::from_str(&text).map_err(|e| failure(500, "internal_error", &format!("bad answer from the broker: {e}")))
}



fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Keys RabbitMQ parses as booleans and as integers, whether sent as JSON values or as strings
/// (`rabbitmqadmin` sends `"durable": "false"`, `"count": "1"`).
const BOOL_KEYS: [&str; 5] = ["durable", "auto_delete", "internal", "if_unused", "if_empty"];
const INT_KEYS: [&str; 2] = ["count", "truncate"];

fn body(req: &Request) -> Result<Value, Failure> {
    if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(json!({}));
    }
    let mut v: Value = serde_json::from_slice(&req.body).map_err(|e| bad_request(&format!("failed to decode json: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        for (k, val) in o.iter_mut() {
            let Value::String(text) = val else { continue };
            if BOOL_KEYS.contains(&k.as_str()) {
                *val = match text.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(bad_request(&format!("{k}: {text} is not a boolean"))),
                };
            } else if INT_KEYS.contains(&k.as_str()) {
                let n: u64 = text.trim().parse().map_err(|_| bad_request(&format!("{k}: {text} is not an integer")))?;
                *val = json!(n);
            }
        }
    }
    Ok(v)
}

/// `{"created": bool}` of a PUT → 201 or 204.
fn created(v: Value) -> Response {
    if v.get("created").and_then(|c| c.as_bool()).unwrap_or(false) { empty(201) } else { empty(204) }
}

fn get_like(method: &str) -> bool {
    method == "GET" || method == "HEAD"
}

fn method_not_allowed() -> Result<Response, Failure> {
    Ok(empty(405))
}

/// Merges `extra` into the object `base`.
fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn route(req: &Request) -> Result<Response, Failure> {
    let path = req.path.trim_end_matches('/');
    if path == "/cli" || path == "/cli/rabbitmqadmin" {
        return Ok(Response {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: RABBITMQADMIN.to_vec(),
        });
    }
    if get_like(&req.method)
        && let Some(file) = ui_file(path)
    {
        return Ok(file);
    }
    let raw: Vec<&str> = path.split('/').skip(1).collect();
    if raw.first() != Some(&"api") {
        return Err(not_found());
    }
    let seg: Vec<String> = raw[1..].iter().map(|s| decode(s)).collect();
    let s: Vec<&str> = seg.iter().map(|x| x.as_str()).collect();
    let q = query(&req.query);
    let m = req.method.as_str();
    let get = m == "GET" || m == "HEAD";
    // A list: the host filters, sorts and pages it (RabbitMQ's `page`, `page_size`, `name`,
    // `use_regex`, `sort`, `sort_reverse`, `columns`), given the query string as `query`; its
    // JSON text is the response body as it is (10 MB for 10,000 queues: not parsed again here).
    let list_query = Value::Object(q.iter().rev().map(|(k, v)| (k.clone(), json!(v))).collect());
    let list = |op: &str, args: Value| -> Result<Response, Failure> {
        let text = admin::call(op, &with(args, json!({"query": list_query})).to_string())?;
        Ok(json_text(200, text.into_bytes()))
    };
    // One object: the host applies `columns` to it, given the same `query`.
    let one = |op: &str, args: Value| -> Result<Response, Failure> { Ok(json_response(200, &call(op, with(args, json!({"query": list_query})))?)) };
    if let Some(r) = parameters::route(req, &s, &list, &one) {
        return r;
    }
    match (m, s.as_slice()) {
        (_, ["overview"]) if get => one("overview", json!({})),
        (_, ["cluster-name"]) if get => one("cluster_name.get", json!({})),
        (_, ["nodes"]) if get => list("nodes", json!({})),
        (_, ["nodes", name]) if get => one("nodes.get", json!({"name": name})),
        (_, ["extensions"]) if get => Ok(json_response(200, &json!([]))),
        (_, ["whoami"]) if get => one("whoami", json!({})),
        (_, ["aliveness-test", vhost]) if get => one("aliveness_test", json!({"vhost": vhost})),
        (_, ["health", "checks", check]) if get => health(json!({"check": check})),
        (_, ["health", "checks", check, arg]) if get => health(json!({"check": check, "arg": arg})),
        // connections
        (_, ["connections"]) if get => list("connections.list", json!({})),
        (_, ["vhosts", vhost, "connections"]) if get => list("connections.list", json!({"vhost": vhost})),
        (_, ["connections", name]) if get => one("connections.get", json!({"name": name})),
        ("DELETE", ["connections", name]) => {
            let reason = req.headers.iter().find(|(k, _)| k == "x-reason").map(|(_, v)| v.clone());
            call("connections.delete", json!({"name": name, "reason": reason}))?;
            Ok(empty(204))
        }
        (_, ["connections", name, "channels"]) if get => list("channels.list", json!({"connection": name})),
        // channels, consumers
        (_, ["channels"]) if get => list("channels.list", json!({})),
        (_, ["vhosts", vhost, "channels"]) if get => list("channels.list", json!({"vhost": vhost})),
        (_, ["channels", name]) if get => one("channels.list", json!({"name": name})),
        (_, ["consumers"]) if get => list("consumers.list", json!({})),
        (_, ["consumers", vhost]) if get => list("consumers.list", json!({"vhost": vhost})),
        // exchanges
        (_, ["exchanges"]) if get => list("exchanges.list", json!({})),
        (_, ["exchanges", vhost]) if get => list("exchanges.list", json!({"vhost": vhost})),
        (_, ["exchanges", vhost, name]) => {
            let name = if *name == "amq.default" { "" } else { name };
            match m {
                "GET" | "HEAD" => one("exchanges.get", json!({"vhost": vhost, "name": name})),
                "PUT" => Ok(created(call("exchanges.put", with(body(req)?, json!({"vhost": vhost, "name": name})))?)),
                "DELETE" => {
                    call("exchanges.delete", json!({"vhost": vhost, "name": name, "if_unused": param(&q, "if-unused") == Some("true")}))?;
                    Ok(empty(204))
                }
                _ => method_not_allowed(),
            }
        }
        (_, ["exchanges", vhost, name, "bindings", dir @ ("source" | "destination")]) if get => {
            let name = if *name == "amq.default" { "" } else { name };
            call("exchanges.get", json!({"vhost": vhost, "name": name}))?;
            let args = if *dir == "source" {
                json!({"vhost": vhost, "source": name})
            } else {
                json!({"vhost": vhost, "destination": name, "destination_type": "exchange"})
            };
            list("bindings.list", args)
        }
        ("POST", ["exchanges", vhost, name, "publish"]) => {
            let r = call("exchanges.publish", with(body(req)?, json!({"vhost": vhost, "name": name})))?;
            Ok(json_response(200, &r))
        }
        // queues
        (_, ["queues"]) if get => list("queues.list", json!({})),
        (_, ["queues", vhost]) if get => list("queues.list", json!({"vhost": vhost})),
        (_, ["queues", vhost, name]) => match m {
            "GET" | "HEAD" => one("queues.get", json!({"vhost": vhost, "name": name})),
            "PUT" => Ok(created(call("queues.put", with(body(req)?, json!({"vhost": vhost, "name": name})))?)),
            "DELETE" => {
                call(
                    "queues.delete",
                    json!({"vhost": vhost, "name": name, "if_unused": param(&q, "if-unused") == Some("true"), "if_empty": param(&q, "if-empty") == Some("true")}),
                )?;
                Ok(empty(204))
            }
            _ => method_not_allowed(),
        },
        (_, ["queues", vhost, name, "bindings"]) if get => {
            call("queues.get", json!({"vhost": vhost, "name": name}))?;
            list("bindings.list", json!({"vhost": vhost, "destination": name, "destination_type": "queue"}))
        }
        ("DELETE", ["queues", vhost, name, "contents"]) => {
            call("queues.purge", json!({"vhost": vhost, "name": name}))?;
            Ok(empty(204))
        }
        ("POST", ["queues", vhost, name, "get"]) => {
            let b = body(req)?;
            for k in ["count", "ackmode", "encoding"] {
                if b.get(k).is_none() {
                    return Err(bad_request(&format!("[{{key_missing,{k}}}]")));
                }
            }
            let r = call("queues.get_messages", with(b, json!({"vhost": vhost, "name": name})))?;
            Ok(json_response(200, &r))
        }
        // bindings
        (_, ["bindings"]) if get => list("bindings.list", json!({})),
        (_, ["bindings", vhost]) if get => list("bindings.list", json!({"vhost": vhost})),
        (_, ["bindings", vhost, "e", source, t @ ("q" | "e"), dest]) => {
            let dt = if *t == "q" { "queue" } else { "exchange" };
            match m {
                "GET" | "HEAD" => list("bindings.list", json!({"vhost": vhost, "source": source, "destination": dest, "destination_type": dt})),
                "POST" => {
                    let r = call("bindings.post", with(body(req)?, json!({"vhost": vhost, "source": source, "destination": dest, "destination_type": dt})))?;
                    let pk = r["properties_key"].as_str().unwrap_or("");
                    let target = format!("/api/bindings/{}/e/{}/{}/{}/{}", enc(vhost), enc(source), t, enc(dest), enc(pk));
                    let loc = relativise(&req.path, &target);
                    Ok(Response { status: 201, headers: vec![("location".into(), loc)], body: Vec::new() })
                }
                _ => method_not_allowed(),
            }
        }
        (_, ["bindings", vhost, "e", source, t @ ("q" | "e"), dest, props]) => {
            let dt = if *t == "q" { "queue" } else { "exchange" };
            let args = json!({"vhost": vhost, "source": source, "destination": dest, "destination_type": dt, "properties_key": props});
            match m {
                "GET" | "HEAD" => one("bindings.get", args),
                "DELETE" => {
                    call("bindings.delete", args)?;
                    Ok(empty(204))
                }
                _ => method_not_allowed(),
            }
        }
        // policies and operator policies
        (_, [kind @ ("policies" | "operator-policies"), rest @ ..]) => {
            let kind = if *kind == "policies" { "user" } else { "operator" };
            match (m, rest) {
                (_, []) if get => list("policies.list", json!({"kind": kind})),
                (_, [vhost]) if get => list("policies.list", json!({"kind": kind, "vhost": vhost})),
                (_, [vhost, name]) => {
                    let at = json!({"kind": kind, "vhost": vhost, "name": name});
                    match m {
                        "GET" | "HEAD" => one("policies.get", at),
                        "PUT" => Ok(created(call("policies.put", with(at, json!({"body": body(req)?})))?)),
                        "DELETE" => {
                            call("policies.delete", at)?;
                            Ok(empty(204))
                        }
                        _ => method_not_allowed(),
                    }
                }
                _ => Err(not_found()),
            }
        }
        // vhosts
        (_, ["vhosts"]) if get => list("vhosts.list", json!({})),
        (_, ["vhosts", name]) => match m {
            "GET" | "HEAD" => one("vhosts.get", json!({"name": name})),
            "PUT" => Ok(created(call("vhosts.put", with(body(req)?, json!({"name": name})))?)),
            "DELETE" => {
                call("vhosts.delete", json!({"name": name}))?;
                Ok(empty(204))
            }
            _ => method_not_allowed(),
        },
        (_, ["vhosts", vhost, "permissions"]) if get => list("permissions.list", json!({"vhost": vhost})),
        (_, ["vhosts", vhost, "topic-permissions"]) if get => list("topic_permissions.list", json!({"vhost": vhost})),
        // users
        (_, ["users"]) if get => list("users.list", json!({})),
        (_, ["users", "without-permissions"]) if get => {
            let users = call("users.list", json!({}))?;
            let perms = call("permissions.list", json!({}))?;
            let has: Vec<&Value> = perms.as_array().map(|p| p.iter().map(|p| &p["user"]).collect()).unwrap_or_default();
            let out: Vec<Value> = users.as_array().map(|u| u.iter().filter(|u| !has.contains(&&u["name"])).cloned().collect()).unwrap_or_default();
            Ok(json_response(200, &Value::Array(out)))
        }
        (_, ["users", name]) => match m {
            "GET" | "HEAD" => one("users.get", json!({"name": name})),
            "PUT" => Ok(created(call("users.put", with(body(req)?, json!({"name": name})))?)),
            "DELETE" => {
                call("users.delete", json!({"name": name}))?;
                Ok(empty(204))
            }
            _ => method_not_allowed(),
        },
        (_, ["users", user, "permissions"]) if get => list("permissions.list", json!({"user": user})),
        (_, ["users", user, "topic-permissions"]) if get => list("topic_permissions.list", json!({"user": user})),
        // permissions
        (_, ["permissions"]) if get => list("permissions.list", json!({})),
        (_, ["permissions", vhost, user]) => match m {
            "GET" | "HEAD" => {
                let l = call("permissions.list", json!({"vhost": vhost, "user": user, "query": list_query}))?;
                let p = l.as_array().and_then(|a| a.first().cloned()).ok_or_else(not_found)?;
                Ok(json_response(200, &p))
            }
            "PUT" => Ok(created(call("permissions.put", with(body(req)?, json!({"vhost": vhost, "user": user})))?)),
            "DELETE" => {
                call("permissions.delete", json!({"vhost": vhost, "user": user}))?;
                Ok(empty(204))
            }
            _ => method_not_allowed(),
        },
        (_, ["topic-permissions"]) if get => list("topic_permissions.list", json!({})),
        // `/VHOST/USER/EXCHANGE`: GET lists all of the user's rows in the vhost (as RabbitMQ),
        // DELETE clears only that exchange's.
        (_, ["topic-permissions", vhost, user, rest @ ..]) if rest.len() <= 1 => match m {
            "GET" | "HEAD" => {
                let l = call("topic_permissions.list", json!({"vhost": vhost, "user": user, "query": list_query}))?;
                if l.as_array().is_none_or(|a| a.is_empty()) {
                    return Err(not_found());
                }
                Ok(json_response(200, &l))
            }
            "PUT" => Ok(created(call("topic_permissions.put", with(body(req)?, json!({"vhost": vhost, "user": user})))?)),
            "DELETE" => {
                call("topic_permissions.delete", json!({"vhost": vhost, "user": user, "exchange": rest.first()}))?;
                Ok(empty(204))
            }
            _ => method_not_allowed(),
        },
        // definitions
        (_, ["definitions"]) | (_, ["all-configuration"]) => definitions(req, None, &list_query),
        (_, ["definitions", vhost]) => definitions(req, Some(vhost), &list_query),
        _ => Err(not_found()),
    }
}

fn health(args: Value) -> Result<Response, Failure> {
    let r = call("health_check", args)?;
    let status = if r["status"] == "failed" { 503 } else { 200 };
    Ok(json_response(status, &r))
}

fn definitions(req: &Request, vhost: Option<&str>, list_query: &Value) -> Result<Response, Failure> {
    match req.method.as_str() {
        "GET" | "HEAD" => {
            // The host applies `columns`, as to every single object.
            let d = call("definitions.get", json!({"vhost": vhost, "query": list_query}))?;
            let q = query(&req.query);
            let mut resp = json_response(200, &d);
            if param(&q, "download").is_some() {
                let name = param(&q, "download").unwrap_or("definitions.json");
                resp.headers.push(("content-disposition".into(), format!("attachment; filename={name}")));
            }
            Ok(resp)
        }
        "POST" => {
            let ctype = req.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str()).unwrap_or("");
            // RabbitMQ's UI and `rabbitmqadmin` (with a file) upload a form: the document is the
            // `file` part; a `redirect` part answers 303 to it.
            let (doc, redirect) = match multipart_boundary(ctype) {
                Some(boundary) => {
                    let parts = multipart(&req.body, &boundary);
                    let file = parts.iter().find(|(n, _)| n == "file").map(|(_, b)| b.clone());
                    let redirect = parts.iter().find(|(n, _)| n == "redirect").map(|(_, b)| String::from_utf8_lossy(b).into_owned());
                    let doc = file
                        .and_then(|f| serde_json::from_slice::<Value>(&f).ok())
                        .ok_or_else(|| bad_request("failed_to_parse_json"))?;
                    (doc, redirect)
                }
                None => (body(req)?, None),
            };
            call("definitions.post", json!({"vhost": vhost, "body": doc}))?;
            Ok(match redirect {
                Some(to) => Response { status: 303, headers: vec![("location".into(), to)], body: Vec::new() },
                None => empty(204),
            })
        }
        _ => method_not_allowed(),
    }
}

/// The boundary of a `multipart/form-data` content type (RFC 7578), if it is one.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary").then(|| v.trim_matches('"').to_string())
    })
}

/// The parts of a `multipart/form-data` body: (field name, content). Parts are separated by
/// `--BOUNDARY` lines; each has headers (only `Content-Disposition`'s `name` is read), a blank
/// line, then its content up to the CRLF before the next delimiter.
fn multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let find = |hay: &[u8], from: usize| hay[from.min(hay.len())..].windows(d.len()).position(|w| w == d).map(|p| p + from);
    let mut out = Vec::new();
    let Some(mut at) = find(body, 0) else { return out };
    loop {
        let start = at + d.len();
        // "--" after the delimiter closes the body.
        if body[start..].starts_with(b"--") {
            break;
        }
        let Some(next) = find(body, start) else { break };
        let part = &body[start..next];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        if let Some(split) = part.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&part[..split]);
            let name = head.lines().filter(|l| l.to_ascii_lowercase().starts_with("content-disposition")).find_map(|l| {
                l.split(';').find_map(|kv| kv.trim().strip_prefix("name=").map(|n| n.trim_matches('"').to_string()))
            });
            if let Some(name) = name {
                out.push((name, part[split + 4..].to_vec()));
            }
        }
        at = next;
    }
    out
}

/// `to` relative to `from` (RabbitMQ's `rabbit_web_dispatch_util:relativise`): a `..` for each
/// directory of `from` after the common prefix, then the rest of `to`.
fn relativise(from: &str, to: &str) -> String {
    // The directory of `from` (its last segment is the resource itself).
    let mut f: Vec<&str> = from.split('/').collect();
    f.pop();
    let t: Vec<&str> = to.split('/').collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let ups = f.len() - common;
    let mut parts: Vec<&str> = vec![".."; ups];
    parts.extend(&t[common..]);
    parts.join("/")
}

/// Percent-encoding of a path segment for a `Location` header.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

