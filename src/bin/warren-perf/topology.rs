//! Declaring (and later deleting) the exchange, queues and bindings of a run.

use crate::args::Args;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::{
    BasicProperties, Channel, Connection, ExchangeKind,
    options::{ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable, ShortString},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where producers send: one entry per routing target, used round-robin.
#[derive(Clone)]
pub struct Target {
    pub routing_key: ShortString,
    pub properties: BasicProperties,
}

pub struct Topology {
    pub exchange: String,
    pub queues: Vec<String>,
    pub targets: Vec<Target>,
}

pub fn queue_name(i: u32) -> String {
    format!("perf-q-{i}")
}

/// Header used to route through a headers exchange: each queue is bound with
/// x-match=all and perf-queue=<queue name>.
const HEADER_KEY: &str = "perf-queue";

fn exchange_kind(t: &str) -> ExchangeKind {
    match t {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_string()),
    }
}

fn is_predeclared(exchange: &str) -> bool {
    exchange.is_empty() || exchange.starts_with("amq.")
}

/// Topic pattern number `i` with `k` patterns per group: for `k` = 1 alternately `k.<i>.*` and
/// `k.<i>.#`; otherwise pattern `i % k` of `k.<g>.*`, `k.<g>.#`, `*.<g>.r`, `#.<g>.r` for group
/// `g = i / k`, so the key `k.<g>.r` matches all `k` patterns of its group.
fn topic_pattern(i: u32, k: u32) -> String {
    if k <= 1 {
        return if i % 2 == 0 { format!("k.{i}.*") } else { format!("k.{i}.#") };
    }
    let g = i / k;
    match i % k {
        0 => format!("k.{g}.*"),
        1 => format!("k.{g}.#"),
        2 => format!("*.{g}.r"),
        _ => format!("#.{g}.r"),
    }
}

/// Binding arguments of header binding `i`: alternately x-match=all {a: "v<g>", b: <g>} and
/// x-match=any {c: "v<g>", d: "w<g>"}, `g = i / 2`.
fn header_binding(i: u32) -> FieldTable {
    let g = i / 2;
    let mut t = FieldTable::default();
    if i % 2 == 0 {
        t.insert("x-match".into(), AMQPValue::LongString("all".into()));
        t.insert("a".into(), AMQPValue::LongString(format!("v{g}").into()));
        t.insert("b".into(), AMQPValue::LongInt(g as i32));
    } else {
        t.insert("x-match".into(), AMQPValue::LongString("any".into()));
        t.insert("c".into(), AMQPValue::LongString(format!("v{g}").into()));
        t.insert("d".into(), AMQPValue::LongString(format!("w{g}").into()));
    }
    t
}

/// Headers of message set `j` of `m` over `n` header bindings: even `j` match both bindings of
/// one group (spread evenly over the groups), odd `j` match none; every set also carries two
/// headers no binding reads, as application messages do.
fn generated_headers(j: u32, m: u32, n: u32) -> FieldTable {
    let groups = n.div_ceil(2).max(1);
    let mut h = FieldTable::default();
    h.insert("source".into(), AMQPValue::LongString("warren-perf".into()));
    h.insert("seq".into(), AMQPValue::LongInt(j as i32));
    if j % 2 == 0 {
        let g = ((j as u64 * groups as u64) / m.max(1) as u64) as u32 % groups;
        h.insert("a".into(), AMQPValue::LongString(format!("v{g}").into()));
        h.insert("b".into(), AMQPValue::LongInt(g as i32));
        h.insert("c".into(), AMQPValue::LongString(format!("v{g}").into()));
    } else {
        h.insert("a".into(), AMQPValue::LongString(format!("none{j}").into()));
        h.insert("c".into(), AMQPValue::LongString(format!("none{j}").into()));
    }
    h
}

/// Routing key number `j` of `m`: even j match one of the `n` topic patterns
/// (spread evenly over them), odd j match none.
fn generated_routing_key(j: u32, m: u32, n: u32) -> String {
    if n == 0 {
        return format!("k.{j}.r");
    }
    if j % 2 == 0 {
        let b = ((j as u64 * n as u64) / m.max(1) as u64) as u32 % n;
        format!("k.{b}.r")
    } else {
        format!("n.{j}.r")
    }
}

async fn delete_queue_if_exists(conn: &Connection, ch: Channel, name: &str) -> Result<Channel, BoxError> {
    match ch.queue_delete(name.into(), QueueDeleteOptions::default()).await {
        Ok(_) => Ok(ch),
        // Some brokers answer 404 for a missing queue and close the channel.
        Err(_) => Ok(conn.create_channel().await?),
    }
}

/// Declares everything on `conn` (a dedicated setup connection). Pre-existing
/// perf queues are deleted first so every run starts empty and a
/// durable/transient mismatch with an earlier run cannot fail the declare.
pub async fn declare(conn: &Connection, args: &Args) -> Result<Topology, BoxError> {
    let mut ch = conn.create_channel().await?;
    let exchange = args.exchange_name();
    let ex_type = args.effective_exchange_type();
    let queues: Vec<String> = (0..args.queues).map(queue_name).collect();

    if !args.keep_queues {
        for q in &queues {
            ch = delete_queue_if_exists(conn, ch, q).await?;
        }
    }
    if let Some(t) = &ex_type {
        if !is_predeclared(&exchange) {
            if ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await.is_err() {
                ch = conn.create_channel().await?;
            }
            let opts = ExchangeDeclareOptions { durable: args.persistent, ..Default::default() };
            ch.exchange_declare(exchange.as_str().into(), exchange_kind(t), opts, FieldTable::default())
                .await?;
        }
    }
    for q in &queues {
        let opts = QueueDeclareOptions { durable: args.persistent, ..Default::default() };
        ch.queue_declare(q.as_str().into(), opts, FieldTable::default()).await?;
    }

    // Bindings: pipelined, at most 64 outstanding, so 10,000 of them take a
    // fraction of a second instead of 10,000 round trips.
    let mut bindings: Vec<(String, String, FieldTable)> = Vec::new();
    let headers = ex_type.as_deref() == Some("headers");
    if ex_type.is_some() {
        if args.topic_bindings > 0 {
            for i in 0..args.topic_bindings {
                let q = &queues[(i % args.queues) as usize];
                bindings.push((q.clone(), topic_pattern(i, args.topic_matches), FieldTable::default()));
            }
        } else if args.header_bindings > 0 {
            for i in 0..args.header_bindings {
                let q = &queues[(i % args.queues) as usize];
                bindings.push((q.clone(), String::new(), header_binding(i)));
            }
        } else {
            for q in &queues {
                let mut table = FieldTable::default();
                if headers {
                    table.insert("x-match".into(), AMQPValue::LongString("all".into()));
                    table.insert(HEADER_KEY.into(), AMQPValue::LongString(q.as_str().into()));
                }
                let key = args.binding_key.clone().unwrap_or_else(|| q.clone());
                bindings.push((q.clone(), key, table));
            }
        }
    }
    {
        let ch = &ch;
        let exchange = exchange.as_str();
        let mut pending = FuturesUnordered::new();
        for (q, key, table) in bindings {
            if pending.len() >= 64 {
                pending.next().await.expect("non-empty")?;
            }
            pending.push(async move {
                ch.queue_bind(q.as_str().into(), exchange.into(), key.as_str().into(), QueueBindOptions::default(), table)
                    .await
            });
        }
        while let Some(r) = pending.next().await {
            r?;
        }
    }
    let _ = ch.close(200, "setup done".into()).await;

    let base = if args.persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let targets = if args.header_bindings > 0 {
        (0..args.routing_keys.max(1))
            .map(|j| Target {
                routing_key: "".into(),
                properties: base.clone().with_headers(generated_headers(j, args.routing_keys.max(1), args.header_bindings)),
            })
            .collect()
    } else if args.routing_keys > 0 {
        let groups = args.topic_bindings.div_ceil(args.topic_matches);
        (0..args.routing_keys)
            .map(|j| Target {
                routing_key: generated_routing_key(j, args.routing_keys, groups).into(),
                properties: base.clone(),
            })
            .collect()
    } else {
        queues
            .iter()
            .map(|q| {
                let properties = if headers {
                    let mut h = FieldTable::default();
                    h.insert(HEADER_KEY.into(), AMQPValue::LongString(q.as_str().into()));
                    base.clone().with_headers(h)
                } else {
                    base.clone()
                };
                Target { routing_key: q.as_str().into(), properties }
            })
            .collect()
    };
    Ok(Topology { exchange, queues, targets })
}

/// Deletes the queues and the exchange of a transient run.
pub async fn cleanup(conn: &Connection, topo: &Topology) -> Result<(), BoxError> {
    let mut ch = conn.create_channel().await?;
    for q in &topo.queues {
        ch = delete_queue_if_exists(conn, ch, q).await?;
    }
    if !is_predeclared(&topo.exchange) {
        let _ = ch.exchange_delete(topo.exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
    }
    let _ = ch.close(200, "cleanup done".into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_alternate_matching_and_not() {
        assert_eq!(generated_routing_key(0, 1000, 10000), "k.0.r");
        assert_eq!(generated_routing_key(1, 1000, 10000), "n.1.r");
        assert_eq!(generated_routing_key(2, 1000, 10000), "k.20.r");
        assert_eq!(topic_pattern(20, 1), "k.20.*");
        assert_eq!(topic_pattern(21, 1), "k.21.#");
        assert_eq!(topic_pattern(14, 3), "*.4.r");
        assert_eq!(topic_pattern(15, 4), "#.3.r");
    }

    #[test]
    fn header_sets_alternate_matching_and_not() {
        let m = generated_headers(0, 10, 1000);
        assert_eq!(m.inner().get("b"), Some(&AMQPValue::LongInt(0)));
        let m = generated_headers(2, 10, 1000);
        assert_eq!(m.inner().get("a"), Some(&AMQPValue::LongString("v100".into())));
        assert_eq!(header_binding(201).inner().get("d"), Some(&AMQPValue::LongString("w100".into())));
        assert_eq!(generated_headers(3, 10, 1000).inner().get("b"), None);
    }
}
