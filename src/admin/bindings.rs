//! rabbitmqctl's `list_bindings` with all of 3.10's info keys: the default exchange's implicit
//! binding of every queue first, then each exchange's bindings (arguments sorted by key, as
//! RabbitMQ prints them).

use super::erl::{self, Cell};
use super::{Request, Response, listing};
use crate::broker::Broker;
use amq_protocol::types::FieldTable;
use serde_json::json;

struct Row {
    source: String,
    destination: String,
    kind: &'static str,
    key: String,
    arguments: FieldTable,
}

pub fn handle(broker: &Broker, req: &Request) -> Option<Response> {
    if req.command != "list_bindings" {
        return None;
    }
    let vhost = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    let mut rows = Vec::new();
    if let Some(v) = broker.vhost(&vhost) {
        let mut qs: Vec<String> = v.queues.read().keys().cloned().collect();
        qs.sort();
        for q in qs {
            rows.push(Row { source: String::new(), destination: q.clone(), kind: "queue", key: q, arguments: FieldTable::default() });
        }
        let mut xs: Vec<_> = v.exchanges.read().values().cloned().collect();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        for x in xs {
            for b in x.bindings() {
                rows.push(Row {
                    source: x.name.clone(),
                    destination: b.destination.name().to_string(),
                    kind: b.destination.kind(),
                    key: b.key.clone(),
                    arguments: b.arguments.clone(),
                });
            }
        }
    }
    Some(listing::answer(&req.command, &req.args, &rows, |r, key| {
        Cell::from(match key {
            "source_name" => json!(r.source),
            "source_kind" => json!("exchange"),
            "destination_name" => json!(r.destination),
            "destination_kind" => json!(r.kind),
            "routing_key" => json!(r.key),
            _ => return erl::table(&r.arguments),
        })
    }))
}
