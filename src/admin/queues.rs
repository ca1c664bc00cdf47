//! rabbitmqctl's `list_queues` with all of 3.10's info keys (and Warren's `operator_policy`,
//! `effective_policy_definition`, `messages_paged_out`).
//!
//! Values are what RabbitMQ prints for the same state. Mirroring keys (`slave_pids`,
//! `synchronised_slave_pids`) are empty as for any non-mirrored queue; `leader`, `members`
//! and `online` are empty for classic queues and name this node for quorum queues, which,
//! as RabbitMQ's, leave the classic-only keys (`exclusive`, `consumer_capacity`, byte and
//! persistence counts, disk reads/writes) empty. Unacknowledged messages are always in memory
//! here (their channel holds them). Counts that walk the backlog or the channels are computed
//! only when a column asks for them.

use super::erl::{self, Cell};
use super::{Request, Response, listing};
use crate::broker::Broker;
use crate::broker::queue::Queue;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Unacknowledged messages of one queue, summed over every channel: (bytes, persistent,
/// persistent bytes).
#[derive(Default, Clone, Copy)]
struct Unacked {
    bytes: u64,
    persistent: u64,
    persistent_bytes: u64,
}

fn unacked_by_queue(broker: &Broker) -> HashMap<usize, Unacked> {
    let mut out: HashMap<usize, Unacked> = HashMap::new();
    for c in broker.connections.lock().values() {
        for ch in c.channel_list.lock().values() {
            for u in ch.state.lock().unacked.iter() {
                let e = out.entry(Arc::as_ptr(&u.queue) as usize).or_default();
                let n = u.msg.body.len() as u64;
                e.bytes += n;
                if u.seq != 0 {
                    e.persistent += 1;
                    e.persistent_bytes += n;
                }
            }
        }
    }
    out
}

/// What one queue's row needs, computed once per queue.
struct Facts {
    ready: u64,
    unacked: u64,
    consumers: u64,
    /// Ready messages in memory, their body bytes, ready messages paged out (a backlog walk).
    memory: Option<(u64, u64, u64)>,
    /// Ready persistent messages and their bytes (a backlog walk).
    persistent: Option<(u64, u64)>,
    ready_bytes: u64,
    unacked_more: Unacked,
}

pub fn handle(broker: &Broker, req: &Request) -> Option<Response> {
    if req.command != "list_queues" {
        return None;
    }
    let vhost = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    // RabbitMQ lists nothing for a vhost that does not exist.
    let mut qs: Vec<Arc<Queue>> = broker.vhost(&vhost).map(|v| v.queues.read().values().cloned().collect()).unwrap_or_default();
    qs.sort_by(|a, b| a.name.cmp(&b.name));
    if req.args.iter().any(|a| a == "--offline") {
        qs.clear(); // every queue of this one node is online
    }
    let cols = listing::columns(&req.command, &req.args);
    let wants = |keys: &[&str]| cols.iter().any(|c| keys.contains(c));
    let memory = wants(&["messages_ram", "messages_ready_ram", "message_bytes_ram", "messages_paged_out", "memory"]);
    let persistent = wants(&["messages_persistent", "message_bytes_persistent"]);
    let unacked = if wants(&["message_bytes", "message_bytes_unacknowledged", "message_bytes_ram", "messages_persistent", "message_bytes_persistent", "memory"]) {
        unacked_by_queue(broker)
    } else {
        HashMap::new()
    };
    let facts: Vec<(Arc<Queue>, Facts)> = qs
        .into_iter()
        .map(|q| {
            let (ready, consumers) = q.counts();
            let f = Facts {
                ready: ready as u64,
                unacked: q.unacked.load(Relaxed),
                consumers: consumers as u64,
                memory: memory.then(|| {
                    let (ram, bytes, paged) = q.memory();
                    (ram as u64, bytes as u64, paged as u64)
                }),
                persistent: persistent.then(|| q.ready_persistent()),
                ready_bytes: q.ready_bytes() as u64,
                unacked_more: unacked.get(&(Arc::as_ptr(&q) as usize)).copied().unwrap_or_default(),
            };
            (q, f)
        })
        .collect();
    Some(listing::answer(&req.command, &req.args, &facts, |(q, f), key| cell(q, f, key)))
}

fn cell(q: &Queue, f: &Facts, key: &str) -> Cell {
    let quorum = q.is_quorum();
    // Keys a quorum queue leaves empty in RabbitMQ.
    let classic_only = [
        "consumer_capacity",
        "consumer_utilisation",
        "disk_reads",
        "disk_writes",
        "exclusive",
        "message_bytes",
        "message_bytes_persistent",
        "message_bytes_ready",
        "message_bytes_unacknowledged",
        "messages_persistent",
        "messages_ready_ram",
        "messages_unacknowledged_ram",
    ];
    if quorum && classic_only.contains(&key) {
        return erl::none();
    }
    let node = crate::alarm::NODE_NAME;
    let (ram, ram_bytes, paged) = f.memory.unwrap_or_default();
    let (pers, pers_bytes) = f.persistent.unwrap_or_default();
    let u = f.unacked_more;
    let applied = || q.applied_policy();
    let v = match key {
        "name" => json!(q.name),
        "arguments" => return erl::table(&q.arguments),
        "auto_delete" => json!(q.auto_delete),
        "durable" => json!(q.durable),
        "exclusive" => json!(q.exclusive_owner.is_some()),
        "type" => json!(if quorum { "quorum" } else { "classic" }),
        "state" => json!("running"),
        "pid" => return erl::queue_pid(q),
        "owner_pid" => return q.exclusive_owner.map_or_else(erl::none, |c| erl::pid(c, 0)),
        "consumers" => json!(f.consumers),
        // Every consumer can take deliveries at once (no prefetch stalls are measured).
        "consumer_capacity" | "consumer_utilisation" => {
            if f.consumers > 0 {
                json!(1.0)
            } else {
                json!(0)
            }
        }
        "exclusive_consumer_pid" | "exclusive_consumer_tag" => {
            let inner = q.inner.lock();
            let excl = if inner.exclusive_consumer { inner.consumers.first().cloned() } else { None };
            drop(inner);
            return match excl {
                None => erl::none(),
                Some(c) if key == "exclusive_consumer_tag" => Cell::from(json!(c.tag)),
                Some(c) => erl::pid(c.channel.conn.id, c.channel.number as u64),
            };
        }
        "head_message_timestamp" => return q.head_timestamp().map_or_else(erl::none, |t| Cell::from(json!(t))),
        "leader" if quorum => json!(node),
        "members" | "online" if quorum => json!([node]),
        "leader" | "members" | "online" | "slave_pids" | "synchronised_slave_pids" => return erl::none(),
        "memory" => json!(ram_bytes + u.bytes + std::mem::size_of::<Queue>() as u64),
        "messages" => json!(f.ready + f.unacked),
        "messages_ready" => json!(f.ready),
        "messages_unacknowledged" => json!(f.unacked),
        "messages_ram" => json!(ram + f.unacked),
        "messages_ready_ram" => json!(ram),
        "messages_unacknowledged_ram" => json!(f.unacked),
        "messages_paged_out" => json!(paged),
        "messages_persistent" => json!(pers + u.persistent),
        "message_bytes" => json!(f.ready_bytes + u.bytes),
        "message_bytes_ready" => json!(f.ready_bytes),
        "message_bytes_unacknowledged" => json!(u.bytes),
        "message_bytes_ram" => json!(ram_bytes + u.bytes),
        "message_bytes_persistent" => json!(pers_bytes + u.persistent_bytes),
        "disk_reads" => json!(q.disk_io().0),
        "disk_writes" => json!(q.disk_io().1),
        "policy" => json!(applied().policy.unwrap_or_default()),
        "operator_policy" => json!(applied().operator_policy.unwrap_or_default()),
        "effective_policy_definition" => json!(applied().definition),
        _ => return erl::none(),
    };
    Cell::from(v)
}
