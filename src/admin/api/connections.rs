//! `/api/connections` (+ DELETE), `/api/channels`, `/api/consumers`.
//!
//! A connection's name is RabbitMQ's `"PEER -> LISTENER"` text, a channel's that text followed by
//! ` (NUMBER)`. Channels come from each connection's registry of open channels
//! (`ConnectionEntry::channel_list`, changed at channel.open and close).

use super::{ApiError, ApiResult, Caller, args};
use super::paging::Query;
use super::stats::{self, Kind, Rates};
use crate::broker::delivery::{ChannelInfo, ChannelShared, Consumer};
use std::sync::Arc;
use crate::broker::queue::Queue;
use crate::broker::{Broker, ConnectionEntry};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;

pub fn connection_name(broker: &Broker, peer: std::net::SocketAddr) -> String {
    format!("{peer} -> {}:{}", broker.config.amqp.bind, broker.config.amqp.port)
}

pub(crate) fn state(broker: &Broker, c: &ConnectionEntry) -> &'static str {
    match (c.blocked.load(Relaxed), broker.alarms.any()) {
        (true, _) => "blocked",
        (false, true) => "blocking",
        (false, false) if c.flow.is_flow() => "flow",
        _ => "running",
    }
}

fn row(broker: &Broker, rates: &mut Rates, c: &ConnectionEntry) -> Value {
    let ssl = c.ssl.as_ref();
    let (channel_max, frame_max, heartbeat) = c.tuned;
    let mut r = json!({
        "name": connection_name(broker, c.peer),
        "node": crate::alarm::NODE_NAME,
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "host": broker.config.amqp.bind,
        "port": broker.config.amqp.port,
        "state": state(broker, c),
        "channels": c.channels.load(Relaxed),
        "channel_max": channel_max,
        "frame_max": frame_max,
        "timeout": heartbeat,
        "connected_at": c.connected_at,
        "auth_mechanism": c.auth_mechanism,
        "ssl": ssl.is_some(),
        "ssl_protocol": ssl.map(|s| s.protocol.clone()),
        "ssl_cipher": ssl.map(|s| s.cipher.clone()),
        "ssl_key_exchange": ssl.map(|s| s.key_exchange.clone()),
        "ssl_hash": ssl.map(|s| s.hash.clone()),
        "peer_cert_subject": ssl.and_then(|s| s.peer_cert_subject.clone()),
        "peer_cert_issuer": ssl.and_then(|s| s.peer_cert_issuer.clone()),
        "peer_cert_validity": ssl.and_then(|s| s.peer_cert_validity.clone()),
        "client_properties": super::fields::table_to_json(&c.client_properties),
        "recv_cnt": c.shared.io.recv_cnt.load(Relaxed),
        "send_cnt": c.shared.io.send_cnt.load(Relaxed),
        "send_pend": 0,
    });
    let m = r.as_object_mut().expect("object");
    let id = stats::id(&*c.shared);
    rates.put(m, Kind::Connection, id, "recv_oct", c.shared.io.recv_oct.load(Relaxed));
    rates.put(m, Kind::Connection, id, "send_oct", c.shared.io.send_oct.load(Relaxed));
    r
}

/// Connections the caller may see: its own, or all for monitoring users.
fn visible(broker: &Broker, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    let all = caller.is("monitoring");
    let mut rates = Rates::begin();
    let mut conns: Vec<(u64, Value)> = broker
        .connections
        .lock()
        .values()
        .filter(|c| all || c.user == caller.name())
        .filter(|c| vhost.is_none_or(|v| v == c.vhost))
        .map(|c| (c.id, row(broker, &mut rates, c)))
        .collect();
    conns.sort_by_key(|(id, _)| *id);
    conns.into_iter().map(|(_, v)| v).collect()
}

#[derive(Deserialize, Default)]
struct Where {
    vhost: Option<String>,
    name: Option<String>,
    reason: Option<String>,
}

pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    if let Some(v) = &w.vhost {
        caller.vhost(broker, v)?;
    }
    // RabbitMQ pages the node's list, not a vhost's.
    Query::of(a)?.values(visible(broker, caller, w.vhost.as_deref()), w.vhost.is_none())
}

pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    let name = w.name.unwrap_or_default();
    visible(broker, caller, None).into_iter().find(|c| c["name"] == *name).ok_or_else(ApiError::not_found)
}

/// Closes a connection with 320 CONNECTION_FORCED and the reason (RabbitMQ's `X-Reason`
/// header; default "Closed via management plugin").
pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    let name = w.name.unwrap_or_default();
    let conns = broker.connections.lock();
    let c = conns.values().find(|c| connection_name(broker, c.peer) == name).ok_or_else(ApiError::not_found)?;
    if c.user != caller.name() && !caller.is("administrator") {
        return Err(ApiError::not_admin());
    }
    let reason = w.reason.unwrap_or_else(|| "Closed via management plugin".into());
    let _ = c.close.send(crate::protocol::ReplyError::new(crate::protocol::ErrorKind::ConnectionForced, reason));
    Ok(Value::Null)
}

/// Every consumer of the visible vhosts: (queue, consumer).
fn all_consumers(broker: &Broker, caller: &Caller, vhost: Option<&str>) -> Vec<(std::sync::Arc<Queue>, std::sync::Arc<Consumer>)> {
    let mut out = Vec::new();
    let mut vs = broker.vhosts();
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    for v in vs {
        if vhost.is_some_and(|x| x != v.name) || !caller.sees_vhost(broker, &v.name) {
            continue;
        }
        let mut qs: Vec<_> = v.queues.read().values().cloned().collect();
        qs.sort_by(|a, b| a.name.cmp(&b.name));
        for q in qs {
            let cs: Vec<_> = q.inner.lock().consumers.clone();
            out.extend(cs.into_iter().map(|c| (q.clone(), c)));
        }
    }
    out
}

fn channel_details(broker: &Broker, c: &Consumer) -> Value {
    let conns = broker.connections.lock();
    let entry = conns.get(&c.channel.conn.id);
    let (conn_name, peer_host, peer_port, user) = match entry {
        Some(e) => (connection_name(broker, e.peer), e.peer.ip().to_string(), e.peer.port(), e.user.clone()),
        None => (String::new(), String::new(), 0, String::new()),
    };
    json!({
        "connection_name": conn_name,
        "name": format!("{conn_name} ({})", c.channel.number),
        "node": crate::alarm::NODE_NAME,
        "number": c.channel.number,
        "peer_host": peer_host,
        "peer_port": peer_port,
        "user": user,
    })
}

pub fn consumer_row(broker: &Broker, q: &Queue, c: &Consumer) -> Value {
    json!({
        "consumer_tag": c.tag,
        "channel_details": channel_details(broker, c),
        "queue": {"name": q.name, "vhost": q.vhost},
        "ack_required": !c.no_ack,
        "exclusive": c.exclusive,
        "prefetch_count": c.prefetch,
        "arguments": super::fields::table_to_json(&c.arguments),
        "active": true,
        "activity_status": "up",
        "consumer_timeout": 1800000,
    })
}

pub fn consumers(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    if let Some(v) = &w.vhost {
        caller.vhost(broker, v)?;
    }
    let rows = all_consumers(broker, caller, w.vhost.as_deref()).iter().map(|(q, c)| consumer_row(broker, q, c)).collect();
    Query::of(a)?.values(rows, false)
}

#[derive(Deserialize, Default)]
struct ChannelsOf {
    vhost: Option<String>,
    /// Only the channels of this connection (`/api/connections/{name}/channels`).
    connection: Option<String>,
    /// One channel (`/api/channels/{name}`), with its consumers.
    name: Option<String>,
}

/// One channel as `/api/channels` shows it (RabbitMQ's fields; `message_stats` once the
/// channel has counted something, as RabbitMQ leaves it out of an idle channel's row).
fn channel_row(rates: &mut Rates, conn: &ConnectionEntry, conn_name: &str, ch: &ChannelShared) -> Value {
    let info = &ch.info;
    let mode = info.mode();
    let mut r = json!({
        "name": format!("{conn_name} ({})", ch.number),
        "number": ch.number,
        "node": crate::alarm::NODE_NAME,
        "user": conn.user,
        "user_who_performed_action": conn.user,
        "vhost": conn.vhost,
        "connection_details": {"name": conn_name, "peer_host": conn.peer.ip().to_string(), "peer_port": conn.peer.port()},
        "consumer_count": info.consumers.load(Relaxed),
        "messages_unacknowledged": ch.unacked_count(),
        "messages_unconfirmed": ch.confirms.unconfirmed(),
        "messages_uncommitted": info.uncommitted_messages.load(Relaxed),
        "acks_uncommitted": info.uncommitted_acks.load(Relaxed),
        "prefetch_count": info.prefetch.load(Relaxed),
        "global_prefetch_count": ch.global_prefetch.load(Relaxed),
        "confirm": mode == ChannelInfo::CONFIRM,
        "transactional": mode == ChannelInfo::TX,
        "state": if ch.open.load(Relaxed) { "running" } else { "closing" },
        "pending_raft_commands": 0,
    });
    let snap = ch.stats_snapshot();
    if !snap.is_empty() {
        r["message_stats"] = rates.message_stats(Kind::Channel, stats::id(ch), &snap, &stats::CHANNEL_KEYS);
    }
    r
}

/// Every open channel of the connections the caller may see (its own, or all for monitoring
/// users), from the registry each connection keeps (changed at channel.open and close only).
pub fn channels(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: ChannelsOf = args(a)?;
    if let Some(v) = &w.vhost {
        caller.vhost(broker, v)?;
    }
    let all = caller.is("monitoring");
    let mut rates = Rates::begin();
    let mut rows: Vec<((u64, u16), Value)> = Vec::new();
    let mut found_conn = false;
    for c in broker.connections.lock().values() {
        if !(all || c.user == caller.name()) || w.vhost.as_ref().is_some_and(|v| *v != c.vhost) {
            continue;
        }
        let conn_name = connection_name(broker, c.peer);
        if w.connection.as_ref().is_some_and(|n| *n != conn_name) {
            continue;
        }
        found_conn = true;
        let list: Vec<Arc<ChannelShared>> = c.channel_list.lock().values().cloned().collect();
        for ch in list {
            rows.push(((c.id, ch.number), channel_row(&mut rates, c, &conn_name, &ch)));
        }
    }
    if w.connection.is_some() && !found_conn {
        return Err(ApiError::not_found());
    }
    rows.sort_by_key(|(k, _)| *k);
    if let Some(name) = &w.name {
        let (_, mut row) = rows.into_iter().find(|(_, r)| r["name"] == **name).ok_or_else(ApiError::not_found)?;
        row["consumer_details"] = Value::Array(channel_consumers(broker, caller, &row));
        row["publishes"] = json!([]);
        row["deliveries"] = json!([]);
        return Ok(row);
    }
    // RabbitMQ pages the node's list, not a vhost's or a connection's.
    let paged = w.vhost.is_none() && w.connection.is_none();
    Query::of(a)?.values(rows.into_iter().map(|(_, r)| r).collect(), paged)
}

/// The consumers of the channel `row` describes.
fn channel_consumers(broker: &Broker, caller: &Caller, row: &Value) -> Vec<Value> {
    let vhost = row["vhost"].as_str().unwrap_or_default();
    all_consumers(broker, caller, Some(vhost))
        .iter()
        .map(|(q, c)| consumer_row(broker, q, c))
        .filter(|c| c["channel_details"]["name"] == row["name"])
        .collect()
}
