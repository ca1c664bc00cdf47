//! `warren_prometheus`: RabbitMQ's `rabbitmq_prometheus` endpoints as a Wasm component (world
//! `http-handler`), on its own listener (port 15692):
//!
//! - `GET /metrics`: aggregated metrics (RabbitMQ's default `return_per_object_metrics = false`);
//! - `GET /metrics/per-object`: the same families with one sample per queue / connection;
//! - `GET /metrics/detailed?family=F&vhost=V`: only the families asked for, per object, named
//!   `rabbitmq_detailed_*`, queues and exchanges limited to the vhosts asked for.
//!
//! Like RabbitMQ's, the endpoints need no credentials: the broker lets a request without a
//! logged-in user run only its read-only `metrics.*` admin operations. Metric names, types, HELP
//! texts and labels are rabbitmq_prometheus 3.10's; families of Erlang-VM internals (`erlang_*`,
//! reductions, raft, mnesia, io of the file handle cache) have no Warren counterpart and are not
//! served.

use serde_json::Value;
use std::fmt::Write;
use warren_plugin_sdk::http::{HttpHandler, Request, Response, admin, query_pairs as query};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

struct Prometheus;

impl HttpHandler for Prometheus {
    fn describe() -> String {
        "Prometheus metrics in RabbitMQ's format (/metrics, /metrics/per-object, /metrics/detailed)".into()
    }

    fn protected_prefixes() -> Vec<String> {
        Vec::new()
    }

    fn handle(req: Request) -> Response {
        match route(&req) {
            Ok(r) => r,
            Err(f) => text(f.status, &format!("{}: {}\n", f.error, f.reason)),
        }
    }
}

warren_plugin_sdk::export_http_handler!(Prometheus);

fn text(status: u16, body: &str) -> Response {
    Response { status, headers: vec![("content-type".into(), "text/plain".into())], body: body.as_bytes().to_vec() }
}

fn not_found() -> Response {
    Response {
        status: 404,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"error":"Object Not Found","reason":"Not Found"}"#.to_vec(),
    }
}

/// Which endpoint: aggregated, per object, or detailed with its families and vhosts.
enum Mode {
    Aggregated,
    PerObject,
    Detailed { families: Vec<String>, vhosts: Vec<String> },
}

fn route(req: &Request) -> Result<Response, admin::Failure> {
    let mode = match req.path.as_str() {
        "/metrics" | "/metrics/" => Mode::Aggregated,
        "/metrics/per-object" => Mode::PerObject,
        "/metrics/detailed" => {
            let q = query(&req.query);
            let pick = |k: &str| q.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
            Mode::Detailed { families: pick("family"), vhosts: pick("vhost") }
        }
        p if p.starts_with("/metrics/") => return Ok(text(404, "Unknown Registry")),
        _ => return Ok(not_found()),
    };
    match req.method.as_str() {
        "GET" | "HEAD" => {}
        "OPTIONS" => {
            return Ok(Response { status: 200, headers: vec![("allow".into(), "HEAD, GET, OPTIONS".into())], body: Vec::new() });
        }
        _ => {
            return Ok(Response { status: 405, headers: vec![("allow".into(), "HEAD, GET, OPTIONS".into())], body: Vec::new() });
        }
    }
    if let Mode::Detailed { families, .. } = &mode
        && let Some(f) = families.iter().find(|f| UNSERVED.contains(&f.as_str()))
    {
        // RabbitMQ has this family, Warren has nothing honest to put in it: say so rather than
        // answer as if it were empty.
        return Ok(text(400, &format!("metric family '{f}' is not available in Warren (it reports Erlang VM or per-channel internals)\n")));
    }
    let body = render(&mode)?;
    Ok(Response {
        status: 200,
        headers: vec![("content-type".into(), CONTENT_TYPE.into()), ("content-encoding".into(), "identity".into())],
        body: body.into_bytes(),
    })
}

/// RabbitMQ 3.10's detailed families that Warren does not serve.
const UNSERVED: &[&str] = &[
    "queue_delivery_metrics",
    "channel_process_metrics",
    "connection_coarse_metrics",
    "node_persister_metrics",
    "ra_metrics",
    "auth_attempt_metrics",
    "auth_attempt_detailed_metrics",
];

fn call(op: &str, args: &str) -> Result<Value, admin::Failure> {
    let t = admin::call(op, args)?;
    serde_json::from_str(&t).map_err(|e| admin::Failure { status: 500, error: "internal_error".into(), reason: format!("bad answer from the broker: {e}") })
}



/// The exposition text being written.
struct Out {
    s: String,
    /// "rabbitmq_" or "rabbitmq_detailed_".
    prefix: &'static str,
}

impl Out {
    /// `# TYPE` and `# HELP` lines of family `name` (without the prefix).
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let p = self.prefix;
        let _ = write!(self.s, "# TYPE {p}{name} {kind}\n# HELP {p}{name} {help}\n");
    }
    /// One sample; `labels` as (name, value) pairs.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.s.push_str(self.prefix);
        self.s.push_str(name);
        push_labels(&mut self.s, labels);
        let _ = writeln!(self.s, " {value}");
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn push_labels(s: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    s.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Per-object rows of a `metrics.*` answer.
fn rows(v: &Value) -> &[Value] {
    v.get("rows").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn s(row: &Value, i: usize) -> &str {
    row.get(i).and_then(Value::as_str).unwrap_or("")
}

fn n(row: &Value, i: usize) -> u64 {
    row.get(i).and_then(Value::as_u64).unwrap_or(0)
}

/// A connection's label value: RabbitMQ puts the Erlang pid of the connection process there
/// (`<0.1216.0>`); Warren writes the connection's id in the same shape.
fn conn_label(id: u64) -> String {
    format!("<0.{id}.0>")
}

const QUEUE_TYPES: [&str; 3] = ["rabbit_classic_queue", "rabbit_quorum_queue", "rabbit_stream_queue"];

fn render(mode: &Mode) -> Result<String, admin::Failure> {
    let (per_object, prefix, wanted, vhosts): (bool, _, Option<&[String]>, &[String]) = match mode {
        Mode::Aggregated => (false, "rabbitmq_", None, &[]),
        Mode::PerObject => (true, "rabbitmq_", None, &[]),
        Mode::Detailed { families, vhosts } => (true, "rabbitmq_detailed_", Some(families.as_slice()), vhosts.as_slice()),
    };
    let wants = |f: &str| wanted.is_none_or(|w| w.iter().any(|x| x == f));
    let vhost_args = serde_json::json!({ "vhosts": vhosts }).to_string();
    let mut o = Out { s: String::with_capacity(16 << 10), prefix };
    let node = call("metrics.node", "{}")?;
    let c = node.get("counters").cloned().unwrap_or(Value::Null);

    if wanted.is_none()
        && let Some(t) = node.get("start_time").and_then(Value::as_u64)
    {
        // The prometheus client's process collector family (no `rabbitmq_` prefix).
        o.prefix = "";
        o.one("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", t);
        o.prefix = prefix;
    }
    if wanted.is_none() {
        o.one("alarms_file_descriptor_limit", "untyped", "is 1 if file descriptor limit alarm is in effect", 0);
        let alarm = |k: &str| node.get(k).and_then(Value::as_bool).unwrap_or(false) as u64;
        o.one("alarms_free_disk_space_watermark", "untyped", "is 1 if free disk space watermark alarm is in effect", alarm("disk_alarm"));
        o.one("alarms_memory_used_watermark", "untyped", "is 1 if VM memory watermark alarm is in effect", alarm("memory_alarm"));
    }
    if wants("connection_churn_metrics") {
        for (name, key, help) in [
            ("connections_opened_total", "connections_opened", "Total number of connections opened"),
            ("connections_closed_total", "connections_closed", "Total number of connections closed or terminated"),
            ("channels_opened_total", "channels_opened", "Total number of channels opened"),
            ("channels_closed_total", "channels_closed", "Total number of channels closed"),
            ("queues_declared_total", "queues_declared", "Total number of queues declared"),
            ("queues_created_total", "queues_created", "Total number of queues created"),
            ("queues_deleted_total", "queues_deleted", "Total number of queues deleted"),
        ] {
            o.one(name, "counter", help, u(&c, key));
        }
    }
    if wants("node_coarse_metrics") {
        if let Some(fds) = node.get("open_fds").and_then(Value::as_u64) {
            o.one("process_open_fds", "gauge", "Open file descriptors", fds);
        }
        o.one("process_resident_memory_bytes", "gauge", "Memory used in bytes", u(&node, "resident_memory"));
        if let Some(free) = node.get("disk_free").and_then(Value::as_u64) {
            o.one("disk_space_available_bytes", "gauge", "Disk space available in bytes", free);
        }
    }
    if wants("node_metrics") {
        if let Some(max) = node.get("max_fds").and_then(Value::as_u64) {
            o.one("process_max_fds", "gauge", "Open file descriptors limit", max);
        }
        o.one("resident_memory_limit_bytes", "gauge", "Memory high watermark in bytes", u(&node, "memory_limit"));
        o.one("disk_space_available_limit_bytes", "gauge", "Free disk space low watermark in bytes", u(&node, "disk_free_limit"));
    }

    // Queues: (family, column, type, help) with the columns of `metrics.queues`.
    let queue_fams: [(&str, &str, usize, &str, &str); 5] = [
        ("queue_coarse_metrics", "queue_messages_ready", 3, "gauge", "Messages ready to be delivered to consumers"),
        ("queue_coarse_metrics", "queue_messages_unacked", 4, "gauge", "Messages delivered to consumers but not yet acknowledged"),
        ("queue_coarse_metrics", "queue_messages", usize::MAX, "gauge", "Sum of ready and unacknowledged messages - total queue depth"),
        ("queue_metrics", "queue_consumers", 5, "gauge", "Consumers on a queue"),
        ("queue_consumer_count", "queue_consumers", 5, "gauge", "Consumers on a queue"),
    ];
    let want_queues = queue_fams.iter().any(|f| wants(f.0)) || wants("channel_queue_exchange_metrics");
    let queues = if per_object && want_queues { Some(call("metrics.queues", &vhost_args)?) } else { None };
    let value = |r: &Value, col: usize| if col == usize::MAX { n(r, 3) + n(r, 4) } else { n(r, col) };
    let mut done: Vec<&str> = Vec::new();
    for (fam, name, col, kind, help) in queue_fams {
        if !wants(fam) || done.contains(&name) {
            continue;
        }
        done.push(name);
        o.family(name, kind, help);
        match &queues {
            Some(q) => {
                for r in rows(q) {
                    o.sample(name, &[("vhost", s(r, 0)), ("queue", s(r, 1))], value(r, col));
                }
            }
            None => {
                let total = match name {
                    "queue_messages_ready" => u(&node, "messages_ready"),
                    "queue_messages_unacked" => u(&node, "messages_unacked"),
                    "queue_messages" => u(&node, "messages_ready") + u(&node, "messages_unacked"),
                    _ => u(&node, "consumers"),
                };
                o.sample(name, &[], total);
            }
        }
    }
    if CHANNEL_GROUPS.iter().any(|g| wants(g)) {
        let chans = call("metrics.channels", "{}")?;
        channels(&mut o, rows(&chans), per_object, &wants);
    }
    if wants("connection_metrics") {
        o.family("connection_channels", "gauge", "Channels on a connection");
        if per_object {
            let conns = call("metrics.connections", "{}")?;
            for r in rows(&conns) {
                o.sample("connection_channels", &[("channel", &conn_label(n(r, 0)))], n(r, 2));
            }
        } else {
            o.sample("connection_channels", &[], u(&node, "channels"));
        }
    }
    if wants("channel_queue_exchange_metrics") {
        o.family("queue_messages_published_total", "counter", "Total number of messages published to queues");
        match &queues {
            // RabbitMQ counts per (channel, queue, exchange); Warren per queue.
            Some(q) => {
                for r in rows(q) {
                    o.sample("queue_messages_published_total", &[("queue_vhost", s(r, 0)), ("queue", s(r, 1))], n(r, 6));
                }
            }
            None => o.sample("queue_messages_published_total", &[], u(&node, "messages_published")),
        }
    }
    if wanted.is_none() {
        for (name, key, help) in [
            ("connections", "connections", "Connections currently open"),
            ("channels", "channels", "Channels currently open"),
            ("consumers", "consumers", "Consumers currently connected"),
            ("queues", "queues", "Queues available"),
        ] {
            o.one(name, "gauge", help, u(&node, key));
        }
    }
    // Cluster-wide families (detailed only; their names keep the `rabbitmq_cluster_` prefix).
    if let Some(w) = wanted {
        let cluster = |o: &mut Out, f: &dyn Fn(&mut Out)| {
            let p = o.prefix;
            o.prefix = "rabbitmq_cluster_";
            f(o);
            o.prefix = p;
        };
        if w.iter().any(|f| f == "vhost_status") {
            let vs = call("metrics.vhosts", "{}")?;
            cluster(&mut o, &|o| {
                o.family("vhost_status", "gauge", "Whether a given vhost is running");
                for v in vs.as_array().map_or(&[][..], Vec::as_slice) {
                    let name = v.as_str().unwrap_or("");
                    if vhosts.is_empty() || vhosts.iter().any(|x| x == name) {
                        o.sample("vhost_status", &[("vhost", name)], 1);
                    }
                }
            });
        }
        let (bindings, names) = (w.iter().any(|f| f == "exchange_bindings"), w.iter().any(|f| f == "exchange_names"));
        if bindings || names {
            let xs = call("metrics.exchanges", &vhost_args)?;
            cluster(&mut o, &|o| {
                if bindings {
                    o.family("exchange_bindings", "gauge", "Number of bindings for an exchange. This value is cluster-wide.");
                    for r in rows(&xs) {
                        o.sample("exchange_bindings", &[("vhost", s(r, 0)), ("exchange", s(r, 1)), ("type", s(r, 2))], n(r, 3));
                    }
                }
                if names {
                    o.family(
                        "exchange_name",
                        "gauge",
                        "Enumerates exchanges without any additional info. This value is cluster-wide. A cheaper alternative to `exchange_bindings`",
                    );
                    for r in rows(&xs) {
                        o.sample("exchange_name", &[("vhost", s(r, 0)), ("exchange", s(r, 1)), ("type", s(r, 2))], 1);
                    }
                }
            });
        }
    }

    // Always: build and identity info, with RabbitMQ's names.
    o.prefix = "rabbitmq_";
    let version = node.get("version").and_then(Value::as_str).unwrap_or("");
    o.family("build_info", "untyped", "RabbitMQ & Erlang/OTP version info");
    o.sample(
        "build_info",
        &[("rabbitmq_version", version), ("prometheus_plugin_version", version), ("prometheus_client_version", version), ("erlang_version", "")],
        1,
    );
    let text_of = |k: &str| node.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    o.family("identity_info", "untyped", "RabbitMQ node & cluster identity info");
    o.sample(
        "identity_info",
        &[("rabbitmq_node", &text_of("node")), ("rabbitmq_cluster", &text_of("cluster")), ("rabbitmq_cluster_permanent_id", &text_of("cluster_id"))],
        1,
    );

    if wanted.is_none() {
        global(&mut o, &node, &c);
    }
    Ok(o.s)
}

/// A channel's label value: RabbitMQ puts the Erlang pid of the channel process there; Warren
/// writes `<0.CONNECTION.NUMBER>` (its connection's is `<0.CONNECTION.0>`, and channel numbers
/// start at 1, so the two never meet).
fn channel_label(conn: u64, number: u64) -> String {
    format!("<0.{conn}.{number}>")
}

/// RabbitMQ's detailed families of per-channel metrics, in its order.
const CHANNEL_GROUPS: [&str; 3] = ["channel_metrics", "channel_exchange_metrics", "channel_queue_metrics"];

/// The per-channel families: (group, name, type, help, column of `metrics.channels`).
const CHANNEL_FAMILIES: [(&str, &str, &str, &str, usize); 18] = [
    ("channel_metrics", "channel_consumers", "gauge", "Consumers on a channel", 3),
    ("channel_metrics", "channel_messages_unacked", "gauge", "Delivered but not yet acknowledged messages", 4),
    ("channel_metrics", "channel_messages_unconfirmed", "gauge", "Published but not yet confirmed messages", 5),
    ("channel_metrics", "channel_messages_uncommitted", "gauge", "Messages received in a transaction but not yet committed", 6),
    ("channel_metrics", "channel_acks_uncommitted", "gauge", "Message acknowledgements in a transaction not yet committed", 7),
    ("channel_metrics", "consumer_prefetch", "gauge", "Limit of unacknowledged messages for each consumer", 8),
    ("channel_metrics", "channel_prefetch", "gauge", "Total limit of unacknowledged messages for all consumers on a channel", 9),
    ("channel_exchange_metrics", "channel_messages_published_total", "counter", "Total number of messages published into an exchange on a channel", 10),
    (
        "channel_exchange_metrics",
        "channel_messages_confirmed_total",
        "counter",
        "Total number of messages published into an exchange and confirmed on the channel",
        11,
    ),
    (
        "channel_exchange_metrics",
        "channel_messages_unroutable_returned_total",
        "counter",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        12,
    ),
    (
        "channel_exchange_metrics",
        "channel_messages_unroutable_dropped_total",
        "counter",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        13,
    ),
    ("channel_queue_metrics", "channel_get_ack_total", "counter", "Total number of messages fetched with basic.get in manual acknowledgement mode", 14),
    ("channel_queue_metrics", "channel_get_total", "counter", "Total number of messages fetched with basic.get in automatic acknowledgement mode", 15),
    (
        "channel_queue_metrics",
        "channel_messages_delivered_ack_total",
        "counter",
        "Total number of messages delivered to consumers in manual acknowledgement mode",
        16,
    ),
    (
        "channel_queue_metrics",
        "channel_messages_delivered_total",
        "counter",
        "Total number of messages delivered to consumers in automatic acknowledgement mode",
        17,
    ),
    ("channel_queue_metrics", "channel_messages_redelivered_total", "counter", "Total number of messages redelivered to consumers", 18),
    ("channel_queue_metrics", "channel_messages_acked_total", "counter", "Total number of messages acknowledged by consumers", 19),
    ("channel_queue_metrics", "channel_get_empty_total", "counter", "Total number of times basic.get operations fetched no message", 20),
];

/// The per-channel families from `metrics.channels` rows (the open channels, as RabbitMQ's,
/// whose aggregated endpoint sums them over its open channels).
///
/// Per object, the gauges carry the `channel` label. RabbitMQ keeps the counters per channel
/// and exchange (publish side) or per channel and queue (delivery side); Warren keeps them per
/// channel, so its samples carry `channel` and `vhost` and are the sums over exchanges or
/// queues. As RabbitMQ's, a channel has publish-side samples once it has published and
/// delivery-side samples once it has consumed or fetched.
fn channels(o: &mut Out, chans: &[Value], per_object: bool, wants: &dyn Fn(&str) -> bool) {
    let labels: Vec<String> = chans.iter().map(|r| channel_label(n(r, 0), n(r, 1))).collect();
    let active = |r: &Value, cols: std::ops::RangeInclusive<usize>| cols.into_iter().any(|i| n(r, i) > 0);
    for (group, name, kind, help, col) in CHANNEL_FAMILIES {
        if !wants(group) {
            continue;
        }
        o.family(name, kind, help);
        if !per_object {
            o.sample(name, &[], chans.iter().map(|r| n(r, col)).sum());
            continue;
        }
        for (r, label) in chans.iter().zip(&labels) {
            match group {
                "channel_metrics" => o.sample(name, &[("channel", label)], n(r, col)),
                "channel_exchange_metrics" if active(r, 10..=10) => o.sample(name, &[("channel", label), ("vhost", s(r, 2))], n(r, col)),
                "channel_queue_metrics" if active(r, 14..=20) => o.sample(name, &[("channel", label), ("vhost", s(r, 2))], n(r, col)),
                _ => {}
            }
        }
    }
}

/// RabbitMQ's global counters (`rabbitmq_global_*`), labelled by protocol and queue type.
fn global(o: &mut Out, node: &Value, c: &Value) {
    let proto = [("protocol", "amqp091")];
    o.family("global_consumers", "gauge", "Current number of consumers");
    o.sample("global_consumers", &proto, u(node, "consumers"));
    let per_type = |o: &mut Out, name: &str, help: &str, key: &str| {
        o.family(name, "counter", help);
        let vals = c.get(key).and_then(Value::as_array);
        // Warren has classic and quorum queues; streams do not exist, so they count nothing.
        for (i, t) in QUEUE_TYPES.iter().enumerate() {
            let v = vals.and_then(|a| a.get(i)).and_then(Value::as_u64).unwrap_or(0);
            o.sample(name, &[("protocol", "amqp091"), ("queue_type", t)], v);
        }
    };
    let plain = |o: &mut Out, name: &str, help: &str, key: &str| {
        o.family(name, "counter", help);
        o.sample(name, &[("protocol", "amqp091")], u(c, key));
    };
    per_type(o, "global_messages_acknowledged_total", "Total number of messages acknowledged by consumers", "acknowledged");
    plain(o, "global_messages_confirmed_total", "Total number of messages confirmed to publishers", "confirmed");
    per_type(
        o,
        "global_messages_delivered_consume_auto_ack_total",
        "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
        "delivered_consume_auto_ack",
    );
    per_type(
        o,
        "global_messages_delivered_consume_manual_ack_total",
        "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
        "delivered_consume_manual_ack",
    );
    per_type(
        o,
        "global_messages_delivered_get_auto_ack_total",
        "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
        "delivered_get_auto_ack",
    );
    per_type(
        o,
        "global_messages_delivered_get_manual_ack_total",
        "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
        "delivered_get_manual_ack",
    );
    per_type(o, "global_messages_delivered_total", "Total number of messages delivered to consumers", "delivered");
    per_type(o, "global_messages_get_empty_total", "Total number of times basic.get operations fetched no message", "get_empty");
    plain(
        o,
        "global_messages_received_confirm_total",
        "Total number of messages received from publishers expecting confirmations",
        "received_confirm",
    );
    plain(o, "global_messages_received_total", "Total number of messages received from publishers", "received");
    per_type(o, "global_messages_redelivered_total", "Total number of messages redelivered to consumers", "redelivered");
    plain(o, "global_messages_routed_total", "Total number of messages routed to queues or streams", "routed");
    plain(
        o,
        "global_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        "unroutable_dropped",
    );
    plain(
        o,
        "global_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        "unroutable_returned",
    );
    o.family("global_publishers", "gauge", "Current number of publishers");
    o.sample("global_publishers", &proto, u(c, "publishers"));
}
