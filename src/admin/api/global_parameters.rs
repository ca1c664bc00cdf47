//! `/api/global-parameters`: RabbitMQ's global runtime parameters (`{"name", "value"}`),
//! listed, read, set and cleared by policymakers (RabbitMQ's rule). Warren has `cluster_name`
//! and `internal_cluster_id` (`broker/global_parameters.rs`, stored in the store); another name
//! is refused with 400 rather than stored and ignored. `PUT /api/cluster-name` sets
//! `cluster_name` too.

use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Where {
    name: Option<String>,
    #[serde(default)]
    body: Value,
}

fn require(caller: &Caller) -> Result<(), ApiError> {
    if caller.is("policymaker") { Ok(()) } else { Err(ApiError::access_refused("User not authorised to access object")) }
}

fn row(name: &str, value: &Value) -> Value {
    json!({"name": name, "value": value})
}

fn name(w: &Where) -> Result<&str, ApiError> {
    w.name.as_deref().ok_or_else(|| ApiError::bad_request("a global parameter needs a name"))
}

/// `GET /api/global-parameters`: every global parameter, in name order.
pub fn list(broker: &Broker, caller: &Caller) -> ApiResult {
    require(caller)?;
    Ok(Value::Array(broker.global_parameters().iter().map(|(n, v)| row(n, v)).collect()))
}

/// `GET /api/global-parameters/NAME`.
pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    require(caller)?;
    let w: Where = args(a)?;
    let n = name(&w)?;
    broker.global_parameters().iter().find(|(k, _)| k == n).map(|(k, v)| row(k, v)).ok_or_else(ApiError::not_found)
}

/// `PUT /api/global-parameters/NAME` with `{"value": ...}`: `{"created": bool}`.
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    require(caller)?;
    let w: Where = args(a)?;
    let n = name(&w)?;
    let value = super::parameters::value_of(&w.body)?.clone();
    let existed = broker.global_parameters().iter().any(|(k, _)| k == n);
    broker.set_global_parameter(n, value).map_err(|e| ApiError::bad_request(e.0))?;
    Ok(json!({"created": !existed}))
}

/// `GET /api/cluster-name`: `{"name": ...}`.
pub fn cluster_name(broker: &Broker) -> ApiResult {
    Ok(json!({"name": broker.cluster_name()}))
}

/// `PUT /api/cluster-name` with `{"name": ...}` (administrators, as RabbitMQ): sets the
/// `cluster_name` global parameter.
pub fn put_cluster_name(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let w: Where = args(a)?;
    let name = w.body.get("name").ok_or_else(|| ApiError::bad_request("[{key_missing,name}]"))?.clone();
    broker.set_global_parameter("cluster_name", name).map_err(|e| ApiError::bad_request(e.0))?;
    Ok(json!({"created": false}))
}

/// `DELETE /api/global-parameters/NAME`: 404 if it is not set.
pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    require(caller)?;
    let w: Where = args(a)?;
    match broker.clear_global_parameter(name(&w)?) {
        Ok(true) => Ok(Value::Null),
        Ok(false) => Err(ApiError::not_found()),
        Err(e) => Err(ApiError::new(500, "internal_error", e.0)),
    }
}
