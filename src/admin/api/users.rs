//! `/api/users`, `/api/permissions` (administrator only, as RabbitMQ); topic permissions are in
//! `topic_permissions.rs`.

use super::paging::Query;
use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use serde::Deserialize;
use serde_json::{Value, json};

pub const HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

fn row(u: &crate::broker::auth::User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": u.tags,
        "limits": u.limits,
    })
}

pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    Query::of(a)?.values(broker.users().iter().map(row).collect(), false)
}

#[derive(Deserialize)]
struct Name {
    name: String,
}

pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let n: Name = args(a)?;
    broker.user(&n.name).map(|u| row(&u)).ok_or_else(ApiError::not_found)
}

/// RabbitMQ takes tags as a comma-separated string or a list.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Tags {
    Text(String),
    List(Vec<String>),
}

impl Tags {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Tags::Text(t) => t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            Tags::List(l) => l,
        }
    }
}

#[derive(Deserialize)]
struct PutUser {
    name: String,
    password: Option<String>,
    password_hash: Option<String>,
    hashing_algorithm: Option<String>,
    tags: Option<Tags>,
}

/// `PUT /api/users/NAME`: `password` or `password_hash` (empty hash: no password login);
/// answers `{"created": bool}`.
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let p: PutUser = args(a)?;
    if let Some(alg) = &p.hashing_algorithm
        && alg != HASHING_ALGORITHM
    {
        return Err(ApiError::bad_request(format!("hashing algorithm {alg} is not supported (only {HASHING_ALGORITHM})")));
    }
    let hash = match (&p.password, &p.password_hash) {
        (Some(pw), _) => crate::broker::auth::hash_password(pw),
        (None, Some(h)) => h.clone(),
        (None, None) => match broker.user(&p.name) {
            Some(u) => u.password_hash,
            None => return Err(ApiError::bad_request("password_or_password_hash_is_required")),
        },
    };
    let tags = p.tags.map(Tags::into_vec).unwrap_or_default();
    let created = broker.put_user(&p.name, hash, tags)?;
    Ok(json!({"created": created}))
}

pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let n: Name = args(a)?;
    broker.delete_user(&n.name)?;
    Ok(Value::Null)
}

#[derive(Deserialize, Default)]
struct Filter {
    user: Option<String>,
    vhost: Option<String>,
}

/// `GET /api/permissions[/VHOST/USER]`, `/api/users/USER/permissions`,
/// `/api/vhosts/VHOST/permissions`.
pub fn permissions(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let f: Filter = args(a)?;
    if let Some(u) = &f.user
        && broker.user(u).is_none()
    {
        return Err(ApiError::not_found());
    }
    if let Some(v) = &f.vhost
        && broker.vhost(v).is_none()
    {
        return Err(ApiError::not_found());
    }
    let rows = broker
        .permissions()
        .into_iter()
        .filter(|(v, u, _)| f.user.as_ref().is_none_or(|x| x == u) && f.vhost.as_ref().is_none_or(|x| x == v))
        .map(|(v, u, p)| json!({"user": u, "vhost": v, "configure": p.patterns[0], "write": p.patterns[1], "read": p.patterns[2]}))
        .collect();
    Query::of(a)?.values(rows, false)
}

#[derive(Deserialize)]
struct PutPermission {
    user: String,
    vhost: String,
    configure: String,
    write: String,
    read: String,
}

/// Answers `{"created": bool}`.
pub fn put_permission(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let p: PutPermission = args(a)?;
    if broker.user(&p.user).is_none() || broker.vhost(&p.vhost).is_none() {
        return Err(ApiError::not_found());
    }
    let created = broker.permission(&p.vhost, &p.user).is_none();
    broker.set_permissions(&p.user, &p.vhost, &p.configure, &p.write, &p.read)?;
    Ok(json!({"created": created}))
}

pub fn delete_permission(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let f: Filter = args(a)?;
    let (Some(user), Some(vhost)) = (f.user, f.vhost) else { return Err(ApiError::bad_request("user and vhost needed")) };
    if broker.permission(&vhost, &user).is_none() {
        return Err(ApiError::not_found());
    }
    broker.clear_permissions(&user, &vhost)?;
    Ok(Value::Null)
}
