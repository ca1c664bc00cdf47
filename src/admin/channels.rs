//! rabbitmqctl's `list_channels`: every open channel of every connection (from each
//! connection's channel registry), with rabbitmqctl 3.10's info keys.

use super::{Request, Response, select};
use crate::broker::Broker;
use crate::broker::delivery::ChannelInfo;
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;

/// rabbitmqctl 3.10's `list_channels` info keys.
pub const KEYS: [&str; 15] = [
    "pid",
    "connection",
    "name",
    "number",
    "user",
    "vhost",
    "transactional",
    "confirm",
    "consumer_count",
    "messages_unacknowledged",
    "messages_uncommitted",
    "acks_uncommitted",
    "messages_unconfirmed",
    "prefetch_count",
    "global_prefetch_count",
];

/// The columns printed when none are asked for.
const DEFAULT: [&str; 4] = ["pid", "user", "consumer_count", "messages_unacknowledged"];

pub fn handle(broker: &Broker, req: &Request) -> Option<Response> {
    if req.command != "list_channels" {
        return None;
    }
    let mut rows: Vec<((u64, u16), Vec<Value>)> = Vec::new();
    for c in broker.connections.lock().values() {
        let conn_name = crate::admin::api::connections::connection_name(broker, c.peer);
        for ch in c.channel_list.lock().values() {
            let info = &ch.info;
            let mode = info.mode();
            // `pid` and `connection`: Warren's ids (the connection's is list_connections' pid).
            rows.push((
                (c.id, ch.number),
                vec![
                    json!(format!("{}.{}", c.id, ch.number)),
                    json!(c.id),
                    json!(format!("{conn_name} ({})", ch.number)),
                    json!(ch.number),
                    json!(c.user),
                    json!(c.vhost),
                    json!(mode == ChannelInfo::TX),
                    json!(mode == ChannelInfo::CONFIRM),
                    json!(info.consumers.load(Relaxed)),
                    json!(ch.unacked_count()),
                    json!(info.uncommitted_messages.load(Relaxed)),
                    json!(info.uncommitted_acks.load(Relaxed)),
                    json!(ch.confirms.unconfirmed()),
                    json!(info.prefetch.load(Relaxed)),
                    json!(ch.global_prefetch.load(Relaxed)),
                ],
            ));
        }
    }
    rows.sort_by_key(|(k, _)| *k);
    Some(select(&KEYS, &DEFAULT, &req.args, rows.into_iter().map(|(_, r)| r).collect()))
}
