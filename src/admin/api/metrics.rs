//! Read-only metric operations (`metrics.*`) for Prometheus-style exporters: the broker's global
//! counters and gauges, and compact per-object rows (arrays, not objects: a scrape of 10,000
//! queues moves one small JSON document through the `admin` import). These are the only
//! operations an http-handler plugin may call for a request without a logged-in user (see
//! [`super::call_public`]): they read numbers and object names, never change anything, as
//! RabbitMQ's unauthenticated `/metrics` endpoint.

use super::{ApiError, ApiResult};
use crate::alarm::{NODE_NAME, Resource};
use crate::broker::Broker;
use crate::broker::counters::{Counters, QUEUE_TYPES, type_index};
use crate::broker::stats::{Snapshot, Stat};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// The operations of this module.
pub const OPS: [&str; 6] = ["metrics.node", "metrics.queues", "metrics.connections", "metrics.channels", "metrics.vhosts", "metrics.exchanges"];

/// The broker's counters: churn from `c`; RabbitMQ's global message counters summed from the
/// channels' (`ch`: publish side) and the queues' counters per queue type (`q`: delivery side).
fn counters(c: &Counters, ch: &Snapshot, q: &[Snapshot; 2]) -> Value {
    let v = |a: &AtomicU64| a.load(Relaxed);
    let per_type = |s: Stat| json!([q[0].get(s), q[1].get(s)]);
    let delivered: Vec<u64> =
        q.iter().map(|t| [Stat::Deliver, Stat::DeliverNoAck, Stat::Get, Stat::GetNoAck].iter().map(|s| t.get(*s)).sum()).collect();
    let unroutable = [Stat::ReturnUnroutable, Stat::DropUnroutable, Stat::PublishRefused].iter().map(|s| ch.get(*s)).sum::<u64>();
    json!({
        "connections_opened": v(&c.connections_opened),
        "connections_closed": v(&c.connections_closed),
        "channels_opened": v(&c.channels_opened),
        "channels_closed": v(&c.channels_closed),
        "queues_declared": v(&c.queues_declared),
        "queues_created": v(&c.queues_created),
        "queues_deleted": v(&c.queues_deleted),
        "received": ch.get(Stat::Publish),
        "received_confirm": ch.get(Stat::PublishConfirm),
        "routed": ch.get(Stat::Publish).saturating_sub(unroutable),
        "unroutable_dropped": ch.get(Stat::DropUnroutable),
        "unroutable_returned": ch.get(Stat::ReturnUnroutable),
        "confirmed": ch.get(Stat::Confirm),
        "publishers": v(&c.publishers),
        "delivered": delivered,
        "delivered_consume_auto_ack": per_type(Stat::DeliverNoAck),
        "delivered_consume_manual_ack": per_type(Stat::Deliver),
        "delivered_get_auto_ack": per_type(Stat::GetNoAck),
        "delivered_get_manual_ack": per_type(Stat::Get),
        "get_empty": per_type(Stat::GetEmpty),
        "redelivered": per_type(Stat::Redeliver),
        "acknowledged": per_type(Stat::Ack),
    })
}

/// Open file descriptors of the process and its limit (None where /proc is missing).
fn fds() -> (Option<u64>, Option<u64>) {
    let open = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    let max = std::fs::read_to_string("/proc/self/limits").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..].split_whitespace().next()?.parse().ok()
    });
    (open, max)
}

/// When this process started, in seconds since the Unix epoch (None where /proc is missing).
fn start_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 22 (starttime, clock ticks after boot); fields after the `(comm)` start at 3.
    let ticks: u64 = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()?;
    let proc_stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(btime + ticks / (hz.max(1) as u64))
}

/// A stable cluster id for this node's data directory (RabbitMQ: `rabbitmq-cluster-id-…`,
/// generated once and kept in its database).
fn cluster_id(broker: &Broker) -> String {
    let dir = broker.config.storage.data_dir.canonicalize().unwrap_or_else(|_| broker.config.storage.data_dir.clone());
    let d = sha2::Sha256::digest(format!("{NODE_NAME}\0{}", dir.display()).as_bytes());
    let hex: String = d.iter().take(11).map(|b| format!("{b:02x}")).collect();
    format!("warren-cluster-id-{hex}")
}

/// `metrics.node`: the global counters, object counts, queue totals, memory, disk, alarms,
/// file descriptors, process start time and identity.
pub fn node(broker: &Broker) -> ApiResult {
    let (mut queues, mut ready, mut unacked, mut consumers, mut published) = (0u64, 0u64, 0u64, 0u64, 0u64);
    // Deliveries, gets, acks per queue type: deleted queues' and live queues' counters (read
    // together, so a queue deleted meanwhile is counted once).
    let mut by_type = [Snapshot::default(); 2];
    let vhosts = broker.vhosts();
    {
        let _reading = broker.retired.reading();
        for (t, r) in by_type.iter_mut().zip(&broker.retired.queues) {
            *t = r.snapshot();
        }
        for v in &vhosts {
            for q in v.queues.read().values() {
                let (m, c) = q.counts();
                queues += 1;
                ready += m as u64;
                consumers += c as u64;
                unacked += q.unacked.load(Relaxed);
                published += q.published.load(Relaxed);
                by_type[type_index(q.declared.queue_type)].add(&q.stats.snapshot());
            }
        }
    }
    let by_channel = super::overview::message_totals(broker);
    let (connections, channels) = {
        let conns = broker.connections.lock();
        (conns.len() as u64, conns.values().map(|c| c.channels.load(Relaxed) as u64).sum::<u64>())
    };
    let (open_fds, max_fds) = fds();
    let mem = &broker.memory;
    Ok(json!({
        "node": NODE_NAME,
        "cluster": NODE_NAME,
        "cluster_id": cluster_id(broker),
        "version": env!("CARGO_PKG_VERSION"),
        "counters": counters(&broker.counters, &by_channel, &by_type),
        "connections": connections,
        "channels": channels,
        "queues": queues,
        "consumers": consumers,
        "messages_ready": ready,
        "messages_unacked": unacked,
        "messages_published": published,
        "resident_memory": mem.sample().unwrap_or(mem.used()),
        "memory_limit": mem.limit(),
        "disk_free": broker.disk.free(),
        "disk_free_limit": broker.disk.limit(),
        "memory_alarm": broker.alarms.is_set(Resource::Memory),
        "disk_alarm": broker.alarms.is_set(Resource::Disk),
        "open_fds": open_fds,
        "max_fds": max_fds,
        "start_time": start_time(),
    }))
}

#[derive(Deserialize, Default)]
struct VhostFilter {
    /// Only these vhosts (absent or empty: all).
    #[serde(default)]
    vhosts: Vec<String>,
}

/// `metrics.queues {vhosts?}`: `{"columns": [...], "rows": [[vhost, name, type, ready,
/// unacked, consumers, published], ...]}`.
pub fn queues(broker: &Broker, a: &Value) -> ApiResult {
    let f: VhostFilter = super::args(a)?;
    let mut rows = Vec::new();
    for v in broker.vhosts() {
        if !f.vhosts.is_empty() && !f.vhosts.contains(&v.name) {
            continue;
        }
        let qs: Vec<_> = v.queues.read().values().cloned().collect();
        rows.reserve(qs.len());
        for q in qs {
            let (m, c) = q.counts();
            rows.push(json!([
                v.name,
                q.name,
                QUEUE_TYPES[type_index(q.declared.queue_type)],
                m,
                q.unacked.load(Relaxed),
                c,
                q.published.load(Relaxed)
            ]));
        }
    }
    Ok(json!({"columns": ["vhost", "queue", "type", "messages_ready", "messages_unacked", "consumers", "published"], "rows": rows}))
}

/// `metrics.connections`: `{"columns": [...], "rows": [[id, vhost, channels], ...]}`.
pub fn connections(broker: &Broker) -> ApiResult {
    let conns = broker.connections.lock();
    let mut rows: Vec<Value> = conns.values().map(|c| json!([c.id, c.vhost, c.channels.load(Relaxed)])).collect();
    drop(conns);
    rows.sort_by_key(|r| r[0].as_u64());
    Ok(json!({"columns": ["id", "vhost", "channels"], "rows": rows}))
}

/// The counters of a `metrics.channels` row, after its gauges.
const CHANNEL_COUNTERS: [Stat; 11] = [
    Stat::Publish,
    Stat::Confirm,
    Stat::ReturnUnroutable,
    Stat::DropUnroutable,
    Stat::Get,
    Stat::GetNoAck,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Redeliver,
    Stat::Ack,
    Stat::GetEmpty,
];

/// `metrics.channels`: every open channel, from the registry each connection keeps:
/// `{"columns": [...], "rows": [[connection id, number, vhost, consumers, unacked, unconfirmed,
/// uncommitted, acks_uncommitted, prefetch, global_prefetch, publish, confirm,
/// return_unroutable, drop_unroutable, get, get_no_ack, deliver, deliver_no_ack, redeliver,
/// ack, get_empty], ...]}`, ordered by connection and channel number.
pub fn channels(broker: &Broker) -> ApiResult {
    let mut rows: Vec<(u64, u16, Value)> = Vec::new();
    for c in broker.connections.lock().values() {
        for ch in c.channel_list.lock().values() {
            let info = &ch.info;
            let snap = ch.stats_snapshot();
            let mut row = vec![
                json!(c.id),
                json!(ch.number),
                json!(c.vhost),
                json!(info.consumers.load(Relaxed)),
                json!(ch.unacked_count()),
                json!(ch.confirms.unconfirmed()),
                json!(info.uncommitted_messages.load(Relaxed)),
                json!(info.uncommitted_acks.load(Relaxed)),
                json!(info.prefetch.load(Relaxed)),
                json!(ch.global_prefetch.load(Relaxed)),
            ];
            row.extend(CHANNEL_COUNTERS.iter().map(|s| json!(snap.get(*s))));
            rows.push((c.id, ch.number, Value::Array(row)));
        }
    }
    rows.sort_by_key(|r| (r.0, r.1));
    let mut columns = vec!["connection", "number", "vhost", "consumers", "unacked", "unconfirmed", "uncommitted", "acks_uncommitted", "prefetch", "global_prefetch"];
    columns.extend(CHANNEL_COUNTERS.iter().map(|s| s.name()));
    Ok(json!({"columns": columns, "rows": rows.into_iter().map(|r| r.2).collect::<Vec<_>>()}))
}

/// `metrics.vhosts`: the vhost names (all running).
pub fn vhosts(broker: &Broker) -> ApiResult {
    Ok(Value::Array(broker.vhosts().iter().map(|v| Value::String(v.name.clone())).collect()))
}

/// `metrics.exchanges {vhosts?}`: `{"columns": [...], "rows": [[vhost, name, type, bindings],
/// ...]}` (without the default exchange, as RabbitMQ's `exchange_names`).
pub fn exchanges(broker: &Broker, a: &Value) -> ApiResult {
    let f: VhostFilter = super::args(a)?;
    let mut rows = Vec::new();
    for v in broker.vhosts() {
        if !f.vhosts.is_empty() && !f.vhosts.contains(&v.name) {
            continue;
        }
        for x in v.exchanges.read().values() {
            rows.push(json!([v.name, x.name, x.kind, x.binding_count()]));
        }
    }
    Ok(json!({"columns": ["vhost", "exchange", "type", "bindings"], "rows": rows}))
}

/// Runs `metrics.*` operation `op`.
pub fn call(broker: &Broker, op: &str, a: &Value) -> ApiResult {
    match op {
        "metrics.node" => node(broker),
        "metrics.queues" => queues(broker, a),
        "metrics.connections" => connections(broker),
        "metrics.channels" => channels(broker),
        "metrics.vhosts" => vhosts(broker),
        "metrics.exchanges" => exchanges(broker, a),
        other => Err(ApiError::bad_request(format!("unknown admin operation '{other}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::call_public;
    use crate::broker::Broker;
    use serde_json::json;

    #[test]
    fn a_request_without_login_may_only_read_metrics() {
        let b = Broker::new(crate::config::Config::default(), []).unwrap();
        let node = call_public(&b, "metrics.node", &json!({})).unwrap();
        assert_eq!(node["queues"], 0);
        assert_eq!(node["counters"]["received"], 0);
        assert!(call_public(&b, "metrics.queues", &json!({"vhosts": ["/"]})).unwrap()["rows"].is_array());
        for op in ["queues.delete", "queues.put", "users.list", "definitions.get", "exchanges.publish", "whoami", "overview"] {
            let e = call_public(&b, op, &json!({"vhost": "/", "name": "q"})).unwrap_err();
            assert_eq!((e.status, e.error.as_str(), e.reason.as_str()), (401, "not_authorised", "Login required"), "{op}");
        }
    }
}
