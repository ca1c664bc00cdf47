//! `/api/user-limits`: each user's limits (`{"user", "value": {"max-connections": N,
//! "max-channels": N}}`), the same limits as `warrenctl set_user_limits`, enforced by the
//! broker (`broker/limits.rs`). Listed for every management user (as RabbitMQ 3.10); one limit
//! set (`PUT /api/user-limits/USER/NAME {"value": N}`, merged into the user's others) or
//! cleared (`DELETE`) by administrators. A limit Warren does not enforce (RabbitMQ 3.10 has no
//! others for users) is refused with rabbitmqctl's validation text.

use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use crate::broker::limits::{self, LimitScope};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Where {
    user: Option<String>,
    name: Option<String>,
    #[serde(default)]
    body: Value,
}

/// `GET /api/user-limits[/USER]`: users with limits, in name order.
pub fn list(broker: &Broker, _caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    if let Some(u) = &w.user {
        broker.user(u).ok_or_else(ApiError::not_found)?;
    }
    let mut users = broker.users();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let rows = users
        .into_iter()
        .filter(|u| w.user.as_ref().is_none_or(|n| *n == u.name) && !u.limits.is_empty())
        .map(|u| json!({"user": u.name, "value": u.limits}))
        .collect();
    Ok(Value::Array(rows))
}

fn target(w: &Where) -> Result<(&str, &str), ApiError> {
    match (&w.user, &w.name) {
        (Some(u), Some(n)) => Ok((u, n)),
        _ => Err(ApiError::bad_request("a user limit needs a user and a name")),
    }
}

/// `PUT /api/user-limits/USER/NAME` with `{"value": N}` (204, as RabbitMQ).
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let w: Where = args(a)?;
    let (user, name) = target(&w)?;
    let Some(u) = broker.user(user) else {
        // RabbitMQ answers the reason as a JSON array (["no_such_user", USER]).
        return Err(ApiError::bad_request(format!("no_such_user: {user}")));
    };
    let value = super::parameters::value_of(&w.body)?;
    let one = limits::parse(LimitScope::User, &json!({ name: value }).to_string()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut all = u.limits;
    all.extend(one);
    broker.set_user_limits(user, all)?;
    Ok(json!({"created": false}))
}

/// `DELETE /api/user-limits/USER/NAME` (204, also for a limit that is not set).
pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let w: Where = args(a)?;
    let (user, name) = target(&w)?;
    broker.user(user).ok_or_else(ApiError::not_found)?;
    broker.clear_user_limits(user, name)?;
    Ok(Value::Null)
}
