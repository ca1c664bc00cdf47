//! `/api/connections` (+ DELETE), `/api/channels`, `/api/consumers`.
//!
//! A connection's name is RabbitMQ's `"PEER -> LISTENER"` text. Channels are listed from what
//! the broker tracks per channel: the channels of a connection that have consumers (the count of
//! open channels is in the connection's `channels`).

use super::{ApiError, ApiResult, Caller, args};
use crate::broker::delivery::Consumer;
use crate::broker::queue::Queue;
use crate::broker::{Broker, ConnectionEntry};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

pub fn connection_name(broker: &Broker, peer: std::net::SocketAddr) -> String {
    format!("{peer} -> {}:{}", broker.config.amqp.bind, broker.config.amqp.port)
}

fn state(broker: &Broker, c: &ConnectionEntry) -> &'static str {
    match (c.blocked.load(Relaxed), broker.alarms.any()) {
        (true, _) => "blocked",
        (false, true) => "blocking",
        (false, false) if c.flow.is_flow() => "flow",
        _ => "running",
    }
}

fn row(broker: &Broker, c: &ConnectionEntry) -> Value {
    json!({
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
        "channel_max": broker.config.amqp.channel_max,
        "frame_max": broker.config.amqp.frame_max,
        "timeout": broker.config.amqp.heartbeat,
        "ssl": false,
        "auth_mechanism": "PLAIN",
        "client_properties": super::fields::table_to_json(&c.client_properties),
    })
}

/// Connections the caller may see: its own, or all for monitoring users.
fn visible(broker: &Broker, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    let all = caller.is("monitoring");
    let mut conns: Vec<(u64, Value)> = broker
        .connections
        .lock()
        .values()
        .filter(|c| all || c.user == caller.name())
        .filter(|c| vhost.is_none_or(|v| v == c.vhost))
        .map(|c| (c.id, row(broker, c)))
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
    Ok(Value::Array(visible(broker, caller, w.vhost.as_deref())))
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
    Ok(Value::Array(all_consumers(broker, caller, w.vhost.as_deref()).iter().map(|(q, c)| consumer_row(broker, q, c)).collect()))
}

/// Channels with consumers, one row each (RabbitMQ's channel fields that Warren tracks).
pub fn channels(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    let mut by_channel: BTreeMap<(u64, u16), (Value, u32, u32)> = BTreeMap::new();
    for (q, c) in all_consumers(broker, caller, w.vhost.as_deref()) {
        let key = (c.channel.conn.id, c.channel.number);
        let e = by_channel.entry(key).or_insert_with(|| {
            let mut d = channel_details(broker, &c);
            d["vhost"] = json!(q.vhost);
            (d, 0, c.channel.global_prefetch.load(Relaxed))
        });
        e.1 += 1;
    }
    let rows = by_channel
        .into_values()
        .map(|(d, consumers, global)| {
            json!({
                "name": d["name"],
                "number": d["number"],
                "node": crate::alarm::NODE_NAME,
                "user": d["user"],
                "vhost": d["vhost"],
                "connection_details": {"name": d["connection_name"], "peer_host": d["peer_host"], "peer_port": d["peer_port"]},
                "consumer_count": consumers,
                "global_prefetch_count": global,
                "state": "running",
                "confirm": false,
                "transactional": false,
            })
        })
        .collect();
    Ok(Value::Array(rows))
}
