//! The admin API: one set of commands used by the control socket (`warrenctl`, `warren-plugins`)
//! and, later, by plugins' admin imports. Requests and answers are JSON values, so every front end
//! formats them its own way (tab-separated like rabbitmqctl, or JSON).

pub mod api;
pub mod app;
pub mod channels;
pub mod cli;
pub mod control;
pub mod definitions;
pub mod global_parameters;
pub mod limits;
pub mod plugins;
pub mod policies;
pub mod topic_permissions;
pub mod users;

use crate::broker::Broker;
use crate::broker::exchange::Destination;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// One command, as sent over the control socket (one JSON object per line).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Request {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// `-p VHOST`; the default vhost when absent.
    #[serde(default)]
    pub vhost: Option<String>,
}

/// The answer: a table (`columns` + `rows`) or a message; `error` set on failure.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The exit code `warrenctl` returns with `error` (rabbitmqctl's; 70 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    /// Print `error` without rabbitmqctl's "Error:" line (e.g. `delete_vhost` of a missing vhost).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bare_error: bool,
}

impl Response {
    pub fn error(text: impl Into<String>) -> Response {
        Response { error: Some(text.into()), ..Default::default() }
    }
    pub fn message(text: impl Into<String>) -> Response {
        Response { message: Some(text.into()), ..Default::default() }
    }
    fn table(columns: &[&str], rows: Vec<Vec<Value>>) -> Response {
        Response { columns: columns.iter().map(|c| c.to_string()).collect(), rows, ..Default::default() }
    }
}

/// What the admin API serves: the broker, and the services `server.rs` wires in at start (the
/// core never builds them itself).
#[derive(Clone)]
pub struct Admin {
    pub broker: Arc<Broker>,
    /// The plugin layer (`warren-plugins`); None in a broker started without one.
    pub plugins: Option<Arc<dyn plugins::PluginControl>>,
    /// The listeners (`stop_app` / `start_app`); None in a broker started without them.
    pub app: Option<Arc<dyn app::AppControl>>,
}

/// Picks the requested columns out of full rows.
fn select(all: &[&str], default: &[&str], args: &[String], rows: Vec<Vec<Value>>) -> Response {
    let wanted: Vec<&str> = if args.is_empty() { default.to_vec() } else { args.iter().map(|s| s.as_str()).collect() };
    let mut idx = Vec::new();
    for w in &wanted {
        match all.iter().position(|c| c == w) {
            Some(i) => idx.push(i),
            None => return Response::error(format!("Info key {w} not recognised; valid keys: {}", all.join(", "))),
        }
    }
    let rows = rows.into_iter().map(|r| idx.iter().map(|i| r[*i].clone()).collect()).collect();
    Response::table(&wanted, rows)
}

/// Runs one command against the broker.
pub fn handle(admin: &Admin, req: &Request) -> Response {
    let broker = &admin.broker;
    // First: the app commands, and the refusals while the app is stopped.
    if let Some(r) = app::handle(admin, req) {
        return r;
    }
    if let Some(r) = plugins::handle(admin.plugins.as_deref(), req) {
        return r;
    }
    if let Some(r) = definitions::handle(broker, req)
        .or_else(|| users::handle(broker, req))
        .or_else(|| topic_permissions::handle(broker, req))
        .or_else(|| limits::handle(broker, req))
        .or_else(|| global_parameters::handle(broker, req))
        .or_else(|| policies::handle(broker, req))
        .or_else(|| channels::handle(broker, req))
    {
        return r;
    }
    let vhost_name = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    let vhost = || broker.vhost(&vhost_name).ok_or_else(|| Response::error(format!("Virtual host '{vhost_name}' does not exist")));
    match req.command.as_str() {
        "status" => {
            let conns = broker.connections.lock().len();
            let queues: usize = broker.vhosts().iter().map(|v| v.queues.read().len()).sum();
            // `alarms` as `rabbitmqctl status --formatter json` gives them (its CLI's
            // `alarm_map`): {"node", "resource": "disk" | "memory", "type": "resource_limit"};
            // `disk_free` is null until measured. Memory: resident bytes at the last sample, the
            // setting and its limit.
            let alarms: Vec<serde_json::Value> = broker
                .alarms
                .resources()
                .into_iter()
                .map(|r| json!({"node": crate::alarm::NODE_NAME, "resource": r.name(), "type": "resource_limit"}))
                .collect();
            let mem = &broker.memory;
            Response::table(
                &["key", "value"],
                vec![
                    vec![json!("product"), json!("Warren")],
                    vec![json!("version"), json!(env!("CARGO_PKG_VERSION"))],
                    vec![json!("node"), json!(crate::alarm::NODE_NAME)],
                    vec![json!("os_pid"), json!(std::process::id())],
                    vec![json!("data_directory"), json!(broker.config.storage.data_dir.display().to_string())],
                    vec![json!("alarms"), json!(alarms)],
                    vec![json!("disk_free"), json!(broker.disk.free())],
                    vec![json!("disk_free_limit"), json!(broker.disk.limit())],
                    vec![json!("memory_used"), json!(mem.sample().unwrap_or(mem.used()))],
                    vec![json!("vm_memory_calculation_strategy"), json!("rss")],
                    vec![json!("vm_memory_high_watermark_setting"), mem.setting().to_json()],
                    vec![json!("vm_memory_high_watermark_limit"), json!(mem.limit())],
                    vec![json!("memory_available"), json!(mem.total())],
                    vec![json!("memory_trimmed_bytes"), json!(mem.trimmed_bytes.load(std::sync::atomic::Ordering::Relaxed))],
                    vec![json!("connections"), json!(conns)],
                    vec![
                        json!("listeners"),
                        json!(broker
                            .listeners
                            .lock()
                            .iter()
                            .map(|(p, a)| json!({"interface": a.ip().to_string(), "port": a.port(), "protocol": p}))
                            .collect::<Vec<_>>()),
                    ],
                    vec![json!("queues"), json!(queues)],
                    vec![json!("vhosts"), json!(broker.vhosts().len())],
                ],
            )
        }
        "store_status" => match &broker.store {
            None => Response::error("this broker runs without a store".to_string()),
            Some(store) => {
                let s = store.stats();
                let mut rows = vec![
                    vec![json!("commits"), json!(s.commits)],
                    vec![json!("batches"), json!(s.batches)],
                    vec![json!("failed_batches"), json!(s.failed_batches)],
                    vec![json!("reopens_after_io_error"), json!(s.reopens)],
                    vec![json!("ops"), json!(s.ops)],
                    vec![json!("appends"), json!(s.appends)],
                    vec![json!("removes"), json!(s.removes)],
                    vec![json!("records_written"), json!(s.records_written)],
                    vec![json!("records_deleted"), json!(s.records_deleted)],
                    vec![json!("cancelled_before_commit"), json!(s.cancelled)],
                    vec![json!("avg_batch_ops"), json!((s.avg_batch() * 10.0).round() / 10.0)],
                    vec![json!("max_batch_ops"), json!(s.max_batch)],
                    vec![json!("avg_commit_us"), json!(s.avg_commit_us().round())],
                    vec![json!("max_commit_us"), json!(s.max_commit_us)],
                    vec![json!("pending_bytes"), json!(store.message_log().pending_bytes())],
                ];
                for (i, n) in s.batch_size_hist.iter().enumerate().filter(|(_, n)| **n > 0) {
                    let label = if i + 1 == s.batch_size_hist.len() { format!("batches_{}_plus_ops", 1u64 << i) } else { format!("batches_{}_to_{}_ops", 1u64 << i, (1u64 << (i + 1)) - 1) };
                    rows.push(vec![json!(label), json!(n)]);
                }
                Response::table(&["key", "value"], rows)
            }
        },
        "set_disk_free_limit" => match req.args.as_slice() {
            [limit] => match crate::alarm::parse_information_unit(limit) {
                Some(bytes) => {
                    broker.disk.set_limit(bytes);
                    Response::message(format!("Setting disk free limit on {} to {limit} bytes ...", crate::alarm::NODE_NAME))
                }
                None => Response::error(format!(
                    "Unable to parse disk free limit value \"{limit}\" (bytes, or with a unit: 50MB, 1GB, 500MiB, 2GiB)"
                )),
            },
            [m, _] if m == "mem_relative" => {
                Response::error("set_disk_free_limit mem_relative is not supported: give the limit in bytes or with a unit")
            }
            _ => Response::error("usage: set_disk_free_limit <disk_limit>"),
        },
        "set_vm_memory_high_watermark" => match crate::alarm::Watermark::from_args(&req.args) {
            Ok(w) => {
                broker.memory.set_watermark(w);
                let shown = match req.args.as_slice() {
                    [_, v] => format!("{v} bytes"),
                    [f] => f.clone(),
                    _ => String::new(),
                };
                Response::message(format!("Setting memory threshold on {} to {shown} ...", crate::alarm::NODE_NAME))
            }
            Err(detail) => {
                let mut r = Response::error(format!("Bad argument{}{detail}", if detail.is_empty() { "." } else { ": " }));
                r.exit_code = Some(65);
                r
            }
        },
        "list_vhosts" => {
            let mut rows: Vec<Vec<Value>> = broker.vhosts().iter().map(|v| vec![json!(v.name)]).collect();
            rows.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
            Response::table(&["name"], rows)
        }
        "list_queues" => match vhost() {
            Err(e) => e,
            Ok(v) => {
                let mut qs: Vec<_> = v.queues.read().values().cloned().collect();
                qs.sort_by(|a, b| a.name.cmp(&b.name));
                // Memory columns walk the whole backlog: only when asked for.
                let memory = req.args.iter().any(|a| matches!(a.as_str(), "messages_ram" | "message_bytes_ram" | "messages_paged_out"));
                let rows = qs
                    .iter()
                    .map(|q| {
                        let (m, c) = q.counts();
                        let (ram, ram_bytes, paged) = if memory { q.memory() } else { (0, 0, 0) };
                        let unacked = q.unacked.load(std::sync::atomic::Ordering::Relaxed);
                        let applied = q.applied_policy();
                        vec![
                            json!(q.name),
                            json!(m as u64 + unacked),
                            json!(m),
                            json!(unacked),
                            json!(c),
                            json!(q.durable),
                            json!(q.auto_delete),
                            json!(q.exclusive_owner.is_some()),
                            json!(ram),
                            json!(ram_bytes),
                            json!(paged),
                            json!(applied.policy.unwrap_or_default()),
                            json!(applied.operator_policy.unwrap_or_default()),
                            json!(applied.definition),
                        ]
                    })
                    .collect();
                select(
                    &["name", "messages", "messages_ready", "messages_unacknowledged", "consumers", "durable", "auto_delete", "exclusive", "messages_ram", "message_bytes_ram", "messages_paged_out", "policy", "operator_policy", "effective_policy_definition"],
                    &["name", "messages"],
                    &req.args,
                    rows,
                )
            }
        },
        "list_exchanges" => match vhost() {
            Err(e) => e,
            Ok(v) => {
                let mut xs: Vec<_> = v.exchanges.read().values().cloned().collect();
                xs.sort_by(|a, b| a.name.cmp(&b.name));
                let mut rows = vec![vec![json!(""), json!("direct"), json!(true), json!(false), json!(false), json!("")]];
                rows.extend(xs.iter().map(|x| {
                    let policy = x.policy.load().as_ref().and_then(|p| p.policy.clone()).unwrap_or_default();
                    vec![json!(x.name), json!(x.kind), json!(x.durable), json!(x.auto_delete), json!(x.internal), json!(policy)]
                }));
                select(&["name", "type", "durable", "auto_delete", "internal", "policy"], &["name", "type"], &req.args, rows)
            }
        },
        "list_bindings" => match vhost() {
            Err(e) => e,
            Ok(v) => {
                let mut rows = Vec::new();
                let mut qs: Vec<_> = v.queues.read().keys().cloned().collect();
                qs.sort();
                for q in qs {
                    rows.push(vec![json!(""), json!("exchange"), json!(q), json!("queue"), json!(q)]);
                }
                let mut xs: Vec<_> = v.exchanges.read().values().cloned().collect();
                xs.sort_by(|a, b| a.name.cmp(&b.name));
                for x in xs {
                    for b in x.bindings() {
                        let kind = match b.destination {
                            Destination::Queue(_) => "queue",
                            Destination::Exchange(_) => "exchange",
                        };
                        rows.push(vec![json!(x.name), json!("exchange"), json!(b.destination.name()), json!(kind), json!(b.key)]);
                    }
                }
                select(
                    &["source_name", "source_kind", "destination_name", "destination_kind", "routing_key"],
                    &["source_name", "source_kind", "destination_name", "destination_kind", "routing_key"],
                    &req.args,
                    rows,
                )
            }
        },
        "list_connections" => {
            // RabbitMQ's states: `blocking` while an alarm is set, `blocked` once the connection
            // published during it (its socket is no longer read).
            let alarm = broker.alarms.any();
            // `flow` while publisher flow control pauses its reader (and a second after).
            let state = |c: &crate::broker::ConnectionEntry| match (c.blocked.load(std::sync::atomic::Ordering::Relaxed), alarm) {
                (true, _) => "blocked",
                (false, true) => "blocking",
                (false, false) if c.flow.is_flow() => "flow",
                (false, false) => "running",
            };
            let mut rows: Vec<Vec<Value>> = broker
                .connections
                .lock()
                .values()
                .map(|c| {
                    // RabbitMQ's TLS columns: `ssl` true/false, the others empty without TLS.
                    let ssl = c.ssl.as_ref();
                    vec![
                        json!(c.id),
                        json!(c.user),
                        json!(c.peer.ip().to_string()),
                        json!(c.peer.port()),
                        json!(c.vhost),
                        json!(state(c)),
                        json!(ssl.is_some()),
                        json!(ssl.map_or("", |s| s.protocol.as_str())),
                        json!(ssl.map_or("", |s| s.cipher.as_str())),
                        json!(ssl.and_then(|s| s.peer_cert_subject.as_deref()).unwrap_or("")),
                    ]
                })
                .collect();
            rows.sort_by_key(|r| r[0].as_u64());
            select(
                &["pid", "user", "peer_host", "peer_port", "vhost", "state", "ssl", "ssl_protocol", "ssl_cipher", "peer_cert_subject"],
                &["user", "peer_host", "peer_port", "state"],
                &req.args,
                rows,
            )
        }
        "purge_queue" => match (vhost(), req.args.first()) {
            (Err(e), _) => e,
            (_, None) => Response::error("purge_queue needs a queue name"),
            (Ok(v), Some(name)) => match v.queue(name) {
                None => Response::error(format!("Queue {name} in vhost {vhost_name} not found")),
                Some(q) => Response::message(format!("Purged {} messages from queue {name}", q.purge())),
            },
        },
        "delete_queue" => match (vhost(), req.args.first()) {
            (Err(e), _) => e,
            (_, None) => Response::error("delete_queue needs a queue name"),
            (Ok(v), Some(name)) => match v.queue(name) {
                None => Response::error(format!("Queue {name} in vhost {vhost_name} not found")),
                Some(q) => Response::message(format!("Queue was successfully deleted with {} ready messages", v.remove_queue(&q))),
            },
        },
        "close_connection" => {
            let (Some(id), reason) = (req.args.first().and_then(|s| s.parse::<u64>().ok()), req.args.get(1)) else {
                return Response::error("close_connection needs a connection pid (from list_connections pid) and a reason");
            };
            let reason = reason.cloned().unwrap_or_else(|| "Closed via warrenctl".into());
            match broker.connections.lock().get(&id) {
                None => Response::error(format!("no connection {id}")),
                Some(c) => {
                    let _ = c.close.send(crate::protocol::ReplyError::new(crate::protocol::ErrorKind::ConnectionForced, reason));
                    Response::message(format!("Closing connection {id}"))
                }
            }
        }
        other => Response::error(format!("unknown command '{other}'")),
    }
}
