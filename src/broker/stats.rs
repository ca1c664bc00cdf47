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
//!   (retired + open channels) never go down when a channel closes.

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
}

const COUNT: usize = 11;

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
    ];

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

    /// Nothing counted yet (RabbitMQ leaves `message_stats` out of an idle channel's row).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }
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
        assert_eq!(Stat::ALL.iter().map(|s| *s as usize).collect::<Vec<_>>(), (0..COUNT).collect::<Vec<_>>());
    }
}
