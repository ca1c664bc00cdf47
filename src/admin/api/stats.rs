//! Rates (`*_details.rate`) of the broker's counters (`broker/stats.rs`), sampled when the API
//! is read: each counter's value is remembered with the time it was read, and its rate is the
//! change per second over the last sampling window (at least [`WINDOW`], RabbitMQ's 5 s sample
//! interval). The message path pays only its relaxed atomic adds; everything here runs on API
//! reads, with one lock per answer (not per counter) and no allocation per counter read.

use crate::broker::stats::{Snapshot, Stat};
use parking_lot::{Mutex, MutexGuard};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Rates are computed over at least this much time.
pub const WINDOW: Duration = Duration::from_secs(5);

/// A counter not read for this long is dropped from the sample table.
const FORGET: Duration = Duration::from_secs(600);

/// What a sampled counter belongs to (with the object's address, a sample's key).
#[derive(Clone, Copy, Hash, PartialEq, Eq, Debug)]
pub enum Kind {
    Overview,
    Vhost,
    Queue,
    Exchange,
    Channel,
    Connection,
}

/// Per counter: the sample the current rate is computed against, and the last rate.
struct Sample {
    at: Instant,
    value: i64,
    rate: f64,
    read: Instant,
}

#[derive(Default)]
struct Table {
    samples: HashMap<(Kind, usize, &'static str), Sample>,
    swept: Option<Instant>,
}

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(Mutex::default)
}

/// The sample table, locked for one API answer.
pub struct Rates {
    t: MutexGuard<'static, Table>,
    now: Instant,
}

impl Rates {
    pub fn begin() -> Rates {
        let now = Instant::now();
        let mut t = table().lock();
        // Counters of deleted objects are forgotten once no one has read them for a while
        // (swept at most once a window, so a list of 10,000 queues stays linear).
        if t.swept.is_none_or(|s| now.duration_since(s) >= WINDOW) {
            t.samples.retain(|_, v| now.duration_since(v.read) < FORGET);
            t.swept = Some(now);
        }
        Rates { t, now }
    }

    /// The rate per second of counter (or gauge) `key` of object `id`, now at `value`.
    pub fn rate(&mut self, kind: Kind, id: usize, key: &'static str, value: i64) -> f64 {
        let now = self.now;
        let e = self.t.samples.entry((kind, id, key)).or_insert(Sample { at: now, value, rate: 0.0, read: now });
        e.read = now;
        let dt = now.duration_since(e.at);
        if dt >= WINDOW {
            e.rate = (value - e.value) as f64 / dt.as_secs_f64();
            e.at = now;
            e.value = value;
        }
        (e.rate * 10.0).round() / 10.0
    }

    /// Sets `row[key]` to `value` and `row[key_details]` to `{"rate": r}`.
    pub fn put(&mut self, row: &mut Map<String, Value>, kind: Kind, id: usize, key: &'static str, value: u64) {
        let r = self.rate(kind, id, key, value as i64);
        row.insert(key.to_string(), json!(value));
        row.insert(format!("{key}_details"), json!({"rate": r}));
    }

    /// RabbitMQ's `message_stats` object of `snap` with the keys `keys` (plus `deliver_get`,
    /// the sum of deliver, deliver_no_ack, get and get_no_ack, when `deliver` is among them).
    pub fn message_stats(&mut self, kind: Kind, id: usize, snap: &Snapshot, keys: &[Stat]) -> Value {
        let mut m = Map::new();
        for s in keys {
            self.put(&mut m, kind, id, s.name(), snap.get(*s));
        }
        if keys.contains(&Stat::Deliver) {
            let dg = [Stat::Deliver, Stat::DeliverNoAck, Stat::Get, Stat::GetNoAck].iter().map(|s| snap.get(*s)).sum();
            self.put(&mut m, kind, id, "deliver_get", dg);
        }
        Value::Object(m)
    }
}

/// The keys of a queue's `message_stats`.
pub const QUEUE_KEYS: [Stat; 8] =
    [Stat::Publish, Stat::Deliver, Stat::DeliverNoAck, Stat::Get, Stat::GetNoAck, Stat::GetEmpty, Stat::Ack, Stat::Redeliver];

/// The keys of a channel's and the overview's `message_stats` (all of them).
pub const CHANNEL_KEYS: [Stat; 11] = Stat::MESSAGE_STATS;

/// An object's address: its key in the sample table.
pub fn id<T>(x: &T) -> usize {
    x as *const T as usize
}

/// The counters of queue `q` (its `publish` is `Queue::published`).
pub fn queue_snapshot(q: &crate::broker::queue::Queue) -> Snapshot {
    let mut s = q.stats.snapshot();
    s.0[Stat::Publish as usize] = q.published.load(std::sync::atomic::Ordering::Relaxed);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_read_is_zero_then_change_per_second() {
        let mut r = Rates::begin();
        let id = 0xdead_0001;
        assert_eq!(r.rate(Kind::Queue, id, "publish", 10), 0.0);
        // Pretend the sample is a window old.
        r.t.samples.get_mut(&(Kind::Queue, id, "publish")).unwrap().at = r.now - Duration::from_secs(10);
        assert_eq!(r.rate(Kind::Queue, id, "publish", 110), 10.0);
        // A gauge may fall.
        r.t.samples.get_mut(&(Kind::Queue, id, "publish")).unwrap().at = r.now - Duration::from_secs(10);
        assert_eq!(r.rate(Kind::Queue, id, "publish", 10), -10.0);
    }
}
