//! Message rates (`*_details.rate`) from the broker's cheap counters, sampled by the host: each
//! counter's value is remembered with the time it was read, and the rate is the change per
//! second over the last sampling window (at least [`WINDOW`], as RabbitMQ's 5 s sample
//! interval), so reading the API costs nothing on the message path.

use crate::broker::Broker;
use crate::broker::queue::Queue;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Rates are computed over at least this much time.
pub const WINDOW: Duration = Duration::from_secs(5);

/// A counter not read for this long is dropped from the sample table.
const FORGET: Duration = Duration::from_secs(600);

/// Per counter: the sample the current rate is computed against, and the last rate.
struct Sample {
    at: Instant,
    value: u64,
    rate: f64,
}

fn samples() -> &'static Mutex<HashMap<String, Sample>> {
    static S: OnceLock<Mutex<HashMap<String, Sample>>> = OnceLock::new();
    S.get_or_init(Mutex::default)
}

/// The rate of counter `key` (now at `value`) per second.
pub fn rate(key: String, value: u64) -> f64 {
    let now = Instant::now();
    let mut s = samples().lock();
    // Counters of deleted queues are forgotten once no one has read them for a while.
    if s.len() > 1024 {
        s.retain(|_, v| now.duration_since(v.at) < FORGET);
    }
    let e = s.entry(key).or_insert(Sample { at: now, value, rate: 0.0 });
    let dt = now.duration_since(e.at);
    if dt >= WINDOW {
        e.rate = value.saturating_sub(e.value) as f64 / dt.as_secs_f64();
        e.at = now;
        e.value = value;
    }
    (e.rate * 10.0).round() / 10.0
}

fn broker_key(broker: &Broker) -> usize {
    broker as *const Broker as usize
}

/// `message_stats.publish` of a queue (messages published into it) with its rate.
pub fn queue_rates(broker: &Broker, q: &Queue, row: &mut Value) {
    let published = q.published.load(Relaxed);
    let r = rate(format!("{}/q/{}/{}", broker_key(broker), q.vhost, q.name), published);
    row["message_stats"] = json!({"publish": published, "publish_details": {"rate": r}});
}

/// Messages published into the queues of vhost `name` (None: all vhosts).
pub fn published(broker: &Broker, vhost: Option<&str>) -> u64 {
    broker
        .vhosts()
        .iter()
        .filter(|v| vhost.is_none_or(|n| n == v.name))
        .flat_map(|v| v.queues.read().values().map(|q| q.published.load(Relaxed)).collect::<Vec<_>>())
        .sum()
}

pub fn vhost_rates(broker: &Broker, name: &str, row: &mut Value) {
    let p = published(broker, Some(name));
    let r = rate(format!("{}/v/{name}", broker_key(broker)), p);
    row["message_stats"] = json!({"publish": p, "publish_details": {"rate": r}});
}
