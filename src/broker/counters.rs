//! The broker's churn counters (connections, channels and queues opened/closed/declared/
//! created/deleted, and the `publishers` gauge): relaxed atomic increments where things
//! happen. One set per broker ([`super::Broker::counters`]), shared by its vhosts; read by the
//! metrics admin operations (`admin::api::metrics`). Nothing here is bumped per message: the
//! global message totals (RabbitMQ's `rabbit_global_counters`) are sums of the per-object
//! counters of `stats.rs`, taken when they are read.

use super::queue_args::QueueType;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// The label values of the queue types (index [`type_index`]: 0 classic, 1 quorum; RabbitMQ's
/// `queue_type` label).
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
    /// Gauge: open channels that have published (RabbitMQ's `publishers`).
    pub publishers: AtomicU64,
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
