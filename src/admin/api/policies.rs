//! `/api/policies` and `/api/operator-policies`: RabbitMQ's policy objects (`vhost`, `name`,
//! `pattern`, `apply-to`, `definition`, `priority`), listed, read, set and cleared through the
//! same broker calls as `warrenctl set_policy` (validation texts included).

use super::paging::Query;
use super::{ApiError, ApiResult, Caller, args};
use crate::broker::Broker;
use crate::broker::policies::PolicyCommandError;
use crate::broker::policy::{Policy, PolicyKind};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Where {
    kind: Kind,
    vhost: Option<String>,
    name: Option<String>,
    #[serde(default)]
    body: Value,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Kind {
    User,
    Operator,
}

impl Kind {
    fn policy_kind(self) -> PolicyKind {
        match self {
            Kind::User => PolicyKind::User,
            Kind::Operator => PolicyKind::Operator,
        }
    }
    /// RabbitMQ: policies need the policymaker tag, operator policies the administrator tag.
    fn require(self, caller: &Caller) -> Result<(), ApiError> {
        match self {
            Kind::User => caller.require("policymaker"),
            Kind::Operator => caller.require("administrator"),
        }
    }
}

/// One policy as RabbitMQ's API shows it.
pub fn row(vhost: &str, p: &Policy) -> Value {
    let definition: Value = serde_json::from_str(&p.definition_json()).unwrap_or(Value::Null);
    json!({
        "vhost": vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to.as_str(),
        "definition": definition, "priority": p.priority,
    })
}

fn rows(broker: &Broker, caller: &Caller, kind: Kind, only: Option<&str>) -> Vec<Value> {
    let mut vs = broker.vhosts();
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for v in vs.iter().filter(|v| only.is_none_or(|n| n == v.name) && caller.sees_vhost(broker, &v.name)) {
        for p in broker.policies(kind.policy_kind(), &v.name).unwrap_or_default() {
            out.push(row(&v.name, &p));
        }
    }
    out
}

pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    w.kind.require(caller)?;
    if let Some(v) = &w.vhost {
        caller.vhost(broker, v)?;
    }
    Query::of(a)?.values(rows(broker, caller, w.kind, w.vhost.as_deref()), false)
}

fn target(w: &Where) -> Result<(&str, &str), ApiError> {
    match (&w.vhost, &w.name) {
        (Some(v), Some(n)) => Ok((v, n)),
        _ => Err(ApiError::bad_request("a policy needs a vhost and a name")),
    }
}

pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    w.kind.require(caller)?;
    let (vhost, name) = target(&w)?;
    caller.vhost(broker, vhost)?;
    rows(broker, caller, w.kind, Some(vhost)).into_iter().find(|r| r["name"] == name).ok_or_else(ApiError::not_found)
}

/// RabbitMQ's 400 for a refused policy ("Validation failed\n\n…", HTML-escaped as it sends it).
pub(super) fn refused(e: PolicyCommandError) -> ApiError {
    match e {
        PolicyCommandError::NoSuchVhost(_) | PolicyCommandError::NotFound => ApiError::not_found(),
        PolicyCommandError::Invalid(e) => {
            let text = format!("Validation failed\n\n{e}\n").replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            ApiError::bad_request(text)
        }
        PolicyCommandError::Store(s) => ApiError::new(500, "internal_error", s),
    }
}

/// Sets one policy from a RabbitMQ policy object (`pattern`, `definition`, optional `apply-to`
/// and `priority`); also used by the definitions import.
pub fn set(broker: &Broker, kind: PolicyKind, vhost: &str, name: &str, body: &Value) -> Result<(), ApiError> {
    let pattern = body.get("pattern").and_then(|v| v.as_str()).ok_or_else(|| ApiError::bad_request("pattern is missing"))?;
    let definition = match body.get("definition") {
        Some(d @ Value::Object(_)) => d.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ApiError::bad_request("definition is missing")),
    };
    let apply_to = body.get("apply-to").and_then(|v| v.as_str()).unwrap_or("all");
    let priority = match body.get("priority") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| ApiError::bad_request("priority must be an integer"))?,
        Some(Value::String(s)) => s.parse().map_err(|_| ApiError::bad_request("priority must be an integer"))?,
        Some(_) => return Err(ApiError::bad_request("priority must be an integer")),
    };
    broker.set_policy(kind, vhost, name, pattern, apply_to, priority, &definition).map_err(refused)
}

/// Answers `{"created": bool}` (201 for a new policy, 204 for a change, as RabbitMQ).
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    w.kind.require(caller)?;
    let (vhost, name) = target(&w)?;
    caller.vhost(broker, vhost)?;
    let existed = broker.policies(w.kind.policy_kind(), vhost).unwrap_or_default().iter().any(|p| p.name == name);
    set(broker, w.kind.policy_kind(), vhost, name, &w.body)?;
    Ok(json!({"created": !existed}))
}

pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    w.kind.require(caller)?;
    let (vhost, name) = target(&w)?;
    caller.vhost(broker, vhost)?;
    broker.clear_policy(w.kind.policy_kind(), vhost, name).map_err(refused)?;
    Ok(Value::Null)
}
