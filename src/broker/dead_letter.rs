//! Dead-lettering (`x-dead-letter-exchange`, `x-dead-letter-routing-key`): a message rejected
//! without requeue, expired, or dropped by a length limit is republished to the queue's
//! dead-letter exchange through the broker's publish pipeline, with RabbitMQ 3.10's headers:
//!
//! - `x-death`: an array of tables, newest first, one per (queue, reason), each with `count`
//!   (long), `reason`, `queue`, `time` (timestamp, seconds), `exchange`, `routing-keys` (array)
//!   and `original-expiration` (when the message had an `expiration`, which is removed);
//!   a repeated (queue, reason) increments its `count` and moves to the front;
//! - `x-first-death-reason`, `x-first-death-queue`, `x-first-death-exchange`: set once.
//!
//! A message is not dead-lettered into a queue already in its `x-death` unless a client
//! rejection is part of that cycle (RabbitMQ's `rabbit_dead_letter:is_cycle`): such a copy is
//! dropped with a warning.

use super::Vhost;
use super::message::Message;
use super::queue::Queue;
use crate::protocol::{ShortStr, frame};
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use std::sync::Arc;

/// Why a message is dead-lettered (the `reason` in `x-death`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// Republishes `msgs`, taken off `queue` for `reason`, to the queue's dead-letter exchange (a
/// queue without one drops them). A dead-letter exchange that does not exist drops them too,
/// as in RabbitMQ.
pub fn dead_letter(vhost: &Vhost, queue: &Queue, msgs: impl IntoIterator<Item = Arc<Message>>, reason: Reason) {
    let args = queue.args();
    let Some(dlx) = args.dead_letter_exchange.as_deref() else { return };
    let exchange = if dlx.is_empty() {
        None
    } else {
        match vhost.exchange(dlx) {
            Some(x) => Some(x),
            None => {
                tracing::warn!(queue = %queue.name, vhost = %vhost.name, "dead-letter exchange '{dlx}' does not exist: messages dropped");
                return;
            }
        }
    };
    for msg in msgs {
        // As RabbitMQ: the original CC keys route the copy too unless a dead-letter routing key
        // is set; CC/BCC headers do not follow it.
        let (cc, _) = super::publish::cc_keys(&msg);
        let extra: &[String] = if queue.args().dead_letter_routing_key.is_some() { &[] } else { &cc };
        let dead = dead_lettered(&msg, queue, reason, &cc);
        let deaths = death_queues(&dead);
        let cycle = |q: &Queue| {
            let c = reason != Reason::Rejected && is_cycle(&q.name, &deaths);
            if c {
                tracing::warn!(queue = %queue.name, vhost = %vhost.name, "message dropped: dead-letter cycle through queue '{}'", q.name);
            }
            c
        };
        if let Err(e) = super::publish::publish_dead_letter(vhost, exchange.as_ref(), dead, extra, &cycle) {
            tracing::warn!(queue = %queue.name, vhost = %vhost.name, "dead-lettering failed: {}", e.text);
        }
    }
}

/// (queue, reason) of each `x-death` entry, newest first.
fn death_queues(msg: &Message) -> Vec<(String, String)> {
    let Some(AMQPValue::FieldArray(a)) = msg.properties.headers().as_ref().and_then(|h| h.inner().get("x-death")) else {
        return Vec::new();
    };
    a.as_slice()
        .iter()
        .filter_map(|d| match d {
            AMQPValue::FieldTable(t) => Some((text(t, "queue").unwrap_or_default(), text(t, "reason").unwrap_or_default())),
            _ => None,
        })
        .collect()
}

/// RabbitMQ's cycle rule: `queue` appears in `x-death` and no entry up to it is "rejected".
fn is_cycle(queue: &str, deaths: &[(String, String)]) -> bool {
    let Some(i) = deaths.iter().position(|(q, _)| q == queue) else { return false };
    deaths[..=i].iter().all(|(_, r)| r != "rejected")
}

fn text(t: &FieldTable, k: &str) -> Option<String> {
    t.inner().get(k).and_then(super::queue_args::as_str)
}

/// The dead-lettered copy of `msg`: to the dead-letter exchange, with the dead-letter routing
/// key (or the original one), `x-death` updated and `expiration` removed.
fn dead_lettered(msg: &Message, queue: &Queue, reason: Reason, cc: &[String]) -> Message {
    let p = &msg.properties;
    let mut headers = FieldTable::default();
    for (k, v) in p.headers().as_ref().map(|h| h.inner().iter()).into_iter().flatten() {
        if k.as_str() != "CC" && k.as_str() != "BCC" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = deaths.iter().position(|d| {
        matches!(d, AMQPValue::FieldTable(t)
            if text(t, "queue").as_deref() == Some(queue.name.as_str()) && text(t, "reason").as_deref() == Some(reason.as_str()))
    });
    let entry = match same.map(|i| deaths.remove(i)) {
        Some(AMQPValue::FieldTable(mut t)) => {
            let n = match t.inner().get("count") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                _ => 0,
            };
            t.insert("count".into(), AMQPValue::LongLongInt(n + 1));
            t
        }
        _ => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), AMQPValue::LongString(reason.as_str().into()));
            t.insert("queue".into(), AMQPValue::LongString(queue.name.as_str().into()));
            t.insert("time".into(), AMQPValue::Timestamp(super::ttl::now_ms() / 1000));
            t.insert("exchange".into(), AMQPValue::LongString(msg.exchange.as_str().into()));
            let keys: Vec<AMQPValue> =
                std::iter::once(msg.routing_key.as_str()).chain(cc.iter().map(String::as_str)).map(|k| AMQPValue::LongString(k.into())).collect();
            t.insert("routing-keys".into(), AMQPValue::FieldArray(FieldArray::from(keys)));
            if let Some(e) = p.expiration() {
                t.insert("original-expiration".into(), AMQPValue::LongString(e.as_str().into()));
            }
            t
        }
    };
    deaths.insert(0, AMQPValue::FieldTable(entry));
    headers.insert("x-death".into(), AMQPValue::FieldArray(deaths.into()));
    if !headers.inner().contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), AMQPValue::LongString(reason.as_str().into()));
        headers.insert("x-first-death-queue".into(), AMQPValue::LongString(queue.name.as_str().into()));
        headers.insert("x-first-death-exchange".into(), AMQPValue::LongString(LongString::from(msg.exchange.as_str())));
    }
    let properties = without_expiration(p).with_headers(headers);
    let routing_key = queue.args().dead_letter_routing_key.as_deref().map_or_else(|| msg.routing_key.clone(), ShortStr::from);
    Message {
        exchange: queue.args().dead_letter_exchange.as_deref().unwrap_or_default().into(),
        routing_key,
        header_raw: frame::encode_header(msg.body.len() as u64, &properties),
        properties: crate::protocol::Properties::new(properties),
        body: msg.body.clone(),
    }
}

/// `p` without its `expiration` (the generated type has setters only).
fn without_expiration(p: &AMQPProperties) -> AMQPProperties {
    let mut n = AMQPProperties::default();
    if let Some(v) = p.content_type() {
        n = n.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        n = n.with_content_encoding(v.clone());
    }
    if let Some(v) = p.headers() {
        n = n.with_headers(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        n = n.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        n = n.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        n = n.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        n = n.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        n = n.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        n = n.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        n = n.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        n = n.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        n = n.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        n = n.with_cluster_id(v.clone());
    }
    n
}
