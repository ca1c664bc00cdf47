//! The broker's global counters (RabbitMQ's `rabbit_global_counters` and connection/channel/queue
//! churn): relaxed atomic increments where things happen, no lock and no allocation on the
//! message path. One set per broker ([`super::Broker::counters`]), shared by its vhosts and
//! connections; read by the metrics admin operations (`admin::api::metrics`).

use super::queue_args::QueueType;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// Counters per queue type: index 0 classic, 1 quorum (RabbitMQ's `queue_type` label).
pub type PerType = [AtomicU64; 2];

/// The label values of [`PerType`]'s entries.
pub const QUEUE_TYPES: [&str; 2] = ["rabbit_classic_queue", "rabbit_quorum_queue"];

#[inline]
pub fn type_index(t: QueueType) -> usize {
    match t {
        QueueType::Classic => 0,
        QueueType::Quorum => 1,
    }
}

#[derive(Default, Debug)]
pub struct Counters {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub channels_opened: AtomicU64,
    pub channels_closed: AtomicU64,
    /// Non-passive queue.declare (and the management API's PUT) of a queue, new or existing.
    pub queues_declared: AtomicU64,
    pub queues_created: AtomicU64,
    pub queues_deleted: AtomicU64,
    /// Messages published by clients (basic.publish, whether it routes or not).
    pub received: AtomicU64,
    /// ... of them on channels in confirm mode.
    pub received_confirm: AtomicU64,
    /// ... that reached at least one queue.
    pub routed: AtomicU64,
    /// ... that reached no queue and were dropped (not mandatory).
    pub unroutable_dropped: AtomicU64,
    /// ... that reached no queue and were returned (mandatory).
    pub unroutable_returned: AtomicU64,
    /// Publisher confirms (basic.ack) sent, per message.
    pub confirmed: AtomicU64,
    /// Gauge: open channels that have published (RabbitMQ's `publishers`).
    pub publishers: AtomicU64,
    pub delivered_consume_auto_ack: PerType,
    pub delivered_consume_manual_ack: PerType,
    pub delivered_get_auto_ack: PerType,
    pub delivered_get_manual_ack: PerType,
    pub get_empty: PerType,
    pub redelivered: PerType,
    pub acknowledged: PerType,
}

#[inline]
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.fetch_add(n, Relaxed);
    }
}

impl Counters {
    /// A delivery from a queue of type `t` (`get`: basic.get, else to a consumer).
    #[inline]
    pub fn delivered(&self, t: QueueType, get: bool, no_ack: bool, redelivered: bool) {
        let i = type_index(t);
        let c = match (get, no_ack) {
            (false, true) => &self.delivered_consume_auto_ack,
            (false, false) => &self.delivered_consume_manual_ack,
            (true, true) => &self.delivered_get_auto_ack,
            (true, false) => &self.delivered_get_manual_ack,
        };
        c[i].fetch_add(1, Relaxed);
        if redelivered {
            self.redelivered[i].fetch_add(1, Relaxed);
        }
    }

    /// Deliveries of every kind from queues of type index `i` (RabbitMQ's
    /// `messages_delivered_total`).
    pub fn delivered_total(&self, i: usize) -> u64 {
        [&self.delivered_consume_auto_ack, &self.delivered_consume_manual_ack, &self.delivered_get_auto_ack, &self.delivered_get_manual_ack]
            .iter()
            .map(|c| c[i].load(Relaxed))
            .sum()
    }
}
