//! `/api/parameters`: RabbitMQ's vhost-scoped runtime parameters (`{"value", "vhost",
//! "component", "name"}`), listed (all, per component, per component and vhost), read, set and
//! cleared, for policymakers (RabbitMQ's rule; anyone else gets 401 "User not authorised to
//! access object"). Warren has the two components a RabbitMQ 3.10 node without federation or
//! shovel has: `vhost-limits` (name `limits`, the vhost's limits: see `vhost_limits.rs`) and
//! `operator_policy` (the operator policies, set here as by `/api/operator-policies`). Any other
//! component lists empty and is refused on PUT with RabbitMQ's "component X not found".

use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use crate::broker::limits::{self, LimitScope};
use crate::broker::policy::PolicyKind;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Where {
    component: Option<String>,
    vhost: Option<String>,
    name: Option<String>,
    #[serde(default)]
    body: Value,
}

/// The only name a `vhost-limits` parameter has.
const LIMITS: &str = "limits";

fn require(caller: &Caller) -> Result<(), ApiError> {
    if caller.is("policymaker") { Ok(()) } else { Err(ApiError::access_refused("User not authorised to access object")) }
}

/// The runtime parameters of every vhost, or of one, as RabbitMQ 3.10 lists and exports them:
/// vhost limits (component `vhost-limits`, name `limits`) and operator policies
/// (`operator_policy`), vhosts in name order.
pub fn rows(broker: &Broker, only: Option<&str>) -> Vec<Value> {
    let mut vs = broker.vhosts();
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for v in vs.iter().filter(|v| only.is_none_or(|n| n == v.name)) {
        let limits = v.limits.read().clone();
        if !limits.is_empty() {
            out.push(json!({"value": limits, "vhost": v.name, "component": "vhost-limits", "name": LIMITS}));
        }
        for p in broker.policies(PolicyKind::Operator, &v.name).unwrap_or_default() {
            let row = super::policies::row(&v.name, &p);
            let value = json!({"pattern": row["pattern"], "definition": row["definition"], "priority": row["priority"], "apply-to": row["apply-to"]});
            out.push(json!({"value": value, "vhost": v.name, "component": "operator_policy", "name": row["name"]}));
        }
    }
    out
}

/// The caller's rows, narrowed to `w`'s component, vhost and name.
fn visible(broker: &Broker, caller: &Caller, w: &Where) -> Vec<Value> {
    rows(broker, w.vhost.as_deref())
        .into_iter()
        .filter(|r| w.component.as_ref().is_none_or(|c| r["component"] == **c))
        .filter(|r| w.name.as_ref().is_none_or(|n| r["name"] == **n))
        .filter(|r| caller.sees_vhost(broker, r["vhost"].as_str().unwrap_or("")))
        .collect()
}

/// `GET /api/parameters[/COMPONENT[/VHOST]]`.
pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    require(caller)?;
    let w: Where = args(a)?;
    if let Some(v) = &w.vhost {
        caller.vhost(broker, v)?;
    }
    Ok(Value::Array(visible(broker, caller, &w)))
}

fn target(w: &Where) -> Result<(&str, &str, &str), ApiError> {
    match (&w.component, &w.vhost, &w.name) {
        (Some(c), Some(v), Some(n)) => Ok((c, v, n)),
        _ => Err(ApiError::bad_request("a parameter needs a component, a vhost and a name")),
    }
}

/// `GET /api/parameters/COMPONENT/VHOST/NAME`.
pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    require(caller)?;
    let w: Where = args(a)?;
    let (_, vhost, _) = target(&w)?;
    caller.vhost(broker, vhost)?;
    visible(broker, caller, &w).into_iter().next().ok_or_else(ApiError::not_found)
}

/// RabbitMQ's 400 for a refused parameter value ("Validation failed\n\n…\n", HTML-escaped as
/// its API sends it).
fn invalid(why: &str) -> ApiError {
    let text = if why.starts_with("Validation failed") { why.to_string() } else { format!("Validation failed\n\n{why}\n") };
    ApiError::bad_request(text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"))
}

/// The `value` of a PUT body (RabbitMQ: 400 `[{key_missing,value}]` without one); shared by
/// the other parameter-like resources.
pub fn value_of(body: &Value) -> Result<&Value, ApiError> {
    body.get("value").ok_or_else(|| ApiError::bad_request("[{key_missing,value}]"))
}

/// A vhost a PUT writes into: RabbitMQ's 404 `vhost_not_found` when it does not exist.
pub fn vhost_for_put(broker: &Broker, caller: &Caller, vhost: &str) -> Result<(), ApiError> {
    if broker.vhost(vhost).is_none() {
        return Err(ApiError::new(404, "not_found", "vhost_not_found"));
    }
    caller.vhost(broker, vhost).map(|_| ())
}

/// `PUT /api/parameters/COMPONENT/VHOST/NAME` with `{"value": ...}`: `{"created": bool}`.
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    require(caller)?;
    let w: Where = args(a)?;
    let (component, vhost, name) = target(&w)?;
    if !matches!(component, "vhost-limits" | "operator_policy") {
        return Err(invalid(&format!("component {component} not found")));
    }
    vhost_for_put(broker, caller, vhost)?;
    let value = value_of(&w.body)?;
    let existed = !visible(broker, caller, &w).is_empty();
    match component {
        "vhost-limits" => {
            if name != LIMITS {
                return Err(invalid(&format!("the vhost-limits parameter of a vhost is named '{LIMITS}', not '{name}'")));
            }
            let l = limits::parse(LimitScope::Vhost, &value.to_string()).map_err(|e| invalid(&e.to_string()))?;
            broker.set_vhost_limits(vhost, l)?;
        }
        _ => {
            caller.require("administrator")?;
            super::policies::set(broker, PolicyKind::Operator, vhost, name, value)?;
        }
    }
    Ok(json!({"created": !existed}))
}

/// `DELETE /api/parameters/COMPONENT/VHOST/NAME`: 404 for a parameter that is not set.
pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    require(caller)?;
    let w: Where = args(a)?;
    let (component, vhost, name) = target(&w)?;
    caller.vhost(broker, vhost)?;
    match component {
        "vhost-limits" if name == LIMITS => {
            if !broker.clear_vhost_limits(vhost)? {
                return Err(ApiError::not_found());
            }
        }
        "operator_policy" => {
            caller.require("administrator")?;
            broker.clear_policy(PolicyKind::Operator, vhost, name).map_err(super::policies::refused)?;
        }
        _ => return Err(ApiError::not_found()),
    }
    Ok(Value::Null)
}
