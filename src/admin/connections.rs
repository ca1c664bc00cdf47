//! rabbitmqctl's `list_connections` with all of 3.10's info keys (name, state and the listener
//! as the management API's `/api/connections` gives them), and `close_connection`.

use super::api::connections::{connection_name, state};
use super::erl::{self, Cell};
use super::{Request, Response, listing};
use crate::broker::{Broker, ConnectionEntry};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;

pub fn handle(broker: &Broker, req: &Request) -> Option<Response> {
    match req.command.as_str() {
        "list_connections" => {
            let conns = broker.connections.lock();
            let mut list: Vec<&ConnectionEntry> = conns.values().collect();
            list.sort_by_key(|c| c.id);
            Some(listing::answer(&req.command, &req.args, &list, |c, key| cell(broker, c, key)))
        }
        "close_connection" => Some(close(broker, req)),
        _ => None,
    }
}

fn cell(broker: &Broker, c: &ConnectionEntry, key: &str) -> Cell {
    let ssl = c.ssl.as_ref();
    let (channel_max, frame_max, heartbeat) = c.tuned;
    let io = &c.shared.io;
    Cell::from(match key {
        "pid" => return erl::pid(c.id, 0),
        "name" => json!(connection_name(broker, c.peer)),
        "user" => json!(c.user),
        "vhost" => json!(c.vhost),
        "peer_host" => return erl::ip(c.peer.ip()),
        "peer_port" => json!(c.peer.port()),
        "host" => {
            return match broker.config.amqp.bind.parse() {
                Ok(ip) => erl::ip(ip),
                Err(_) => Cell::from(json!(broker.config.amqp.bind)),
            };
        }
        "port" => json!(broker.config.amqp.port),
        "protocol" => return erl::tuple(&[0, 9, 1]),
        "state" => json!(state(broker, c)),
        "channels" => json!(c.channels.load(Relaxed)),
        "channel_max" => json!(channel_max),
        "frame_max" => json!(frame_max),
        "timeout" => json!(heartbeat),
        "connected_at" => json!(c.connected_at),
        "auth_mechanism" => json!(c.auth_mechanism),
        "client_properties" => return erl::table(&c.client_properties),
        "recv_cnt" => json!(io.recv_cnt.load(Relaxed)),
        "recv_oct" => json!(io.recv_oct.load(Relaxed)),
        "send_cnt" => json!(io.send_cnt.load(Relaxed)),
        "send_oct" => json!(io.send_oct.load(Relaxed)),
        // Frames are written as they are produced: none wait in a send queue.
        "send_pend" => json!(0),
        "ssl" => json!(ssl.is_some()),
        "ssl_protocol" => json!(ssl.map_or("", |s| s.protocol.as_str())),
        "ssl_cipher" => json!(ssl.map_or("", |s| s.cipher.as_str())),
        "ssl_key_exchange" => json!(ssl.map_or("", |s| s.key_exchange.as_str())),
        "ssl_hash" => json!(ssl.map_or("", |s| s.hash.as_str())),
        "peer_cert_subject" => json!(ssl.and_then(|s| s.peer_cert_subject.as_deref()).unwrap_or("")),
        "peer_cert_issuer" => json!(ssl.and_then(|s| s.peer_cert_issuer.as_deref()).unwrap_or("")),
        _ => json!(ssl.and_then(|s| s.peer_cert_validity.as_deref()).unwrap_or("")),
    })
}

/// `close_connection PID REASON`: PID as `list_connections pid` prints it (either formatter's
/// form) or Warren's bare connection id.
fn close(broker: &Broker, req: &Request) -> Response {
    let (Some(id), reason) = (req.args.first().and_then(|s| erl::parse_connection_pid(s)), req.args.get(1)) else {
        return Response::error("close_connection needs a connection pid (from list_connections pid) and a reason");
    };
    let reason = reason.cloned().unwrap_or_else(|| "Closed via warrenctl".into());
    match broker.connections.lock().get(&id) {
        None => Response::error(format!("no connection {id}")),
        Some(c) => {
            let _ = c.close.send(crate::protocol::ReplyError::new(crate::protocol::ErrorKind::ConnectionForced, reason));
            Response::message(format!("Closing connection {id}"))
        }
    }
}
