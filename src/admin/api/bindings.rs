//! `/api/bindings` in all its forms: every binding of a vhost (the default exchange's implicit
//! ones included, as RabbitMQ lists them), filtered by source and/or destination; add, show and
//! delete by `properties_key`.

use super::fields::{json_to_table, properties_key, table_to_json};
use super::paging::Query;
use super::{ApiError, ApiResult, Caller, args};
use crate::auth_backend::{Access, ResourceKind};
use crate::broker::exchange::Destination;
use crate::broker::{Broker, Vhost};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

fn row(vhost: &str, source: &str, dest: &str, dest_type: &str, key: &str, args: &amq_protocol::types::FieldTable) -> Value {
    json!({
        "source": source,
        "vhost": vhost,
        "destination": dest,
        "destination_type": dest_type,
        "routing_key": key,
        "arguments": table_to_json(args),
        "properties_key": properties_key(key, args),
    })
}

fn all(v: &Vhost) -> Vec<Value> {
    let mut out = Vec::new();
    let mut qs: Vec<String> = v.queues.read().keys().cloned().collect();
    qs.sort();
    let empty = amq_protocol::types::FieldTable::default();
    for q in qs {
        out.push(row(&v.name, "", &q, "queue", &q, &empty));
    }
    let mut xs: Vec<_> = v.exchanges.read().values().cloned().collect();
    xs.sort_by(|a, b| a.name.cmp(&b.name));
    for x in xs {
        for b in x.bindings() {
            out.push(row(&v.name, &x.name, b.destination.name(), b.destination.kind(), &b.key, &b.arguments));
        }
    }
    out
}

#[derive(Deserialize, Default)]
struct Filter {
    vhost: Option<String>,
    source: Option<String>,
    destination: Option<String>,
    /// "queue" or "exchange"
    destination_type: Option<String>,
}

pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let f: Filter = args(a)?;
    let vhosts = match &f.vhost {
        Some(v) => {
            let vh = caller.vhost(broker, v)?;
            if let Some(s) = &f.source
                && !s.is_empty()
                && vh.exchange(s).is_none()
            {
                return Err(ApiError::not_found());
            }
            if let (Some(d), Some(t)) = (&f.destination, &f.destination_type) {
                let exists = if t == "queue" { vh.queue(d).is_some() } else { vh.exchange(d).is_some() };
                if !exists {
                    return Err(ApiError::not_found());
                }
            }
            vec![vh]
        }
        None => {
            let mut v: Vec<_> = broker.vhosts().into_iter().filter(|v| caller.sees_vhost(broker, &v.name)).collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        }
    };
    let rows = vhosts
        .iter()
        .flat_map(|v| all(v))
        .filter(|r| f.source.as_ref().is_none_or(|s| r["source"] == *s))
        .filter(|r| f.destination.as_ref().is_none_or(|s| r["destination"] == *s))
        .filter(|r| f.destination_type.as_ref().is_none_or(|s| r["destination_type"] == *s))
        .collect();
    Query::of(a)?.values(rows, false)
}

#[derive(Deserialize)]
struct One {
    vhost: String,
    source: String,
    destination: String,
    destination_type: String,
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: Value,
    properties_key: Option<String>,
}

fn endpoints(broker: &Broker, caller: &Caller, o: &One) -> Result<(Arc<Vhost>, Arc<crate::broker::exchange::Exchange>, Destination), ApiError> {
    let v = caller.vhost(broker, &o.vhost)?;
    let source = v.exchange(&o.source).ok_or_else(ApiError::not_found)?;
    let dest = match o.destination_type.as_str() {
        "queue" => Destination::Queue(v.queue(&o.destination).ok_or_else(ApiError::not_found)?),
        "exchange" => Destination::Exchange(v.exchange(&o.destination).ok_or_else(ApiError::not_found)?),
        _ => return Err(ApiError::not_found()),
    };
    Ok((v, source, dest))
}

fn check(caller: &Caller, o: &One) -> Result<(), ApiError> {
    let kind = if o.destination_type == "queue" { ResourceKind::Queue } else { ResourceKind::Exchange };
    caller.check(&o.vhost, kind, &o.destination, Access::Write)?;
    caller.check(&o.vhost, ResourceKind::Exchange, &o.source, Access::Read)
}

/// The topic permission (read) of the binding key on a topic source; RabbitMQ's management API
/// answers a refusal with 401 "Access refused.".
fn check_topic(caller: &Caller, source: &crate::broker::exchange::Exchange, key: &str) -> Result<(), ApiError> {
    caller.check_topic(source, key, Access::Read).map_err(|_| ApiError::access_refused("Access refused."))
}

/// `POST /api/bindings/VHOST/e/SOURCE/{q,e}/DEST`; answers `{"properties_key": ...}` (the
/// `Location` of the new binding).
pub fn post(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let o: One = args(a)?;
    if o.source.is_empty() {
        return Err(ApiError::access_refused("operation not permitted on the default exchange"));
    }
    let (v, source, dest) = endpoints(broker, caller, &o)?;
    check(caller, &o)?;
    check_topic(caller, &source, &o.routing_key)?;
    let t = json_to_table(&o.arguments).map_err(ApiError::bad_request)?;
    v.bind(&source, dest, &o.routing_key, &t)?;
    Ok(json!({"properties_key": properties_key(&o.routing_key, &t)}))
}

fn find(broker: &Broker, caller: &Caller, o: &One) -> Result<(Arc<Vhost>, Arc<crate::broker::exchange::Exchange>, crate::broker::exchange::Binding), ApiError> {
    let (v, source, dest) = endpoints(broker, caller, o)?;
    let pk = o.properties_key.as_deref().unwrap_or("");
    let b = source
        .bindings()
        .into_iter()
        .find(|b| b.destination.same(&dest) && properties_key(&b.key, &b.arguments) == pk)
        .ok_or_else(ApiError::not_found)?;
    Ok((v, source, b))
}

pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let o: One = args(a)?;
    let (v, source, b) = find(broker, caller, &o)?;
    Ok(row(&v.name, &source.name, b.destination.name(), b.destination.kind(), &b.key, &b.arguments))
}

pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let o: One = args(a)?;
    let (v, source, b) = find(broker, caller, &o)?;
    check(caller, &o)?;
    check_topic(caller, &source, &b.key)?;
    v.unbind(&source, &b.destination, &b.key, &b.arguments)?;
    Ok(Value::Null)
}
