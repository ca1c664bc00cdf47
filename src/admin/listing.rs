//! rabbitmqctl 3.10's info keys of the `list_*` commands that take columns, and building a
//! listing's answer from one [`Cell`] per (item, key). The key lists are the reference node's
//! (`rabbitmqctl help list_queues`, ...); an unknown key is refused by `warrenctl` before it
//! calls the broker (`cli::validate`: "Info key(s) a,b are not supported", 64) and here again
//! for other clients of the control socket.

use super::erl::Cell;
use super::{Printed, Response};

/// A command's info keys: all it accepts, and the columns printed when none are asked for.
pub struct Keys {
    pub all: &'static [&'static str],
    pub default: &'static [&'static str],
}

const QUEUES: &[&str] = &[
    "arguments",
    "auto_delete",
    "consumer_capacity",
    "consumer_utilisation",
    "consumers",
    "disk_reads",
    "disk_writes",
    "durable",
    "exclusive",
    "exclusive_consumer_pid",
    "exclusive_consumer_tag",
    "head_message_timestamp",
    "leader",
    "members",
    "memory",
    "message_bytes",
    "message_bytes_persistent",
    "message_bytes_ram",
    "message_bytes_ready",
    "message_bytes_unacknowledged",
    "messages",
    "messages_persistent",
    "messages_ram",
    "messages_ready",
    "messages_ready_ram",
    "messages_unacknowledged",
    "messages_unacknowledged_ram",
    "name",
    "online",
    "owner_pid",
    "pid",
    "policy",
    "slave_pids",
    "state",
    "synchronised_slave_pids",
    "type",
    // Warren's own (its HTTP API has them, RabbitMQ 3.10's CLI has not).
    "messages_paged_out",
    "operator_policy",
    "effective_policy_definition",
];

const EXCHANGES: &[&str] = &["arguments", "auto_delete", "durable", "internal", "name", "policy", "type"];

const BINDINGS: &[&str] = &["arguments", "destination_kind", "destination_name", "routing_key", "source_kind", "source_name"];

const CONNECTIONS: &[&str] = &[
    "auth_mechanism",
    "channel_max",
    "channels",
    "client_properties",
    "connected_at",
    "frame_max",
    "host",
    "name",
    "peer_cert_issuer",
    "peer_cert_subject",
    "peer_cert_validity",
    "peer_host",
    "peer_port",
    "pid",
    "port",
    "protocol",
    "recv_cnt",
    "recv_oct",
    "send_cnt",
    "send_oct",
    "send_pend",
    "ssl",
    "ssl_cipher",
    "ssl_hash",
    "ssl_key_exchange",
    "ssl_protocol",
    "state",
    "timeout",
    "user",
    "vhost",
];

const CHANNELS: &[&str] = &[
    "acks_uncommitted",
    "confirm",
    "connection",
    "consumer_count",
    "global_prefetch_count",
    "messages_unacknowledged",
    "messages_uncommitted",
    "messages_unconfirmed",
    "name",
    "number",
    "pid",
    "prefetch_count",
    "transactional",
    "user",
    "vhost",
];

const CONSUMERS: &[&str] = &["ack_required", "active", "activity_status", "arguments", "channel_pid", "consumer_tag", "prefetch_count", "queue_name"];

const VHOSTS: &[&str] = &["cluster_state", "default_queue_type", "description", "name", "tags", "tracing"];

/// The info keys of `command`, if it is a listing that takes columns.
pub fn keys(command: &str) -> Option<Keys> {
    let k = |all, default| Some(Keys { all, default });
    match command {
        "list_queues" => k(QUEUES, &["name", "messages"]),
        "list_exchanges" => k(EXCHANGES, &["name", "type"]),
        "list_bindings" => {
            k(BINDINGS, &["source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"])
        }
        "list_connections" => k(CONNECTIONS, &["user", "peer_host", "peer_port", "state"]),
        "list_channels" => k(CHANNELS, &["pid", "user", "consumer_count", "messages_unacknowledged"]),
        "list_consumers" => k(
            CONSUMERS,
            &["queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active", "arguments"],
        ),
        "list_vhosts" => k(VHOSTS, &["name"]),
        _ => None,
    }
}

/// `list_queues`' options (one node: `--online` and `--local` list every queue, `--offline`
/// none).
pub const QUEUE_FLAGS: [&str; 3] = ["--online", "--offline", "--local"];

/// The arguments that name columns.
fn column_args<'a>(command: &str, args: &'a [String]) -> impl Iterator<Item = &'a str> {
    let queues = command == "list_queues";
    args.iter().map(String::as_str).filter(move |a| !(queues && QUEUE_FLAGS.contains(a)))
}

/// The columns of `command` it does not know, in the order given.
pub fn unknown<'a>(command: &str, args: &'a [String]) -> Vec<&'a str> {
    let Some(k) = keys(command) else { return Vec::new() };
    column_args(command, args).filter(|a| !k.all.contains(a)).collect()
}

/// rabbitmqctl's refusal of unknown columns.
pub fn unknown_text(unknown: &[&str]) -> String {
    format!("Info key(s) {} are not supported", unknown.join(","))
}

/// The columns asked for (the default ones when none).
pub fn columns<'a>(command: &str, args: &'a [String]) -> Vec<&'a str> {
    let given: Vec<&str> = column_args(command, args).collect();
    match keys(command) {
        Some(k) if given.is_empty() => k.default.to_vec(),
        _ => given,
    }
}

/// The answer of listing `command`: one row per item, `cell(item, key)` for each column asked
/// for. rabbitmqctl streams these listings: an empty one prints no table at all.
pub fn answer<T>(command: &str, args: &[String], items: &[T], mut cell: impl FnMut(&T, &str) -> Cell) -> Response {
    let bad = unknown(command, args);
    if !bad.is_empty() {
        return Response { exit_code: Some(super::users::EX_USAGE), ..Response::error(unknown_text(&bad)) };
    }
    let cols = columns(command, args);
    let mut rows = Vec::with_capacity(items.len());
    let mut printed = Vec::with_capacity(items.len());
    for it in items {
        let (mut r, mut p) = (Vec::with_capacity(cols.len()), Vec::with_capacity(cols.len()));
        for c in &cols {
            let Cell { value, table, json } = cell(it, c);
            r.push(value);
            p.push(Printed { table, json });
        }
        rows.push(r);
        printed.push(p);
    }
    let columns = cols.iter().map(|c| c.to_string()).collect();
    Response { columns, rows, printed, streamed: true, ..Default::default() }
}
