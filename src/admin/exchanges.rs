//! rabbitmqctl's `list_exchanges` with all of 3.10's info keys: the default exchange first
//! (named ""), then the vhost's exchanges by name.

use super::erl::{self, Cell};
use super::{Request, Response, listing};
use crate::broker::Broker;
use crate::broker::exchange::Exchange;
use serde_json::json;
use std::sync::Arc;

pub fn handle(broker: &Broker, req: &Request) -> Option<Response> {
    if req.command != "list_exchanges" {
        return None;
    }
    let vhost = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    // RabbitMQ lists nothing for a vhost that does not exist.
    let Some(v) = broker.vhost(&vhost) else {
        return Some(listing::answer::<Option<Arc<Exchange>>>(&req.command, &req.args, &[], |_, _| erl::none()));
    };
    let mut xs: Vec<Option<Arc<Exchange>>> = v.exchanges.read().values().cloned().map(Some).collect();
    xs.sort_by(|a, b| a.as_ref().map(|x| &x.name).cmp(&b.as_ref().map(|x| &x.name)));
    xs.insert(0, None);
    Some(listing::answer(&req.command, &req.args, &xs, |x, key| match x {
        Some(x) => cell(x, key),
        None => default_exchange(key),
    }))
}

/// The default exchange (a durable direct exchange named "").
fn default_exchange(key: &str) -> Cell {
    Cell::from(match key {
        "name" | "policy" => json!(""),
        "type" => json!("direct"),
        "durable" => json!(true),
        "auto_delete" | "internal" => json!(false),
        _ => return erl::table(&Default::default()),
    })
}

fn cell(x: &Exchange, key: &str) -> Cell {
    Cell::from(match key {
        "name" => json!(x.name),
        "type" => json!(x.kind),
        "durable" => json!(x.durable),
        "auto_delete" => json!(x.auto_delete),
        "internal" => json!(x.internal),
        "policy" => json!(x.policy.load().as_ref().and_then(|p| p.policy.clone()).unwrap_or_default()),
        _ => return erl::table(&x.arguments),
    })
}
