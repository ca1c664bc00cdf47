//! `POST /api/exchanges/VHOST/NAME/publish` (through the broker's one publish pipeline) and
//! `POST /api/queues/VHOST/NAME/get` (RabbitMQ's ackmode/encoding/truncate).

use super::fields::{json_to_table, table_to_json};
use super::{ApiError, ApiResult, Caller, args};
use crate::auth_backend::{Access, ResourceKind};
use crate::broker::message::Message;
use crate::broker::Broker;
use amq_protocol::protocol::basic::AMQPProperties as BasicProperties;
use amq_protocol::types::ShortString;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

#[derive(Deserialize)]
struct Publish {
    vhost: String,
    /// "amq.default" (or "") is the default exchange.
    name: String,
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    payload: String,
    #[serde(default = "string")]
    payload_encoding: String,
    #[serde(default)]
    properties: Value,
}

fn string() -> String {
    "string".into()
}

fn short(v: &Value, key: &str) -> Result<ShortString, ApiError> {
    match v {
        Value::String(s) if s.len() <= 255 => Ok(s.as_str().into()),
        Value::Number(n) => Ok(n.to_string().into()),
        _ => Err(ApiError::bad_request(format!("invalid property {key}: {v}"))),
    }
}

fn small(v: &Value, key: &str) -> Result<u8, ApiError> {
    v.as_u64().filter(|n| *n <= 255).map(|n| n as u8).ok_or_else(|| ApiError::bad_request(format!("invalid property {key}: {v}")))
}

/// RabbitMQ's `properties` object as AMQP basic properties.
pub fn properties_from_json(v: &Value) -> Result<BasicProperties, ApiError> {
    let mut p = BasicProperties::default();
    let Some(m) = v.as_object() else {
        return if v.is_null() { Ok(p) } else { Err(ApiError::bad_request("properties must be an object")) };
    };
    for (k, v) in m {
        p = match k.as_str() {
            "content_type" => p.with_content_type(short(v, k)?),
            "content_encoding" => p.with_content_encoding(short(v, k)?),
            "headers" => p.with_headers(json_to_table(v).map_err(ApiError::bad_request)?),
            "delivery_mode" => p.with_delivery_mode(small(v, k)?),
            "priority" => p.with_priority(small(v, k)?),
            "correlation_id" => p.with_correlation_id(short(v, k)?),
            "reply_to" => p.with_reply_to(short(v, k)?),
            "expiration" => p.with_expiration(short(v, k)?),
            "message_id" => p.with_message_id(short(v, k)?),
            "timestamp" => p.with_timestamp(v.as_u64().ok_or_else(|| ApiError::bad_request(format!("invalid property timestamp: {v}")))?),
            "type" => p.with_type(short(v, k)?),
            "user_id" => p.with_user_id(short(v, k)?),
            "app_id" => p.with_app_id(short(v, k)?),
            "cluster_id" => p.with_cluster_id(short(v, k)?),
            other => return Err(ApiError::bad_request(format!("unknown property {other}"))),
        };
    }
    Ok(p)
}

/// The set properties as RabbitMQ's management API shows them.
pub fn properties_to_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut s = |k: &str, v: &Option<ShortString>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v.as_str()));
        }
    };
    s("content_type", p.content_type());
    s("content_encoding", p.content_encoding());
    s("correlation_id", p.correlation_id());
    s("reply_to", p.reply_to());
    s("expiration", p.expiration());
    s("message_id", p.message_id());
    s("type", p.kind());
    s("user_id", p.user_id());
    s("app_id", p.app_id());
    s("cluster_id", p.cluster_id());
    if let Some(d) = p.delivery_mode() {
        m.insert("delivery_mode".into(), json!(d));
    }
    if let Some(d) = p.priority() {
        m.insert("priority".into(), json!(d));
    }
    if let Some(t) = p.timestamp() {
        m.insert("timestamp".into(), json!(t));
    }
    if let Some(h) = p.headers() {
        m.insert("headers".into(), table_to_json(h));
    }
    Value::Object(m)
}

/// Answers `{"routed": bool}`.
pub fn publish(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let p: Publish = args(a)?;
    let v = caller.vhost(broker, &p.vhost)?;
    let name = if p.name == "amq.default" { "" } else { p.name.as_str() };
    let exchange = if name.is_empty() { None } else { Some(v.exchange(name).ok_or_else(ApiError::not_found)?) };
    caller.check(&p.vhost, ResourceKind::Exchange, name, Access::Write)?;
    if exchange.as_ref().is_some_and(|x| x.internal) {
        return Err(ApiError::access_refused(format!("cannot publish to internal exchange '{name}' in vhost '{}'", p.vhost)));
    }
    // RabbitMQ publishes through an AMQP channel, whose refusal comes back as a 400.
    if let Some(x) = &exchange {
        caller.check_topic(x, &p.routing_key, Access::Write).map_err(|t| ApiError::bad_request(format!("403 ACCESS_REFUSED - {t}")))?;
    }
    let body = match p.payload_encoding.as_str() {
        "string" => p.payload.into_bytes(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(p.payload.as_bytes())
            .map_err(|_| ApiError::bad_request("payload is not valid base64"))?,
        other => return Err(ApiError::bad_request(format!("payload_encoding {other} is not string or base64"))),
    };
    if body.len() as u64 > broker.config.amqp.max_message_size {
        return Err(ApiError::bad_request(format!(
            "message size {} is larger than configured max size {}",
            body.len(),
            broker.config.amqp.max_message_size
        )));
    }
    let properties = properties_from_json(&p.properties)?;
    if let Some(u) = properties.user_id()
        && u.as_str() != caller.name()
    {
        return Err(ApiError::bad_request(format!("user_id property set to '{}' but authenticated user was '{}'", u, caller.name())));
    }
    let msg = Message {
        exchange: name.into(),
        routing_key: p.routing_key.into(),
        header_raw: crate::protocol::frame::encode_header(body.len() as u64, &properties),
        properties: crate::protocol::Properties::new(properties),
        body: body.into(),
    };
    let out = crate::broker::publish::publish(&v, exchange.as_ref(), std::sync::Arc::new(msg), false, None)?;
    // No client channel counts it: the overview's totals do (as RabbitMQ's, whose management
    // publish goes through a channel of its own).
    use crate::broker::stats::Stat;
    let retired = &broker.retired.channels;
    for r in [retired, &v.closed_channels] {
        r.incr(Stat::Publish);
        if out.routed == 0 {
            r.incr(if out.rejected { Stat::PublishRefused } else { Stat::DropUnroutable });
        }
    }
    Ok(json!({"routed": out.routed > 0}))
}

#[derive(Deserialize)]
struct Get {
    vhost: String,
    name: String,
    count: u32,
    ackmode: String,
    encoding: String,
    truncate: Option<usize>,
}

/// Takes up to `count` messages; `ackmode` `ack_requeue_true`/`reject_requeue_true` put them
/// back (redelivered) afterwards, `ack_requeue_false` drops them and `reject_requeue_false`
/// dead-letters them (reason `rejected`) where the queue has a dead-letter exchange.
pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let g: Get = args(a)?;
    let (v, q) = super::queues::find(broker, caller, &super::queues::Name { vhost: g.vhost.clone(), name: g.name.clone() })?;
    caller.check(&g.vhost, ResourceKind::Queue, &g.name, Access::Read)?;
    let requeue = match g.ackmode.as_str() {
        "ack_requeue_true" | "reject_requeue_true" => true,
        "ack_requeue_false" | "reject_requeue_false" => false,
        other => return Err(ApiError::bad_request(format!("Unknown ackmode: {other}"))),
    };
    if !matches!(g.encoding.as_str(), "auto" | "base64") {
        return Err(ApiError::bad_request(format!("Unknown encoding: {}", g.encoding)));
    }
    if q.exclusive_owner.is_some() {
        return Err(ApiError::bad_request(format!(
            "cannot obtain exclusive access to locked queue '{}' in vhost '{}'",
            q.name, g.vhost
        )));
    }
    let mut taken = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..g.count {
        let Some((ready, left)) = q.get() else { break };
        // Counted as RabbitMQ's management get (a basic.get on a channel of its own).
        use crate::broker::stats::Stat;
        q.stats.incr(Stat::Get);
        broker.retired.channels.incr(Stat::Get);
        v.closed_channels.incr(Stat::Get);
        let m = &ready.msg;
        let body: &[u8] = &m.body;
        let shown = match g.truncate {
            Some(n) if n < body.len() => &body[..n],
            _ => body,
        };
        let (payload, enc) = match (g.encoding.as_str(), std::str::from_utf8(shown)) {
            ("auto", Ok(s)) => (s.to_string(), "string"),
            _ => (base64::engine::general_purpose::STANDARD.encode(shown), "base64"),
        };
        rows.push(json!({
            "payload_bytes": body.len(),
            "redelivered": ready.redelivered,
            "exchange": m.exchange.as_str(),
            "routing_key": m.routing_key.as_str(),
            "message_count": left,
            "properties": properties_to_json(&m.properties),
            "payload": payload,
            "payload_encoding": enc,
        }));
        taken.push(ready);
    }
    if requeue {
        q.requeue(taken.into_iter());
    } else {
        let dead: Vec<Arc<Message>> = if g.ackmode == "reject_requeue_false" { taken.iter().map(|r| r.msg.clone()).collect() } else { Vec::new() };
        for r in &taken {
            q.forget(r.seq);
        }
        if !dead.is_empty() {
            crate::broker::dead_letter::dead_letter(&v, &q, dead, crate::broker::dead_letter::Reason::Rejected);
        }
    }
    Ok(Value::Array(rows))
}
