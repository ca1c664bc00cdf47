//! rabbitmqctl's `list_consumers` (`-p VHOST`) with all of 3.10's info keys: every consumer of
//! the vhost's queues (queues by name, consumers in subscription order), the values the
//! management API's `/api/consumers` shows.

use super::erl::{self, Cell};
use super::{Request, Response, listing};
use crate::broker::Broker;
use crate::broker::delivery::Consumer;
use crate::broker::queue::Queue;
use serde_json::json;
use std::sync::Arc;

pub fn handle(broker: &Broker, req: &Request) -> Option<Response> {
    if req.command != "list_consumers" {
        return None;
    }
    let vhost = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    let mut rows: Vec<(Arc<Queue>, Arc<Consumer>, usize)> = Vec::new();
    if let Some(v) = broker.vhost(&vhost) {
        let mut qs: Vec<_> = v.queues.read().values().cloned().collect();
        qs.sort_by(|a, b| a.name.cmp(&b.name));
        for q in qs {
            let cs: Vec<_> = q.inner.lock().consumers.clone();
            rows.extend(cs.into_iter().enumerate().map(|(i, c)| (q.clone(), c, i)));
        }
    }
    Some(listing::answer(&req.command, &req.args, &rows, |(q, c, i), key| {
        Cell::from(match key {
            "queue_name" => json!(q.name),
            "channel_pid" => return erl::pid(c.channel.conn.id, c.channel.number as u64),
            "consumer_tag" => json!(c.tag),
            "ack_required" => json!(!c.no_ack),
            "prefetch_count" => json!(c.prefetch),
            // With x-single-active-consumer only the first (oldest) consumer receives.
            "active" => json!(!q.declared.single_active_consumer || *i == 0),
            "activity_status" => json!(match (q.declared.single_active_consumer, *i) {
                (false, _) => "up",
                (true, 0) => "single_active",
                (true, _) => "waiting",
            }),
            _ => return erl::table(&c.arguments),
        })
    }))
}
