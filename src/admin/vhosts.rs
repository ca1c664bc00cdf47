//! rabbitmqctl's `list_vhosts` with all of 3.10's info keys.

use super::erl::{self, Cell};
use super::{Request, Response, listing};
use crate::broker::Broker;
use serde_json::json;

pub fn handle(broker: &Broker, req: &Request) -> Option<Response> {
    if req.command != "list_vhosts" {
        return None;
    }
    let mut vs = broker.vhosts();
    vs.sort_by(|a, b| a.name.cmp(&b.name));
    Some(listing::answer(&req.command, &req.args, &vs, |v, key| {
        let meta = || v.metadata.read().clone();
        Cell::from(match key {
            "name" => json!(v.name),
            "description" => json!(meta().description),
            "tags" => return erl::words(&meta().tags),
            // No default queue type is set on a vhost: RabbitMQ prints `undefined`.
            "default_queue_type" => json!("undefined"),
            "tracing" => json!(false),
            _ => return erl::node_states("running"),
        })
    }))
}
