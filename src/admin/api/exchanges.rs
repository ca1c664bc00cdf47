//! `/api/exchanges`: list, show, declare, delete (RabbitMQ's fields; the default exchange is
//! listed with the name "").

use super::fields::{json_to_table, table_to_json};
use super::{ApiError, ApiResult, Caller, args};
use crate::auth_backend::{Access, ResourceKind};
use crate::broker::exchange::Exchange;
use crate::broker::{Broker, ExchangeDecl, Vhost};
use crate::broker::stats::ExchangeStats;
use super::paging::{Key, Query};
use super::stats::{self, Kind, Rates};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use serde::Deserialize;
use serde_json::{Value, json};

fn row(name: &str, vhost: &str, kind: &str, durable: bool, auto_delete: bool, internal: bool, arguments: Value) -> Value {
    json!({
        "name": name,
        "vhost": vhost,
        "type": kind,
        "durable": durable,
        "auto_delete": auto_delete,
        "internal": internal,
        "arguments": arguments,
        "user_who_performed_action": "rmq-internal",
    })
}

pub fn exchange_row(x: &Exchange) -> Value {
    row(&x.name, &x.vhost, &x.kind, x.durable, x.auto_delete, x.internal, table_to_json(&x.arguments))
}

/// `message_stats` with `publish_in` / `publish_out` and their rates.
fn with_stats(mut r: Value, rates: &mut Rates, id: usize, s: &ExchangeStats) -> Value {
    let mut m = serde_json::Map::new();
    rates.put(&mut m, Kind::Exchange, id, "publish_in", s.publish_in.load(Relaxed));
    rates.put(&mut m, Kind::Exchange, id, "publish_out", s.publish_out.load(Relaxed));
    r["message_stats"] = Value::Object(m);
    r
}

fn full_row(rates: &mut Rates, x: &Exchange) -> Value {
    with_stats(exchange_row(x), rates, stats::id(x), &x.stats)
}

fn default_row(rates: &mut Rates, v: &Vhost) -> Value {
    with_stats(row("", &v.name, "direct", true, false, false, json!({})), rates, stats::id(&v.default_stats), &v.default_stats)
}

#[derive(Deserialize, Default)]
struct Where {
    vhost: Option<String>,
}

/// A row of the exchange list: a vhost's default exchange (listed with the name "") or another.
enum Listed {
    Default(Arc<Vhost>),
    Exchange(Arc<Exchange>),
}

impl Listed {
    fn name(&self) -> &str {
        match self {
            Listed::Default(_) => "",
            Listed::Exchange(x) => &x.name,
        }
    }
    /// A sort key read without building the row (RabbitMQ's basic columns).
    fn key(&self, k: &str) -> Option<Key> {
        let (vhost, kind, durable, auto_delete, internal) = match self {
            Listed::Default(v) => (v.name.as_str(), "direct", true, false, false),
            Listed::Exchange(x) => (x.vhost.as_str(), x.kind.as_str(), x.durable, x.auto_delete, x.internal),
        };
        Some(match k {
            "name" => Key::str(self.name()),
            "vhost" => Key::str(vhost),
            "type" => Key::str(kind),
            "durable" => Key::bool(durable),
            "auto_delete" => Key::bool(auto_delete),
            "internal" => Key::bool(internal),
            _ => return None,
        })
    }
    fn row(&self, rates: &mut Rates) -> Value {
        match self {
            Listed::Default(v) => default_row(rates, v),
            Listed::Exchange(x) => full_row(rates, x),
        }
    }
}

/// `GET /api/exchanges[/VHOST]`, sorted by vhost and name; RabbitMQ's list parameters in
/// `query` (the JSON is built for the rows answered only).
pub fn list(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let w: Where = args(a)?;
    let query = Query::of(a)?;
    let mut vhosts = match &w.vhost {
        Some(v) => vec![caller.vhost(broker, v)?],
        None => broker.vhosts().into_iter().filter(|v| caller.sees_vhost(broker, &v.name)).collect(),
    };
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for v in vhosts {
        let mut xs: Vec<_> = v.exchanges.read().values().cloned().collect();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(Listed::Default(v));
        out.extend(xs.into_iter().map(Listed::Exchange));
    }
    let mut rates = Rates::begin();
    query.typed(out, true, Listed::name, Listed::key, |x| x.row(&mut rates))
}

#[derive(Deserialize)]
struct Name {
    vhost: String,
    name: String,
}

pub fn get(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let n: Name = args(a)?;
    let v = caller.vhost(broker, &n.vhost)?;
    if n.name.is_empty() {
        let mut r = default_row(&mut Rates::begin(), &v);
        r["incoming"] = json!([]);
        r["outgoing"] = json!([]);
        return Ok(r);
    }
    let x = v.exchange(&n.name).ok_or_else(ApiError::not_found)?;
    let mut r = full_row(&mut Rates::begin(), &x);
    r["incoming"] = json!([]);
    r["outgoing"] = json!([]);
    Ok(r)
}

#[derive(Deserialize)]
struct Put {
    vhost: String,
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    durable: Option<bool>,
    auto_delete: Option<bool>,
    internal: Option<bool>,
    #[serde(default)]
    arguments: Value,
}

/// `PUT /api/exchanges/VHOST/NAME`; answers `{"created": bool}`.
pub fn put(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let p: Put = args(a)?;
    let v = caller.vhost(broker, &p.vhost)?;
    caller.check(&p.vhost, ResourceKind::Exchange, &p.name, Access::Configure)?;
    let Some(kind) = p.kind else { return Err(ApiError::bad_request("[{key_missing,type}]")) };
    let arguments = json_to_table(&p.arguments).map_err(ApiError::bad_request)?;
    let existed = v.exchange(&p.name).is_some();
    let d = ExchangeDecl {
        name: &p.name,
        kind: &kind,
        passive: false,
        durable: p.durable.unwrap_or(false),
        auto_delete: p.auto_delete.unwrap_or(false),
        internal: p.internal.unwrap_or(false),
        arguments: &arguments,
    };
    v.declare_exchange(broker, &d)?;
    Ok(json!({"created": !existed}))
}

#[derive(Deserialize)]
struct Delete {
    vhost: String,
    name: String,
    #[serde(default)]
    if_unused: bool,
}

pub fn delete(broker: &Broker, caller: &Caller, a: &Value) -> ApiResult {
    let d: Delete = args(a)?;
    let v = caller.vhost(broker, &d.vhost)?;
    if !d.name.is_empty() && v.exchange(&d.name).is_none() {
        return Err(ApiError::not_found());
    }
    caller.check(&d.vhost, ResourceKind::Exchange, &d.name, Access::Configure)?;
    v.delete_exchange(&d.name, d.if_unused)?;
    Ok(Value::Null)
}
