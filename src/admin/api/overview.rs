//! `/api/overview`, `/api/nodes`, `/api/aliveness-test/VHOST`, `/api/health/checks/*`.

use super::{ApiError, ApiResult, Caller, args};
use crate::alarm::NODE_NAME;
use crate::broker::Broker;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

fn exchange_types(broker: &Broker) -> Value {
    Value::Array(
        broker
            .exchange_types()
            .iter()
            .map(|t| json!({"name": t.info().name, "description": t.info().description, "enabled": true}))
            .collect(),
    )
}

fn listeners(broker: &Broker) -> Value {
    json!([{
        "node": NODE_NAME,
        "protocol": "amqp",
        "ip_address": broker.config.amqp.bind,
        "port": broker.config.amqp.port,
    }])
}

pub fn overview(broker: &Arc<Broker>, caller: &Caller) -> ApiResult {
    let vhosts: Vec<_> = broker.vhosts().into_iter().filter(|v| caller.sees_vhost(broker, &v.name)).collect();
    let (mut queues, mut exchanges, mut consumers, mut ready, mut unacked) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for v in &vhosts {
        exchanges += v.exchanges.read().len() as u64 + 1;
        for q in v.queues.read().values() {
            queues += 1;
            let (m, c) = q.counts();
            ready += m as u64;
            consumers += c as u64;
            unacked += q.unacked.load(Relaxed);
        }
    }
    let (connections, channels) = {
        let conns = broker.connections.lock();
        let mine = conns.values().filter(|c| caller.is("monitoring") || c.user == caller.name());
        mine.fold((0u64, 0u64), |(n, ch), c| (n + 1, ch + c.channels.load(Relaxed) as u64))
    };
    let published = super::stats::published(broker, None);
    let rate = super::stats::rate(format!("{}/overview", Arc::as_ptr(broker) as usize), published);
    let version = env!("CARGO_PKG_VERSION");
    Ok(json!({
        "management_version": version,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(broker),
        "product_version": version,
        "product_name": "Warren",
        "rabbitmq_version": "3.10.8",
        "cluster_name": NODE_NAME,
        "erlang_version": "",
        "erlang_full_version": "",
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": {"publish": published, "publish_details": {"rate": rate}},
        "churn_rates": {},
        "queue_totals": {
            "messages": ready + unacked, "messages_details": {"rate": 0.0},
            "messages_ready": ready, "messages_ready_details": {"rate": 0.0},
            "messages_unacknowledged": unacked, "messages_unacknowledged_details": {"rate": 0.0},
        },
        "object_totals": {"channels": channels, "connections": connections, "consumers": consumers, "exchanges": exchanges, "queues": queues},
        "statistics_db_event_queue": 0,
        "node": NODE_NAME,
        "listeners": listeners(broker),
        "contexts": [],
    }))
}

pub fn nodes(broker: &Arc<Broker>, caller: &Caller) -> ApiResult {
    caller.require("monitoring")?;
    let mem = &broker.memory;
    let alarms = broker.alarms.resources();
    let disk_alarm = alarms.iter().any(|r| r.name() == "disk");
    let mem_alarm = alarms.iter().any(|r| r.name() == "memory");
    Ok(json!([{
        "name": NODE_NAME,
        "type": "disc",
        "running": true,
        "being_drained": false,
        "os_pid": std::process::id().to_string(),
        "uptime": 0,
        "mem_used": mem.sample().unwrap_or(mem.used()),
        "mem_limit": mem.limit(),
        "mem_alarm": mem_alarm,
        "mem_calculation_strategy": "rss",
        "disk_free": broker.disk.free(),
        "disk_free_limit": broker.disk.limit(),
        "disk_free_alarm": disk_alarm,
        "db_dir": broker.config.storage.data_dir.display().to_string(),
        "exchange_types": exchange_types(broker),
        "partitions": [],
        "applications": [],
        "contexts": [],
        "enabled_plugins": [],
    }]))
}

#[derive(Deserialize)]
struct Vhost {
    vhost: String,
}

/// Declares `aliveness-test` in the vhost, publishes a message to it and gets it back (as
/// RabbitMQ); `{"status":"ok"}`.
pub fn aliveness(broker: &Arc<Broker>, caller: &Caller, a: &Value) -> ApiResult {
    let v: Vhost = args(a)?;
    let vhost = caller.vhost(broker, &v.vhost)?;
    let empty = amq_protocol::types::FieldTable::default();
    let d = crate::broker::QueueDecl {
        name: "aliveness-test",
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: &empty,
        owner: 0,
        server_named: false,
    };
    let (q, _, _) = vhost.declare_queue(&d)?;
    let props = amq_protocol::protocol::basic::AMQPProperties::default();
    let body = bytes::Bytes::from_static(b"test_message");
    let msg = crate::broker::message::Message {
        exchange: String::new(),
        routing_key: "aliveness-test".into(),
        header_raw: crate::protocol::frame::encode_header(body.len() as u64, &props),
        properties: props,
        body,
    };
    crate::broker::publish::publish(&vhost, None, msg, false, None)?;
    match q.get() {
        Some((r, _)) if &r.msg.body[..] == b"test_message" => {
            q.forget(r.seq);
            Ok(json!({"status": "ok"}))
        }
        _ => Ok(json!({"status": "failed", "reason": "aliveness-test message not received"})),
    }
}

#[derive(Deserialize)]
struct Check {
    check: String,
    #[serde(default)]
    arg: Option<String>,
}

/// `GET /api/health/checks/CHECK[/ARG]`: `{"status":"ok"...}` or `{"status":"failed",
/// "reason":...}` (the HTTP answer is then 503).
pub fn health(broker: &Arc<Broker>, _caller: &Caller, a: &Value) -> ApiResult {
    let c: Check = args(a)?;
    let failed = |reason: String, extra: Value| {
        let mut body = json!({"status": "failed", "reason": reason});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Ok(body)
    };
    match (c.check.as_str(), c.arg.as_deref()) {
        ("alarms" | "local-alarms", None) => {
            let alarms = broker.alarms.resources();
            if alarms.is_empty() {
                Ok(json!({"status": "ok"}))
            } else {
                let list: Vec<Value> = alarms.iter().map(|r| json!({"node": NODE_NAME, "resource": r.name()})).collect();
                failed("There are alarms in effect in the cluster".into(), json!({"alarms": list}))
            }
        }
        ("virtual-hosts", None) => Ok(json!({"status": "ok"})),
        ("node-is-quorum-critical" | "node-is-mirror-sync-critical", None) => {
            Ok(json!({"status": "ok", "reason": "single node cluster"}))
        }
        ("certificate-expiration", _) => Ok(json!({"status": "ok"})),
        ("port-listener", Some(p)) => {
            let port: u16 = p.parse().map_err(|_| ApiError::bad_request(format!("invalid port {p}")))?;
            if port == broker.config.amqp.port {
                Ok(json!({"status": "ok", "port": port}))
            } else {
                failed("No active listener".into(), json!({"missing": port, "ports": [broker.config.amqp.port]}))
            }
        }
        ("protocol-listener", Some(p)) => {
            if matches!(p, "amqp" | "amqp091" | "amqp0-9-1" | "amqp0.9.1") {
                Ok(json!({"status": "ok", "protocol": "amqp"}))
            } else {
                failed("No active listener".into(), json!({"missing": p, "protocols": ["amqp"]}))
            }
        }
        _ => Err(ApiError::not_found()),
    }
}
