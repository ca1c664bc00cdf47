//! `/api/overview`, `/api/nodes`, `/api/aliveness-test/VHOST`, `/api/health/checks/*`.

use super::{ApiError, ApiResult, Caller, args};
use crate::alarm::NODE_NAME;
use crate::broker::Broker;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use super::stats::{self, Kind, Rates};
use crate::broker::stats::Snapshot;

fn exchange_types(broker: &Broker) -> Value {
    Value::Array(
        broker
            .exchange_types()
            .iter()
            .map(|t| json!({"name": t.info().name, "description": t.info().description, "enabled": true}))
            .collect(),
    )
}

fn listeners(broker: &Broker) -> Value {
    json!([{
        "node": NODE_NAME,
        "protocol": "amqp",
        "ip_address": broker.config.amqp.bind,
        "port": broker.config.amqp.port,
    }])
}

/// `GET /api/overview`. As RabbitMQ 3.10's, a user without the `monitoring` or `administrator`
/// tag sees the totals of the vhosts it may enter only (`message_stats`, `queue_totals`, queues
/// and exchanges in `object_totals`; connections and channels are its own), no consumer count,
/// and no `node`, `listeners` or `contexts`.
pub fn overview(broker: &Arc<Broker>, caller: &Caller) -> ApiResult {
    let monitor = caller.is("monitoring");
    let vhosts: Vec<_> = broker.vhosts().into_iter().filter(|v| caller.sees_vhost(broker, &v.name)).collect();
    let (mut queues, mut exchanges, mut consumers, mut ready, mut unacked) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for v in &vhosts {
        exchanges += v.exchanges.read().len() as u64 + 1;
        for q in v.queues.read().values() {
            queues += 1;
            let (m, c) = q.counts();
            ready += m as u64;
            consumers += c as u64;
            unacked += q.unacked.load(Relaxed);
        }
    }
    let (connections, channels) = {
        let conns = broker.connections.lock();
        let mine = conns.values().filter(|c| monitor || c.user == caller.name());
        mine.fold((0u64, 0u64), |(n, ch), c| (n + 1, ch + c.channels.load(Relaxed) as u64))
    };
    let mut rates = Rates::begin();
    // The rates of a user's own view are sampled apart from the node's.
    let id = if monitor { stats::id(&**broker) } else { user_sample_id(caller.name()) };
    let mut totals = serde_json::Map::new();
    rates.put(&mut totals, Kind::Overview, id, "messages", ready + unacked);
    rates.put(&mut totals, Kind::Overview, id, "messages_ready", ready);
    rates.put(&mut totals, Kind::Overview, id, "messages_unacknowledged", unacked);
    let counts = if monitor { message_totals(broker) } else { vhost_message_totals(broker, &vhosts) };
    let message_stats = rates.message_stats(Kind::Overview, id, &counts, &stats::CHANNEL_KEYS);
    drop(rates);
    let version = env!("CARGO_PKG_VERSION");
    let mut object_totals = json!({"channels": channels, "connections": connections, "exchanges": exchanges, "queues": queues});
    if monitor {
        object_totals["consumers"] = json!(consumers);
    }
    let mut o = json!({
        "management_version": version,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(broker),
        "product_version": version,
        "product_name": "Warren",
        "rabbitmq_version": "3.10.8",
        "cluster_name": broker.cluster_name(),
        "erlang_version": "",
        "erlang_full_version": "",
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": message_stats,
        "churn_rates": {},
        "queue_totals": totals,
        "object_totals": object_totals,
        "statistics_db_event_queue": 0,
    });
    if monitor {
        o["node"] = json!(NODE_NAME);
        o["listeners"] = listeners(broker);
        o["contexts"] = json!([]);
    }
    Ok(o)
}

/// The sample-table key of the overview rates of user `name`'s view.
fn user_sample_id(name: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish() as usize
}

/// The message counters of `vhosts`: their closed channels and management publishes and gets,
/// plus their open channels (RabbitMQ's overview for a user sums the stats of its vhosts).
pub fn vhost_message_totals(broker: &Broker, vhosts: &[Arc<crate::broker::Vhost>]) -> Snapshot {
    let _reading = broker.retired.reading();
    let mut t = Snapshot::default();
    for v in vhosts {
        t.add(&v.closed_channels.snapshot());
    }
    for c in broker.connections.lock().values() {
        if vhosts.iter().any(|v| v.name == c.vhost) {
            for ch in c.channel_list.lock().values() {
                t.add(&ch.stats_snapshot());
            }
        }
    }
    t
}

/// The broker's message counters: those of closed channels plus the open channels' (RabbitMQ's
/// overview counts what every channel did, all vhosts together).
pub fn message_totals(broker: &Broker) -> Snapshot {
    let _reading = broker.retired.reading();
    let mut t = broker.retired.channels.snapshot();
    for c in broker.connections.lock().values() {
        for ch in c.channel_list.lock().values() {
            t.add(&ch.stats_snapshot());
        }
    }
    t
}

pub fn nodes(broker: &Arc<Broker>, caller: &Caller) -> ApiResult {
    caller.require("monitoring")?;
    let mem = &broker.memory;
    let alarms = broker.alarms.resources();
    let disk_alarm = alarms.iter().any(|r| r.name() == "disk");
    let mem_alarm = alarms.iter().any(|r| r.name() == "memory");
    let proc = ProcStats::read();
    Ok(json!([{
        "name": NODE_NAME,
        "type": "disc",
        "running": true,
        "being_drained": false,
        "os_pid": std::process::id().to_string(),
        "uptime": broker.started.elapsed().as_millis() as u64,
        "fd_used": proc.fds,
        "fd_total": proc.fd_limit,
        "sockets_used": proc.sockets,
        "sockets_total": proc.fd_limit,
        "proc_used": proc.threads,
        "proc_total": proc.threads_max,
        "run_queue": run_queue(),
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rates_mode": "basic",
        "net_ticktime": 60,
        "context_switches": proc.context_switches,
        "io_read_count": 0,
        "gc_num": 0,
        "mem_used": mem.sample().unwrap_or(mem.used()),
        "mem_limit": mem.limit(),
        "mem_alarm": mem_alarm,
        "mem_calculation_strategy": "rss",
        "disk_free": broker.disk.free(),
        "disk_free_limit": broker.disk.limit(),
        "disk_free_alarm": disk_alarm,
        "db_dir": broker.config.storage.data_dir.display().to_string(),
        "exchange_types": exchange_types(broker),
        "partitions": [],
        "applications": [],
        "contexts": [],
        "enabled_plugins": [],
    }]))
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// The node named `name` (`/api/nodes/NAME`), 404 for another name.
pub fn node(broker: &Arc<Broker>, caller: &Caller, a: &Value) -> ApiResult {
    let n: Named = args(a)?;
    let nodes = nodes(broker, caller)?;
    nodes.as_array().and_then(|a| a.iter().find(|row| row["name"] == *n.name).cloned()).ok_or_else(ApiError::not_found)
}

#[derive(Deserialize)]
struct Vhost {
    vhost: String,
}

/// Declares `aliveness-test` in the vhost, publishes a message to it and gets it back (as
/// RabbitMQ); `{"status":"ok"}`.
pub fn aliveness(broker: &Arc<Broker>, caller: &Caller, a: &Value) -> ApiResult {
    let v: Vhost = args(a)?;
    let vhost = caller.vhost(broker, &v.vhost)?;
    let empty = amq_protocol::types::FieldTable::default();
    let d = crate::broker::QueueDecl {
        name: "aliveness-test",
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: &empty,
        owner: 0,
        server_named: false,
    };
    let (q, _, _) = vhost.declare_queue(&d)?;
    let props = amq_protocol::protocol::basic::AMQPProperties::default();
    let body = bytes::Bytes::from_static(b"test_message");
    let msg = crate::broker::message::Message {
        exchange: Default::default(),
        routing_key: "aliveness-test".into(),
        header_raw: crate::protocol::frame::encode_header(body.len() as u64, &props),
        properties: crate::protocol::Properties::default(),
        body,
    };
    crate::broker::publish::publish(&vhost, None, std::sync::Arc::new(msg), false, None)?;
    match q.get() {
        Some((r, _)) if &r.msg.body[..] == b"test_message" => {
            q.forget(r.seq);
            Ok(json!({"status": "ok"}))
        }
        _ => Ok(json!({"status": "failed", "reason": "aliveness-test message not received"})),
    }
}

#[derive(Deserialize)]
struct Check {
    check: String,
    #[serde(default)]
    arg: Option<String>,
}

/// `GET /api/health/checks/CHECK[/ARG]`: `{"status":"ok"...}` or `{"status":"failed",
/// "reason":...}` (the HTTP answer is then 503).
pub fn health(broker: &Arc<Broker>, _caller: &Caller, a: &Value) -> ApiResult {
    let c: Check = args(a)?;
    let failed = |reason: String, extra: Value| {
        let mut body = json!({"status": "failed", "reason": reason});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Ok(body)
    };
    match (c.check.as_str(), c.arg.as_deref()) {
        ("alarms" | "local-alarms", None) => {
            let alarms = broker.alarms.resources();
            if alarms.is_empty() {
                Ok(json!({"status": "ok"}))
            } else {
                let list: Vec<Value> = alarms.iter().map(|r| json!({"node": NODE_NAME, "resource": r.name()})).collect();
                failed("There are alarms in effect in the cluster".into(), json!({"alarms": list}))
            }
        }
        ("virtual-hosts", None) => Ok(json!({"status": "ok"})),
        ("node-is-quorum-critical" | "node-is-mirror-sync-critical", None) => {
            Ok(json!({"status": "ok", "reason": "single node cluster"}))
        }
        ("certificate-expiration", _) => Ok(json!({"status": "ok"})),
        ("port-listener", Some(p)) => {
            let port: u16 = p.parse().map_err(|_| ApiError::bad_request(format!("invalid port {p}")))?;
            if port == broker.config.amqp.port {
                Ok(json!({"status": "ok", "port": port}))
            } else {
                failed("No active listener".into(), json!({"missing": port, "ports": [broker.config.amqp.port]}))
            }
        }
        ("protocol-listener", Some(p)) => {
            if matches!(p, "amqp" | "amqp091" | "amqp0-9-1" | "amqp0.9.1") {
                Ok(json!({"status": "ok", "protocol": "amqp"}))
            } else {
                failed("No active listener".into(), json!({"missing": p, "protocols": ["amqp"]}))
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

/// What the node list shows of the process, read from /proc when the API is read: open file
/// descriptors (and how many are sockets), threads (Erlang's `proc_used` counts processes; a
/// Warren thread is the nearest thing), the limits, voluntary + involuntary context switches.
#[derive(Default)]
struct ProcStats {
    fds: u64,
    sockets: u64,
    fd_limit: u64,
    threads: u64,
    threads_max: u64,
    context_switches: u64,
}

impl ProcStats {
    fn read() -> ProcStats {
        let mut p = ProcStats::default();
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            for e in dir.flatten() {
                p.fds += 1;
                if std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")) {
                    p.sockets += 1;
                }
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                let num = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                if line.starts_with("Threads:") {
                    p.threads = num(line);
                } else if line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:") {
                    p.context_switches += num(line);
                }
            }
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
            && let Some(l) = limits.lines().find(|l| l.starts_with("Max open files"))
        {
            // "Max open files   <soft>   <hard>   files"
            p.fd_limit = l["Max open files".len()..].split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        p.threads_max = std::fs::read_to_string("/proc/sys/kernel/threads-max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        p
    }
}

/// Tasks waiting in the runtime's global queue (the nearest thing to Erlang's run queue).
fn run_queue() -> usize {
    tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().global_queue_depth())
}
