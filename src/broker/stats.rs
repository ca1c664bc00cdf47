//! Message counters for the management API's `message_stats` (RabbitMQ's keys): relaxed atomic
//! counters bumped where the event happens (no lock, no allocation), read and turned into
//! rates (`*_details.rate`) only when the API is read (`admin/api/stats.rs`).
//!
//! Who holds which counters:
//! - each channel ([`ChannelShared::stats`](super::delivery::ChannelShared)): everything it
//!   published, was confirmed, got delivered, got, acked, and what it published that no queue
//!   took (`return_unroutable` for mandatory messages, `drop_unroutable` for the others);
//! - each queue (`Queue::stats`): deliveries, gets, acks and redeliveries of its messages
//!   (`publish` is `Queue::published`);
//! - each exchange (`Exchange::stats`; the default exchange's in `Vhost::default_stats`):
//!   `publish_in` (messages published to it), `publish_out` (copies it routed to queues);
//! - the broker (`Broker::retired`): the totals of closed channels, so the overview's totals
//!   (retired + open channels) never go down when a channel closes; and
//!   the totals of deleted queues per queue type ([`Retired`]).
//!
//! These are the broker's only message counters: the global totals (RabbitMQ's
//! `rabbit_global_counters`, read by the metrics operations) are sums of them taken when they
//! are read: publish-side figures from the channels (retired + open), delivery-side figures
//! per queue type from the queues (retired + live).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// One counter of [`MessageStats`]; its RabbitMQ name is [`Stat::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Stat {
    Publish,
    Confirm,
    Deliver,
    DeliverNoAck,
    Get,
    GetNoAck,
    GetEmpty,
    Ack,
    Redeliver,
    ReturnUnroutable,
    DropUnroutable,
    /// Publishes on a channel in confirm mode (RabbitMQ's global `received_confirm`; not in
    /// `message_stats`).
    PublishConfirm,
    /// Publishes that every destination queue refused (x-overflow reject-publish): neither
    /// routed nor unroutable in RabbitMQ's global counters; not in `message_stats`.
    PublishRefused,
}

const COUNT: usize = 13;

impl Stat {
    pub const ALL: [Stat; COUNT] = [
        Stat::Publish,
        Stat::Confirm,
        Stat::Deliver,
        Stat::DeliverNoAck,
        Stat::Get,
        Stat::GetNoAck,
        Stat::GetEmpty,
        Stat::Ack,
        Stat::Redeliver,
        Stat::ReturnUnroutable,
        Stat::DropUnroutable,
        Stat::PublishConfirm,
        Stat::PublishRefused,
    ];

    /// The counters of RabbitMQ's `message_stats` (channels, overview), in its order: the
    /// first 11 of [`Stat::ALL`] (the two after them are Warren's own, never shown there).
    pub const MESSAGE_STATS: [Stat; 11] = match Stat::ALL.split_first_chunk::<11>() {
        Some((shown, _)) => *shown,
        None => panic!("Stat::ALL has at least 11 entries"),
    };

    /// The key in RabbitMQ's `message_stats`.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Publish => "publish",
            Stat::Confirm => "confirm",
            Stat::Deliver => "deliver",
            Stat::DeliverNoAck => "deliver_no_ack",
            Stat::Get => "get",
            Stat::GetNoAck => "get_no_ack",
            Stat::GetEmpty => "get_empty",
            Stat::Ack => "ack",
            Stat::Redeliver => "redeliver",
            Stat::ReturnUnroutable => "return_unroutable",
            Stat::DropUnroutable => "drop_unroutable",
            Stat::PublishConfirm => "publish_confirm",
            Stat::PublishRefused => "publish_refused",
        }
    }
}

/// The counters of one channel, queue or the broker.
#[derive(Default)]
pub struct MessageStats {
    counts: [AtomicU64; COUNT],
}

impl MessageStats {
    #[inline]
    pub fn add(&self, s: Stat, n: u64) {
        self.counts[s as usize].fetch_add(n, Relaxed);
    }

    #[inline]
    pub fn incr(&self, s: Stat) {
        self.add(s, 1);
    }

    /// Adds one to a counter that only one writer changes at a time: one thread, or threads
    /// that all hold the same lock while they count. A plain load and store instead of a
    /// locked read-modify-write (the message path counts 4 of these per delivered message).
    /// Each writer site says which it is; a counter that two unsynchronised threads can count
    /// must use [`MessageStats::incr`] (a lost update would be the only harm, never UB: the
    /// counter stays an atomic).
    #[inline]
    pub fn incr_owned(&self, s: Stat) {
        let c = &self.counts[s as usize];
        c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
    }

    pub fn get(&self, s: Stat) -> u64 {
        self.counts[s as usize].load(Relaxed)
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(std::array::from_fn(|i| self.counts[i].load(Relaxed)))
    }

    /// Adds `other`'s counts (a closing channel's totals go to the broker's).
    pub fn absorb(&self, other: &Snapshot) {
        for (c, v) in self.counts.iter().zip(other.0) {
            c.fetch_add(v, Relaxed);
        }
    }
}

/// Counter values read at one moment.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Snapshot(pub [u64; COUNT]);

impl Snapshot {
    pub fn get(&self, s: Stat) -> u64 {
        self.0[s as usize]
    }

    pub fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// What was counted since `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot(std::array::from_fn(|i| self.0[i].saturating_sub(earlier.0[i])))
    }

    /// Nothing counted yet (RabbitMQ leaves `message_stats` out of an idle channel's row).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }
}

/// The counters of closed channels and deleted queues (`Broker::retired`, shared with the
/// vhosts): a total is these plus the live objects' counters. Moving an object's counters here
/// and taking it out of its registry happen under [`Retired::moving`]; a reader that sums the
/// live objects and these holds [`Retired::reading`], so it never sees an object in both or in
/// neither, and a total never goes down.
#[derive(Default)]
pub struct Retired {
    lock: parking_lot::RwLock<()>,
    /// Closed channels' counters.
    pub channels: MessageStats,
    /// Deleted queues' counters, per queue type (index [`super::counters::type_index`]).
    pub queues: [MessageStats; 2],
}

impl Retired {
    /// Held while an object's counters move here and it leaves its registry.
    pub fn moving(&self) -> parking_lot::RwLockWriteGuard<'_, ()> {
        self.lock.write()
    }

    /// Held while a reader sums live objects and these.
    pub fn reading(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.lock.read()
    }
}

/// Where a deleted queue's counters went: what they were when it was deleted, and the totals
/// they were added to. What is counted after that (an ack of a message delivered before the
/// delete) follows when the queue is dropped, so the totals neither miss nor double a count.
pub struct RetiredAt {
    pub at: Snapshot,
    pub into: std::sync::Arc<Retired>,
}

/// An exchange's counters.
#[derive(Default)]
pub struct ExchangeStats {
    pub publish_in: AtomicU64,
    pub publish_out: AtomicU64,
}

impl ExchangeStats {
    /// One message published to the exchange, routed to `copies` queues.
    #[inline]
    pub fn published(&self, copies: usize) {
        self.publish_in.fetch_add(1, Relaxed);
        if copies > 0 {
            self.publish_out.fetch_add(copies as u64, Relaxed);
        }
    }
}

/// Bytes and reads/writes of one connection's socket (`recv_oct`, `recv_cnt`, `send_oct`,
/// `send_cnt`), bumped once per read or write, not per frame.
#[derive(Default)]
pub struct SocketStats {
    pub recv_oct: AtomicU64,
    pub recv_cnt: AtomicU64,
    pub send_oct: AtomicU64,
    pub send_cnt: AtomicU64,
}

impl SocketStats {
    #[inline]
    pub fn received(&self, n: usize) {
        self.recv_oct.fetch_add(n as u64, Relaxed);
        self.recv_cnt.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn sent(&self, n: usize) {
        self.send_oct.fetch_add(n as u64, Relaxed);
        self.send_cnt.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_absorb() {
        let ch = MessageStats::default();
        ch.incr(Stat::Publish);
        ch.add(Stat::Ack, 3);
        let total = MessageStats::default();
        total.absorb(&ch.snapshot());
        total.absorb(&ch.snapshot());
        assert_eq!(total.get(Stat::Publish), 2);
        assert_eq!(total.get(Stat::Ack), 6);
        assert!(MessageStats::default().snapshot().is_empty());
        let before = ch.snapshot();
        ch.incr(Stat::Ack);
        assert_eq!(ch.snapshot().since(&before).get(Stat::Ack), 1);
        assert_eq!(ch.snapshot().since(&before).get(Stat::Publish), 0);
        assert_eq!(Stat::ALL.iter().map(|s| *s as usize).collect::<Vec<_>>(), (0..COUNT).collect::<Vec<_>>());
    }

    #[test]
    fn a_deleted_queue_is_counted_once_and_its_late_counts_follow_when_dropped() {
        use crate::broker::queue::Queue;
        use std::sync::Arc;
        let retired = Arc::new(Retired::default());
        let q = Arc::new(Queue::new("q".into(), "/".into(), false, false, None, Default::default(), Default::default(), None, 1 << 20));
        q.stats.add(Stat::Deliver, 3);
        q.retire(&retired);
        q.retire(&retired);
        assert_eq!(retired.queues[0].get(Stat::Deliver), 3, "retired once");
        // An ack of a message delivered before the delete.
        q.stats.incr(Stat::Ack);
        assert_eq!(retired.queues[0].get(Stat::Ack), 0);
        drop(q);
        assert_eq!((retired.queues[0].get(Stat::Ack), retired.queues[0].get(Stat::Deliver)), (1, 3));
        assert!(retired.queues[1].snapshot().is_empty(), "a classic queue counts as classic");
    }
}
