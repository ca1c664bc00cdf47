//! The admin API: one set of commands used by the control socket (`warrenctl`, `warren-plugins`)
//! and, later, by plugins' admin imports. Requests and answers are JSON values, so every front end
//! formats them its own way (tab-separated like rabbitmqctl, or JSON).

pub mod api;
pub mod app;
pub mod bindings;
pub mod channels;
pub mod cli;
pub mod connections;
pub mod consumers;
pub mod control;
pub mod definitions;
pub mod erl;
pub mod exchanges;
pub mod global_parameters;
pub mod limits;
pub mod listing;
pub mod plugins;
pub mod policies;
pub mod queues;
pub mod topic_permissions;
pub mod users;
pub mod vhosts;

use crate::broker::Broker;
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
    /// A listing's exact texts per cell where a formatter prints a value otherwise than
    /// `cli::cell` / plain JSON (pids, field tables, addresses: see `erl`); empty or parallel
    /// to `rows`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub printed: Vec<Vec<Printed>>,
    /// A listing rabbitmqctl streams (`list_queues`, ...): printed even with no rows (JSON
    /// `[` and `]` on their own lines, no table at all).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub streamed: bool,
}

/// How the table and JSON formatters print one cell, where not as usual.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Printed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
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
        .or_else(|| queues::handle(broker, req))
        .or_else(|| exchanges::handle(broker, req))
        .or_else(|| bindings::handle(broker, req))
        .or_else(|| connections::handle(broker, req))
        .or_else(|| consumers::handle(broker, req))
        .or_else(|| vhosts::handle(broker, req))
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
        other => Response::error(format!("unknown command '{other}'")),
    }
}
