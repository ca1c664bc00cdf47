//! `/api/queues`: list, show, declare, delete, purge (RabbitMQ's fields).

use super::fields::{json_to_table, table_to_json};
use super::{ApiError, ApiResult, Caller, args};
use crate::auth_backend::{Access, ResourceKind};
use crate::broker::queue::Queue;
use crate::broker::{Broker, QueueDecl};
use serde::Deserialize;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::sync::atomic::Ordering::Relaxed;
use super::paging::{Key, Query};
use super::stats::{self, Kind, Rates};

/// One queue as `GET /api/queues` shows it (rates from `rates`, locked once per answer).
pub fn row(rates: &mut Rates, q: &Queue) -> Value {
    let (ready, consumers) = q.counts();
    let unacked = q.unacked.load(Relaxed);
    let applied = q.applied_policy();
    let ready = ready as u64;
    let mut r = json!({
        "name": q.name,
        "vhost": q.vhost,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive_owner.is_some(),
        "arguments": table_to_json(&q.arguments),
        "node": crate::alarm::NODE_NAME,
        "type": if q.is_quorum() { "quorum" } else { "classic" },
        "state": "running",
        "consumers": consumers,
        "consumer_capacity": if consumers > 0 { 1.0 } else { 0.0 },
        "consumer_utilisation": if consumers > 0 { 1.0 } else { 0.0 },
        "exclusive_consumer_tag": Value::Null,
        "single_active_consumer_tag": Value::Null,
        "policy": applied.policy,
        "operator_policy": applied.operator_policy,
        "effective_policy_definition": applied.definition,
        "head_message_timestamp": Value::Null,
    });
    let id = stats::id(q);
    let m = r.as_object_mut().expect("object");
    rates.put(m, Kind::Queue, id, "messages", ready + unacked);
    rates.put(m, Kind::Queue, id, "messages_ready", ready);
    rates.put(m, Kind::Queue, id, "messages_unacknowledged", unacked);
    let ms = rates.message_stats(Kind::Queue, id, &stats::queue_snapshot(q), &stats::QUEUE_KEYS);
    m.insert("message_stats".into(), ms);
    r
}

#[derive(Deserialize, Default)]
struct Where {
    vhost: Option<String>,
}

/// A sort key a queue answers without building its row: RabbitMQ's basic columns, the message
/// and consumer counts, and its `message_stats` counters and rates (`message_stats.publish`,
/// `message_stats.ack_details.rate`, ...), which are cheap here.
fn key(rates: &RefCell<Rates>, q: &Queue, k: &str) -> Option<Key> {
    Some(match k {
        "name" => Key::str(&q.name),
        "vhost" => Key::str(&q.vhost),
        "durable" => Key::bool(q.durable),
        "auto_delete" => Key::bool(q.auto_delete),
        "exclusive" => Key::bool(q.exclusive_owner.is_some()),
        "node" => Key::str(crate::alarm::NODE_NAME),
        "type" => Key::str(if q.is_quorum() { "quorum" } else { "classic" }),
        "state" => Key::str("running"),
        "messages" => Key::num((q.counts().0 as u64 + q.unacked.load(Relaxed)) as f64),
        "messages_ready" => Key::num(q.counts().0 as f64),
        "messages_unacknowledged" => Key::num(q.unacked.load(Relaxed) as f64),
        "consumers" => Key::num(q.counts().1 as f64),
        _ => {
            let rest = k.strip_prefix("message_stats.")?;
            let (name, rate) = rest.strip_suffix("_details.rate").map_or((rest, false), |n| (n, true));
            let stat = *stats::QUEUE_KEYS.iter().find(|s| s.name() == name)?;
            let value = stats::queue_snapshot(q).get(stat);
            if rate {
                Key::num(rates.borrow_mut().rate(Kind::Queue, stats::id(q), stat.name(), value as i64))
            } else {
                Key::num(value as f64)
            }
        }
    })
}

/// `GET /api/queues[/VHOST]`, sorted by vhost and name; RabbitMQ's list parameters in `query`
/// (paging, filtering and sorting happen on the queues, the JSON is built for the page only).
pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    let query = Query::of(a)?;
    let vhosts = match &w.vhost {
        Some(v) => vec![caller.vhost(broker, v)?],
        None => broker.vhosts().into_iter().filter(|v| caller.sees_vhost(broker, &v.name)).collect(),
    };
    let mut qs: Vec<_> = vhosts.iter().flat_map(|v| v.queues.read().values().cloned().collect::<Vec<_>>()).collect();
    qs.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    let rates = RefCell::new(Rates::begin());
    query.typed(qs, true, |q| q.name.as_str(), |q, k| key(&rates, q, k), |q| row(&mut rates.borrow_mut(), q))
}

#[derive(Deserialize)]
pub(super) struct Name {
    pub vhost: String,
    pub name: String,
}

pub(super) fn find(broker: &Broker, caller: &Caller, n: &Name) -> Result<(std::sync::Arc<crate::broker::Vhost>, std::sync::Arc<Queue>), ApiError> {
    let v = caller.vhost(broker, &n.vhost)?;
    let q = v.queue(&n.name).ok_or_else(ApiError::not_found)?;
    Ok((v, q))
}

pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let n: Name = args(a)?;
    let (_, q) = find(broker, caller, &n)?;
    let mut r = row(&mut Rates::begin(), &q);
    let consumers: Vec<Value> = q.inner.lock().consumers.iter().map(|c| super::connections::consumer_row(broker, &q, c)).collect();
    r["consumer_details"] = Value::Array(consumers);
    r["incoming"] = json!([]);
    r["deliveries"] = json!([]);
    Ok(r)
}

#[derive(Deserialize)]
struct Put {
    vhost: String,
    name: String,
    #[serde(default)]
    durable: Option<bool>,
    #[serde(default)]
    auto_delete: Option<bool>,
    #[serde(default)]
    arguments: Value,
    /// Only "classic" is supported (RabbitMQ's `x-queue-type` in the body).
    #[serde(default)]
    #[allow(dead_code)]
    node: Option<String>,
}

/// `PUT /api/queues/VHOST/NAME`: declares (or checks the equivalence of) a queue; answers
/// `{"created": bool}`.
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let p: Put = args(a)?;
    let v = caller.vhost(broker, &p.vhost)?;
    caller.check(&p.vhost, ResourceKind::Queue, &p.name, Access::Configure)?;
    if p.name.is_empty() {
        return Err(ApiError::bad_request("queue name is required"));
    }
    let arguments = json_to_table(&p.arguments).map_err(ApiError::bad_request)?;
    let existed = v.queue(&p.name).is_some();
    let d = QueueDecl {
        name: &p.name,
        passive: false,
        durable: p.durable.unwrap_or(false),
        exclusive: false,
        auto_delete: p.auto_delete.unwrap_or(false),
        arguments: &arguments,
        owner: 0,
        server_named: false,
    };
    v.declare_queue(&d)?;
    Ok(json!({"created": !existed}))
}

#[derive(Deserialize)]
struct Delete {
    vhost: String,
    name: String,
    #[serde(default)]
    if_unused: bool,
    #[serde(default)]
    if_empty: bool,
}

pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let d: Delete = args(a)?;
    let (v, q) = find(broker, caller, &Name { vhost: d.vhost.clone(), name: d.name.clone() })?;
    caller.check(&d.vhost, ResourceKind::Queue, &d.name, Access::Configure)?;
    v.delete_queue(&q, d.if_unused, d.if_empty)?;
    Ok(Value::Null)
}

pub fn purge(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let n: Name = args(a)?;
    let (_, q) = find(broker, caller, &n)?;
    caller.check(&n.vhost, ResourceKind::Queue, &n.name, Access::Read)?;
    Ok(json!({"purged": q.purge()}))
}
