//! `/api/vhost-limits`: each vhost's limits (`{"vhost", "value": {"max-connections": N,
//! "max-queues": N}}`), the same limits as `warrenctl set_vhost_limits` and the `vhost-limits`
//! runtime parameter, enforced by the broker (`broker/limits.rs`). Listed for the vhosts the
//! caller may see; one limit set (`PUT /api/vhost-limits/VHOST/NAME {"value": N}`, merged into
//! the vhost's others) or cleared (`DELETE`) by administrators. A limit Warren does not enforce
//! (RabbitMQ 3.10 has no others for vhosts) is refused with rabbitmqctl's validation text.

use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use crate::broker::limits::{self, LimitScope};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Where {
    vhost: Option<String>,
    name: Option<String>,
    #[serde(default)]
    body: Value,
}

/// `GET /api/vhost-limits[/VHOST]`: vhosts with limits, in name order.
pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    if let Some(v) = &w.vhost {
        caller.vhost(broker, v)?;
    }
    let mut vs = broker.vhosts();
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    let rows = vs
        .iter()
        .filter(|v| w.vhost.as_ref().is_none_or(|n| *n == v.name) && caller.sees_vhost(broker, &v.name))
        .filter_map(|v| {
            let l = v.limits.read().clone();
            (!l.is_empty()).then(|| json!({"vhost": v.name, "value": l}))
        })
        .collect();
    Ok(Value::Array(rows))
}

fn target(w: &Where) -> Result<(&str, &str), ApiError> {
    match (&w.vhost, &w.name) {
        (Some(v), Some(n)) => Ok((v, n)),
        _ => Err(ApiError::bad_request("a vhost limit needs a vhost and a name")),
    }
}

/// The validation error of a limit, as RabbitMQ's API sends it (HTML-escaped).
fn invalid(e: limits::LimitError) -> ApiError {
    ApiError::bad_request(e.to_string().replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"))
}

/// `PUT /api/vhost-limits/VHOST/NAME` with `{"value": N}` (204, as RabbitMQ).
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let w: Where = args(a)?;
    let (vhost, name) = target(&w)?;
    super::parameters::vhost_for_put(broker, caller, vhost)?;
    let value = super::parameters::value_of(&w.body)?;
    let one = limits::parse(LimitScope::Vhost, &json!({ name: value }).to_string()).map_err(invalid)?;
    let mut all = broker.vhost_limits(vhost).unwrap_or_default();
    all.extend(one);
    broker.set_vhost_limits(vhost, all)?;
    Ok(json!({"created": false}))
}

/// `DELETE /api/vhost-limits/VHOST/NAME` (204, also for a limit that is not set).
pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let w: Where = args(a)?;
    let (vhost, name) = target(&w)?;
    caller.vhost(broker, vhost)?;
    let mut all = broker.vhost_limits(vhost).unwrap_or_default();
    if all.remove(name).is_some() {
        if all.is_empty() {
            broker.clear_vhost_limits(vhost)?;
        } else {
            broker.set_vhost_limits(vhost, all)?;
        }
    }
    Ok(Value::Null)
}
