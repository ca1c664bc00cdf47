//! `/api/topic-permissions[/VHOST/USER[/EXCHANGE]]`, `/api/users/USER/topic-permissions`,
//! `/api/vhosts/VHOST/topic-permissions` (administrator only, as RabbitMQ): rows
//! `{"user","vhost","exchange","write","read"}`.

use super::paging::Query;
use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, Default)]
struct Filter {
    user: Option<String>,
    vhost: Option<String>,
    exchange: Option<String>,
}

/// The rows, all or of one user and/or vhost (404 if that user or vhost does not exist).
pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let f: Filter = args(a)?;
    if f.user.as_ref().is_some_and(|u| broker.user(u).is_none()) || f.vhost.as_ref().is_some_and(|v| broker.vhost(v).is_none()) {
        return Err(ApiError::not_found());
    }
    let rows = broker
        .topic_permissions()
        .into_iter()
        .filter(|r| f.user.as_ref().is_none_or(|u| *u == r.user) && f.vhost.as_ref().is_none_or(|v| *v == r.vhost))
        .map(|r| json!({"user": r.user, "vhost": r.vhost, "exchange": r.exchange, "write": r.write, "read": r.read}))
        .collect();
    Query::of(a)?.values(rows, false)
}

/// `PUT /api/topic-permissions/VHOST/USER` with `{"exchange","write","read"}`: answers
/// `{"created": bool}`, created meaning the user had no topic permission in the vhost before
/// (RabbitMQ: 201, else 204).
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let Some(o) = a.as_object() else { return Err(ApiError::bad_request("not_json")) };
    let missing: Vec<String> =
        ["exchange", "write", "read"].iter().filter(|k| !o.contains_key(**k)).map(|k| format!("{{key_missing,{k}}}")).collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!("[{}]", missing.join(","))));
    }
    let text = |k: &str| o.get(k).and_then(Value::as_str).ok_or_else(|| ApiError::bad_request(format!("{k} must be a string")));
    let (user, vhost, exchange, write, read) = (text("user")?, text("vhost")?, text("exchange")?, text("write")?, text("read")?);
    if broker.user(user).is_none() || broker.vhost(vhost).is_none() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    let created = !broker.has_topic_permissions(vhost, user);
    broker.set_topic_permissions(user, vhost, exchange, write, read)?;
    Ok(json!({"created": created}))
}

/// `DELETE /api/topic-permissions/VHOST/USER[/EXCHANGE]`: all of the user's topic permissions in
/// the vhost, or those of one exchange; 404 when the user has none there.
pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let f: Filter = args(a)?;
    let (Some(user), Some(vhost)) = (f.user, f.vhost) else { return Err(ApiError::bad_request("user and vhost needed")) };
    if broker.user(&user).is_none() || broker.vhost(&vhost).is_none() || !broker.has_topic_permissions(&vhost, &user) {
        return Err(ApiError::not_found());
    }
    broker.clear_topic_permissions(&user, &vhost, f.exchange.as_deref())?;
    Ok(Value::Null)
}
