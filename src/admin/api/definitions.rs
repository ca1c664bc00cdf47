//! `GET/POST /api/definitions[/VHOST]`: RabbitMQ's definitions JSON (users, vhosts,
//! permissions, policies, parameters, global parameters, exchanges, queues, bindings), exported
//! and imported. A file exported from RabbitMQ 3.10 imports as long as it uses what Warren has:
//! runtime parameters of the components `vhost-limits` and `operator_policy` (as RabbitMQ
//! exports them), the global parameters `cluster_name` and `internal_cluster_id`; any other
//! component (federation, shovel, ...) is refused with RabbitMQ's "component ... not found",
//! and topic permissions are imported too. Nothing is changed when a refusal is found:
//! parameters are checked before anything is imported.

use super::fields::{json_to_table, table_to_json};
use super::{ApiError, ApiResult, Caller, args};
use crate::broker::exchange::Destination;
use crate::broker::policy::PolicyKind;
use crate::broker::{Broker, ExchangeDecl, QueueDecl};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

#[derive(Deserialize, Default)]
struct Where {
    vhost: Option<String>,
    #[serde(default)]
    body: Value,
}

fn objects(broker: &Broker, only: Option<&str>) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let (mut queues, mut exchanges, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    let mut vs = broker.vhosts();
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    for v in vs.iter().filter(|v| only.is_none_or(|n| n == v.name)) {
        let tag = |mut o: Value| {
            if only.is_none() {
                o["vhost"] = json!(v.name);
            }
            o
        };
        let mut qs: Vec<_> = v.queues.read().values().cloned().collect();
        qs.sort_by(|a, b| a.name.cmp(&b.name));
        for q in qs.iter().filter(|q| q.exclusive_owner.is_none()) {
            queues.push(tag(json!({"name": q.name, "durable": q.durable, "auto_delete": q.auto_delete, "arguments": table_to_json(&q.arguments)})));
        }
        let mut xs: Vec<_> = v.exchanges.read().values().cloned().collect();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        for x in &xs {
            if !x.name.starts_with("amq.") {
                exchanges.push(tag(json!({
                    "name": x.name, "type": x.kind, "durable": x.durable, "auto_delete": x.auto_delete,
                    "internal": x.internal, "arguments": table_to_json(&x.arguments),
                })));
            }
            for b in x.bindings() {
                if matches!(&b.destination, Destination::Queue(q) if q.exclusive_owner.is_some()) {
                    continue;
                }
                bindings.push(tag(json!({
                    "source": x.name, "destination": b.destination.name(), "destination_type": b.destination.kind(),
                    "routing_key": b.key, "arguments": table_to_json(&b.arguments),
                })));
            }
        }
    }
    (queues, exchanges, bindings)
}

pub fn export(broker: &Arc<Broker>, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let w: Where = args(a)?;
    document(broker, w.vhost.as_deref())
}

/// The definitions document of the whole broker, or of vhost `only` (`warrenctl
/// export_definitions` and `GET /api/definitions[/VHOST]`).
pub fn document(broker: &Arc<Broker>, only: Option<&str>) -> ApiResult {
    let version = env!("CARGO_PKG_VERSION");
    if let Some(v) = only {
        broker.vhost(v).ok_or_else(ApiError::not_found)?;
        let (queues, exchanges, bindings) = objects(broker, Some(v));
        let policies: Vec<Value> = policies(broker, Some(v))
            .into_iter()
            .map(|mut p| {
                p.as_object_mut().map(|o| o.remove("vhost"));
                p
            })
            .collect();
        let parameters: Vec<Value> = super::parameters::rows(broker, Some(v))
            .into_iter()
            .map(|mut p| {
                p.as_object_mut().map(|o| o.remove("vhost"));
                p
            })
            .collect();
        return Ok(json!({"rabbit_version": "3.10.8", "parameters": parameters, "policies": policies, "queues": queues, "exchanges": exchanges, "bindings": bindings}));
    }
    let users: Vec<Value> = broker
        .users()
        .iter()
        .map(|u| json!({"name": u.name, "password_hash": u.password_hash, "hashing_algorithm": super::users::HASHING_ALGORITHM, "tags": u.tags, "limits": u.limits}))
        .collect();
    let mut vhosts: Vec<Value> = broker
        .vhosts()
        .iter()
        .map(|v| {
            let m = v.metadata.read().clone();
            json!({"name": v.name, "description": m.description, "tags": m.tags, "metadata": {"description": m.description, "tags": m.tags}})
        })
        .collect();
    vhosts.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let permissions: Vec<Value> = broker
        .permissions()
        .into_iter()
        .map(|(v, u, p)| json!({"user": u, "vhost": v, "configure": p.patterns[0], "write": p.patterns[1], "read": p.patterns[2]}))
        .collect();
    let (queues, exchanges, bindings) = objects(broker, None);
    Ok(json!({
        "rabbit_version": "3.10.8",
        "rabbitmq_version": "3.10.8",
        "product_name": "Warren",
        "product_version": version,
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": broker
            .topic_permissions()
            .into_iter()
            .map(|r| json!({"user": r.user, "vhost": r.vhost, "exchange": r.exchange, "write": r.write, "read": r.read}))
            .collect::<Vec<_>>(),
        "parameters": super::parameters::rows(broker, None),
        "global_parameters": broker.global_parameters().into_iter().map(|(name, value)| json!({"name": name, "value": value})).collect::<Vec<_>>(),
        "policies": policies(broker, None),
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }))
}

/// The (user) policies of every vhost, or of one, as RabbitMQ exports them.
fn policies(broker: &Broker, only: Option<&str>) -> Vec<Value> {
    let mut vs = broker.vhosts();
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for v in vs.iter().filter(|v| only.is_none_or(|n| n == v.name)) {
        for p in broker.policies(PolicyKind::User, &v.name).unwrap_or_default() {
            out.push(super::policies::row(&v.name, &p));
        }
    }
    out
}

/// RabbitMQ's refusal of a parameter: 400 "Validation failed\n\n{why}\n (VHOST/COMPONENT/NAME)".
fn parameter_refused(vhost: &str, p: &Value, why: &str) -> ApiError {
    ApiError::bad_request(format!("Validation failed\n\n{why}\n ({vhost}/{}/{})", s(p, "component"), s(p, "name")))
}

/// Checks the parameters and global parameters of a document before anything is imported.
fn check_parameters(d: &Map<String, Value>, vhost_of: &dyn Fn(&Value) -> String) -> Result<(), ApiError> {
    for p in list(d, "parameters") {
        let vhost = vhost_of(p);
        match s(p, "component") {
            "vhost-limits" => {
                crate::broker::limits::parse(crate::broker::limits::LimitScope::Vhost, &p.get("value").cloned().unwrap_or(Value::Null).to_string())
                    .map_err(|e| parameter_refused(&vhost, p, &e.to_string()))?;
            }
            "operator_policy" => {}
            other => return Err(parameter_refused(&vhost, p, &format!("component {other} not found"))),
        }
    }
    for g in list(d, "global_parameters") {
        let name = s(g, "name");
        if !crate::broker::global_parameters::KNOWN.contains(&name) {
            return Err(ApiError::bad_request(format!("global parameter '{name}' is not supported by this broker (supported: {})", crate::broker::global_parameters::KNOWN.join(", "))));
        }
        if !g.get("value").is_some_and(|v| v.is_string()) {
            return Err(ApiError::bad_request(format!("global parameter '{name}': the value should be a string")));
        }
    }
    Ok(())
}

fn list<'a>(d: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    d.get(key).and_then(|v| v.as_array()).map(|v| v.as_slice()).unwrap_or(&[])
}

fn s<'a>(o: &'a Value, key: &str) -> &'a str {
    o.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

fn b(o: &Value, key: &str, default: bool) -> bool {
    o.get(key).and_then(|v| v.as_bool()).unwrap_or(default)
}

/// Imports a definitions document (whole, or for one vhost: objects without `vhost`).
pub fn import(broker: &Arc<Broker>, caller: &Caller, a: &Value) -> ApiResult {
    caller.require("administrator")?;
    let w: Where = args(a)?;
    import_document(broker, w.vhost.as_deref(), &w.body)
}

/// Imports definitions document `body`: the whole broker's, or (with `only`) one vhost's
/// (`warrenctl import_definitions` and `POST /api/definitions[/VHOST]`).
pub fn import_document(broker: &Arc<Broker>, only: Option<&str>, body: &Value) -> ApiResult {
    let Some(d) = body.as_object() else { return Err(ApiError::bad_request("definitions must be a JSON object")) };
    let vhost_of = |o: &Value| -> String { only.map(str::to_string).unwrap_or_else(|| s(o, "vhost").to_string()) };
    check_parameters(d, &vhost_of)?;
    if let Some(v) = only {
        broker.vhost(v).ok_or_else(ApiError::not_found)?;
    }
    for u in list(d, "users") {
        if let Some(alg) = u.get("hashing_algorithm").and_then(|v| v.as_str())
            && alg != super::users::HASHING_ALGORITHM
        {
            return Err(ApiError::bad_request(format!("user '{}': hashing algorithm {alg} is not supported", s(u, "name"))));
        }
        let tags = match u.get("tags") {
            Some(t) => serde_json::from_value::<super::users::Tags>(t.clone()).map(|t| t.into_vec()).unwrap_or_default(),
            None => Vec::new(),
        };
        broker.put_user(s(u, "name"), s(u, "password_hash").to_string(), tags)?;
    }
    for v in list(d, "vhosts") {
        let (description, tags) = super::vhosts::metadata(v)?;
        broker.create_vhost(s(v, "name"))?;
        broker.set_vhost_metadata(s(v, "name"), description, tags)?;
    }
    for p in list(d, "permissions") {
        broker.set_permissions(s(p, "user"), s(p, "vhost"), s(p, "configure"), s(p, "write"), s(p, "read"))?;
    }
    for p in list(d, "topic_permissions") {
        broker.set_topic_permissions(s(p, "user"), s(p, "vhost"), s(p, "exchange"), s(p, "write"), s(p, "read"))?;
    }
    let vhost = |o: &Value| broker.vhost(&vhost_of(o)).ok_or_else(|| ApiError::bad_request(format!("vhost '{}' does not exist", vhost_of(o))));
    for g in list(d, "global_parameters") {
        broker.set_global_parameter(s(g, "name"), g["value"].clone()).map_err(|e| ApiError::bad_request(e.0))?;
    }
    // Policies and parameters before queues and exchanges, so those are declared under them.
    for p in list(d, "policies") {
        vhost(p)?;
        super::policies::set(broker, PolicyKind::User, &vhost_of(p), s(p, "name"), p)?;
    }
    for p in list(d, "parameters") {
        vhost(p)?;
        let value = p.get("value").cloned().unwrap_or(Value::Null);
        match s(p, "component") {
            "vhost-limits" => {
                let limits = crate::broker::limits::parse(crate::broker::limits::LimitScope::Vhost, &value.to_string())
                    .map_err(|e| parameter_refused(&vhost_of(p), p, &e.to_string()))?;
                broker.set_vhost_limits(&vhost_of(p), limits)?;
            }
            _ => super::policies::set(broker, PolicyKind::Operator, &vhost_of(p), s(p, "name"), &value)?,
        }
    }
    for x in list(d, "exchanges") {
        let v = vhost(x)?;
        let args = json_to_table(x.get("arguments").unwrap_or(&Value::Null)).map_err(ApiError::bad_request)?;
        let d = ExchangeDecl {
            name: s(x, "name"),
            kind: s(x, "type"),
            passive: false,
            durable: b(x, "durable", true),
            auto_delete: b(x, "auto_delete", false),
            internal: b(x, "internal", false),
            arguments: &args,
        };
        v.declare_exchange(broker, &d)?;
    }
    for q in list(d, "queues") {
        let v = vhost(q)?;
        let args = json_to_table(q.get("arguments").unwrap_or(&Value::Null)).map_err(ApiError::bad_request)?;
        let d = QueueDecl {
            name: s(q, "name"),
            passive: false,
            durable: b(q, "durable", true),
            exclusive: false,
            auto_delete: b(q, "auto_delete", false),
            arguments: &args,
            owner: 0,
            server_named: false,
        };
        v.declare_queue(&d)?;
    }
    for bd in list(d, "bindings") {
        let v = vhost(bd)?;
        let source = v.exchange(s(bd, "source")).ok_or_else(|| ApiError::bad_request(format!("no exchange '{}'", s(bd, "source"))))?;
        let dest = match s(bd, "destination_type") {
            "queue" => v.queue(s(bd, "destination")).map(Destination::Queue),
            _ => v.exchange(s(bd, "destination")).map(Destination::Exchange),
        }
        .ok_or_else(|| ApiError::bad_request(format!("no destination '{}'", s(bd, "destination"))))?;
        let args = json_to_table(bd.get("arguments").unwrap_or(&Value::Null)).map_err(ApiError::bad_request)?;
        v.bind(&source, dest, s(bd, "routing_key"), &args)?;
    }
    Ok(Value::Null)
}
