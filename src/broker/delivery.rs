//! Where queues meet connections: the delivery state of a channel (delivery tags, unacked
//! messages, prefetch) and consumers. The connection's outbound buffer is in `outbound.rs`.
//!
//! A queue delivers in the publisher's task: it takes its own lock, then the consuming channel's
//! delivery lock, then the connection's outbound buffer lock, appends the frames and wakes the
//! connection's writer task. Lock order is always queue → channel → outbound; the channel code never
//! takes a queue lock while it holds its delivery lock.

use super::message::Message;
use super::outbound::ConnShared;
use super::queue::{Queue, Ready};
use super::stats::Stat;
use crate::protocol::frame;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};

/// An unacknowledged delivery.
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub msg: Arc<Message>,
    /// Store sequence number in `queue` (0: not stored).
    pub seq: u64,
    /// Expiry (ms since the Unix epoch, 0: never), kept if the message is requeued.
    pub expires: u64,
    /// Arrival number in the queue: a requeue puts it back at its original place.
    pub pos: u64,
    /// None for basic.get.
    pub consumer: Option<Arc<Consumer>>,
}

impl Unacked {
    /// Records a delivery awaiting its ack; the queue counts it until the entry is dropped
    /// (acked, rejected, requeued or its channel closed).
    pub fn new(tag: u64, queue: Arc<Queue>, ready: &Ready, consumer: Option<Arc<Consumer>>) -> Unacked {
        queue.unacked.fetch_add(1, Ordering::Relaxed);
        Unacked { tag, queue, msg: ready.msg.clone(), seq: ready.seq, expires: ready.expires, pos: ready.pos, consumer }
    }
}

impl Drop for Unacked {
    fn drop(&mut self) {
        self.queue.unacked.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct DeliveryState {
    pub next_tag: u64,
    /// Ordered by tag.
    pub unacked: VecDeque<Unacked>,
}

/// The part of a channel that queues deliver to.
pub struct ChannelShared {
    pub number: u16,
    pub conn: Arc<ConnShared>,
    pub state: Mutex<DeliveryState>,
    /// basic.qos global prefetch (0 = unlimited), counted over all consumers of the channel.
    pub global_prefetch: AtomicU32,
    /// channel.flow(active=false) stops deliveries.
    pub flow_active: AtomicBool,
    /// False once the channel is closing: queues skip its consumers.
    pub open: AtomicBool,
    /// Publisher confirms (confirm mode).
    pub confirms: super::confirm::Confirms,
    /// Message counters (management `message_stats`, see `stats.rs`).
    pub stats: super::stats::MessageStats,
    /// What the management API and `list_channels` show of the channel's state, kept by the
    /// channel code when it changes (never per message).
    pub info: ChannelInfo,
}

/// A channel's listing facts (RabbitMQ's `list_channels` keys), written by the channel's own
/// reader task on the methods that change them.
#[derive(Default)]
pub struct ChannelInfo {
    /// basic.qos(global=false): the prefetch of new consumers (`prefetch_count`).
    pub prefetch: AtomicU32,
    /// 0 plain, 1 confirm mode, 2 transactional.
    pub mode: std::sync::atomic::AtomicU8,
    /// Live consumers (`consumer_count`).
    pub consumers: AtomicU32,
    /// Publishes and acks held by an open transaction (`messages_uncommitted`, `acks_uncommitted`).
    pub uncommitted_messages: AtomicU32,
    pub uncommitted_acks: AtomicU32,
}

impl ChannelInfo {
    pub const CONFIRM: u8 = 1;
    pub const TX: u8 = 2;
    pub fn mode(&self) -> u8 {
        self.mode.load(Ordering::Relaxed)
    }
}

impl ChannelShared {
    pub fn new(number: u16, conn: Arc<ConnShared>) -> ChannelShared {
        ChannelShared {
            number,
            conn,
            state: Mutex::new(DeliveryState { next_tag: 1, unacked: VecDeque::new() }),
            global_prefetch: AtomicU32::new(0),
            flow_active: AtomicBool::new(true),
            open: AtomicBool::new(true),
            confirms: Default::default(),
            stats: Default::default(),
            info: Default::default(),
        }
    }

    /// The channel's message counters, `confirm` included (kept by `confirms`).
    pub fn stats_snapshot(&self) -> super::stats::Snapshot {
        let mut s = self.stats.snapshot();
        s.0[Stat::Confirm as usize] = self.confirms.acked();
        s
    }

    /// Deliveries of this channel awaiting an ack (`messages_unacknowledged`).
    pub fn unacked_count(&self) -> usize {
        self.state.lock().unacked.len()
    }
}

/// A basic.consume subscription.
pub struct Consumer {
    pub tag: String,
    pub channel: Arc<ChannelShared>,
    pub no_ack: bool,
    pub exclusive: bool,
    /// Per-consumer prefetch (0 = unlimited).
    pub prefetch: u32,
    pub unacked: AtomicU32,
    pub queue: Weak<Queue>,
    pub cancelled: AtomicBool,
    pub arguments: amq_protocol::types::FieldTable,
    /// Consumer priority (`x-priority`; 0 by default).
    pub priority: i64,
}

/// The outcome of trying to hand a message to a consumer.
pub enum Offer {
    Delivered,
    /// No credit on the channel (global prefetch) or the channel is closing.
    Refused,
}

impl Consumer {
    /// Cheap pre-check without the channel lock.
    pub fn has_credit(&self) -> bool {
        if !self.channel.open.load(Ordering::Relaxed) || !self.channel.flow_active.load(Ordering::Relaxed) {
            return false;
        }
        if self.prefetch != 0 && self.unacked.load(Ordering::Relaxed) >= self.prefetch {
            return false;
        }
        self.channel.conn.has_room()
    }

    /// Delivers `msg` from `queue`: assigns the delivery tag, records it as unacked (unless
    /// no-ack) and appends the frames to the connection.
    pub fn offer(self: &Arc<Self>, queue: &Arc<Queue>, ready: &Ready) -> Offer {
        let (msg, redelivered) = (&ready.msg, ready.redelivered);
        let ch = &self.channel;
        let mut st = ch.state.lock();
        let global = ch.global_prefetch.load(Ordering::Relaxed);
        if !self.no_ack && global != 0 && st.unacked.len() as u32 >= global {
            return Offer::Refused;
        }
        let tag = st.next_tag;
        st.next_tag += 1;
        let kind = if self.no_ack { Stat::DeliverNoAck } else { Stat::Deliver };
        // The only writers of these two counters: here, under the channel's delivery lock
        // (`st`) and the queue's lock (`offer` is called from `Queue::dispatch_consumers`,
        // which holds `&mut QueueInner`). Redeliver is also counted by basic.get: atomic.
        ch.stats.incr_owned(kind);
        queue.stats.incr_owned(kind);
        if redelivered {
            ch.stats.incr(Stat::Redeliver);
            queue.stats.incr(Stat::Redeliver);
        }
        if self.no_ack {
            queue.forget(ready.seq);
        } else {
            self.unacked.fetch_add(1, Ordering::Relaxed);
            st.unacked.push_back(Unacked::new(tag, queue.clone(), ready, Some(self.clone())));
        }
        let frame_max = ch.conn.frame_max();
        let d = frame::Deliver { consumer_tag: &self.tag, delivery_tag: tag, redelivered, exchange: &msg.exchange, routing_key: &msg.routing_key };
        ch.conn.send(|out| frame::write_delivery(out, ch.number, &d, &msg.header_raw, &msg.body, frame_max));
        Offer::Delivered
    }
}
