//! `/api/vhosts`: virtual hosts (RabbitMQ's fields; message totals from the queues).

use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;
use super::paging::{Key, Query};
use super::stats::{self, Kind, Rates};

#[derive(Deserialize)]
struct Name {
    name: String,
}

fn row(rates: &mut Rates, v: &crate::broker::Vhost) -> Value {
    let (mut ready, mut unacked) = (0u64, 0u64);
    let mut totals = crate::broker::stats::Snapshot::default();
    for q in v.queues.read().values() {
        ready += q.counts().0 as u64;
        unacked += q.unacked.load(Relaxed);
        totals.add(&stats::queue_snapshot(q));
    }
    let meta = v.metadata.read().clone();
    let mut r = json!({
        "name": v.name,
        "description": meta.description,
        "tags": meta.tags,
        "default_queue_type": "undefined",
        "metadata": {"description": meta.description, "tags": meta.tags},
        "tracing": false,
        "cluster_state": {crate::alarm::NODE_NAME: "running"},
    });
    let id = stats::id(v);
    let m = r.as_object_mut().expect("object");
    rates.put(m, Kind::Vhost, id, "messages", ready + unacked);
    rates.put(m, Kind::Vhost, id, "messages_ready", ready);
    rates.put(m, Kind::Vhost, id, "messages_unacknowledged", unacked);
    // The totals of its queues (as RabbitMQ's vhost stats, which also sum queue counters).
    let ms = rates.message_stats(Kind::Vhost, id, &totals, &stats::QUEUE_KEYS);
    m.insert("message_stats".into(), ms);
    r
}

/// `GET /api/vhosts`, sorted by name; RabbitMQ's list parameters in `query` (paged; the JSON,
/// which sums the vhost's queues, is built for the rows answered only).
pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let mut vs = broker.vhosts();
    vs.retain(|v| caller.sees_vhost(broker, &v.name));
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rates = Rates::begin();
    let key = |v: &std::sync::Arc<crate::broker::Vhost>, k: &str| (k == "name").then(|| Key::str(&v.name));
    Query::of(a)?.typed(vs, true, |v| v.name.as_str(), key, |v| row(&mut rates, v))
}

pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let n: Name = args(a)?;
    let v = broker.vhost(&n.name).ok_or_else(ApiError::not_found)?;
    if !caller.sees_vhost(broker, &n.name) {
        return Err(ApiError::access_refused("Access refused."));
    }
    Ok(row(&mut Rates::begin(), &v))
}

/// A vhost's metadata in a PUT body or a definitions file: `description`, `tags` (a list or
/// RabbitMQ's comma-separated string), also under `metadata` (3.11+ exports);
/// `default_queue_type` other than classic is refused (Warren declares classic queues by default).
pub fn metadata(o: &Value) -> Result<(Option<String>, Option<Vec<String>>), ApiError> {
    let field = |k: &str| o.get(k).or_else(|| o.get("metadata").and_then(|m| m.get(k)));
    let description = match field("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("description must be a string")),
    };
    let tags = match field("tags") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()),
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|t| t.as_str().map(String::from).ok_or_else(|| ApiError::bad_request("tags must be strings")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("tags must be a list or a comma-separated string")),
    };
    match field("default_queue_type").and_then(|v| v.as_str()) {
        None | Some("classic" | "undefined" | "") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!("default queue type '{other}' is not supported: queues declared without x-queue-type are classic")));
        }
    }
    Ok((description, tags))
}

/// Answers `{"created": bool}`; the creator gets full permissions on a new vhost.
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let n: Name = args(a)?;
    let (description, tags) = metadata(a)?;
    let created = broker.create_vhost(&n.name)?;
    broker.set_vhost_metadata(&n.name, description, tags)?;
    // As RabbitMQ: the user who creates a vhost gets full permissions on it.
    if created && broker.user(caller.name()).is_some() {
        broker.set_permissions(caller.name(), &n.name, ".*", ".*", ".*")?;
    }
    Ok(json!({"created": created}))
}

pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let n: Name = args(a)?;
    broker.delete_vhost(&n.name)?;
    Ok(Value::Null)
}
