//! rabbitmqctl's `list_channels`: every open channel of every connection (from each
//! connection's channel registry), with rabbitmqctl 3.10's info keys.

use super::erl::{self, Cell};
use super::{Request, Response, listing};
use crate::broker::Broker;
use crate::broker::delivery::{ChannelInfo, ChannelShared};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

struct Row {
    conn: u64,
    conn_name: String,
    user: String,
    vhost: String,
    ch: Arc<ChannelShared>,
}

pub fn handle(broker: &Broker, req: &Request) -> Option<Response> {
    if req.command != "list_channels" {
        return None;
    }
    let mut rows: Vec<Row> = Vec::new();
    for c in broker.connections.lock().values() {
        let conn_name = crate::admin::api::connections::connection_name(broker, c.peer);
        for ch in c.channel_list.lock().values() {
            rows.push(Row { conn: c.id, conn_name: conn_name.clone(), user: c.user.clone(), vhost: c.vhost.clone(), ch: ch.clone() });
        }
    }
    rows.sort_by_key(|r| (r.conn, r.ch.number));
    Some(listing::answer(&req.command, &req.args, &rows, |r, key| {
        let (ch, info) = (&r.ch, &r.ch.info);
        Cell::from(match key {
            // Pids: the connection's is list_connections' (close_connection takes it).
            "pid" => return erl::pid(r.conn, ch.number as u64),
            "connection" => return erl::pid(r.conn, 0),
            "name" => json!(format!("{} ({})", r.conn_name, ch.number)),
            "number" => json!(ch.number),
            "user" => json!(r.user),
            "vhost" => json!(r.vhost),
            "transactional" => json!(info.mode() == ChannelInfo::TX),
            "confirm" => json!(info.mode() == ChannelInfo::CONFIRM),
            "consumer_count" => json!(info.consumers.load(Relaxed)),
            "messages_unacknowledged" => json!(ch.unacked_count()),
            "messages_uncommitted" => json!(info.uncommitted_messages.load(Relaxed)),
            "acks_uncommitted" => json!(info.uncommitted_acks.load(Relaxed)),
            "messages_unconfirmed" => json!(ch.confirms.unconfirmed()),
            "prefetch_count" => json!(info.prefetch.load(Relaxed)),
            _ => json!(ch.global_prefetch.load(Relaxed)),
        })
    }))
}
