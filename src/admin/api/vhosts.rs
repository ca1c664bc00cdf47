//! `/api/vhosts`: virtual hosts (RabbitMQ's fields; message totals from the queues).

use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;

#[derive(Deserialize)]
struct Name {
    name: String,
}

fn row(broker: &Broker, v: &crate::broker::Vhost) -> Value {
    let (mut ready, mut unacked) = (0u64, 0u64);
    for q in v.queues.read().values() {
        ready += q.counts().0 as u64;
        unacked += q.unacked.load(Relaxed);
    }
    let mut r = json!({
        "name": v.name,
        "description": if v.name == broker.config.auth.default_vhost { "Default virtual host" } else { "" },
        "tags": [],
        "default_queue_type": "undefined",
        "metadata": {"description": "", "tags": []},
        "tracing": false,
        "cluster_state": {crate::alarm::NODE_NAME: "running"},
        "messages": ready + unacked,
        "messages_details": {"rate": 0.0},
        "messages_ready": ready,
        "messages_ready_details": {"rate": 0.0},
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": {"rate": 0.0},
    });
    super::stats::vhost_rates(broker, &v.name, &mut r);
    r
}

pub fn list(broker: &Broker, caller: &Caller) -> ApiResult {
    let mut vs = broker.vhosts();
    vs.retain(|v| caller.sees_vhost(broker, &v.name));
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Value::Array(vs.iter().map(|v| row(broker, v)).collect()))
}

pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let n: Name = args(a)?;
    let v = broker.vhost(&n.name).ok_or_else(ApiError::not_found)?;
    if !caller.sees_vhost(broker, &n.name) {
        return Err(ApiError::access_refused("Access refused."));
    }
    Ok(row(broker, &v))
}

/// Answers `{"created": bool}`; the creator gets full permissions on a new vhost.
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let n: Name = args(a)?;
    let created = broker.create_vhost(&n.name)?;
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
