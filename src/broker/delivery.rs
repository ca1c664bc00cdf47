//! Where queues meet connections: the outbound buffer of a connection, the delivery state of a
//! channel (delivery tags, unacked messages, prefetch) and consumers.
//!
//! A queue delivers in the publisher's task: it takes its own lock, then the consuming channel's
//! delivery lock, then the connection's outbound buffer lock, appends the frames and wakes the
//! connection's writer task. Lock order is always queue → channel → outbound; the channel code never
//! takes a queue lock while it holds its delivery lock.

use super::message::Message;
use super::queue::{Queue, Ready};
use super::stats::Stat;
use crate::protocol::frame;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

/// Above this many buffered outbound bytes, queues stop delivering to the connection until its
/// writer has drained the buffer (then they are kicked).
pub const OUTBOUND_HIGH_WATER: usize = 1 << 20;

thread_local! {
    /// Writers to wake at the end of the current reader batch (see [`DeferWakes`]): whether a
    /// batch is open on this thread, and the connections that got frames during it.
    static DEFERRED: RefCell<(bool, Vec<Arc<ConnShared>>)> = const { RefCell::new((false, Vec::new())) };
}

/// While alive, deliveries made on this thread wake their connection's writer once, when the
/// guard drops, instead of once per message: a connection reader holds one while it handles the
/// frames of one read, so the 100 messages of a read become one wake-up and one write per
/// consuming connection, and a message that arrives alone is woken for as soon as it is handled
/// (no added latency). The guard is not `Send`, so it cannot be held across an `.await` in a
/// spawned task: the batch always ends before the reader waits.
pub struct DeferWakes {
    owner: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl DeferWakes {
    pub fn begin() -> DeferWakes {
        let owner = DEFERRED.with(|d| !std::mem::replace(&mut d.borrow_mut().0, true));
        DeferWakes { owner, _not_send: std::marker::PhantomData }
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let conns = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            d.0 = false;
            std::mem::take(&mut d.1)
        });
        for c in &conns {
            c.wake.notify_one();
        }
        // Keep the allocation for the next batch.
        let mut conns = conns;
        conns.clear();
        DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.1.capacity() == 0 {
                d.1 = conns;
            }
        });
    }
}

/// Inside a [`DeferWakes`] batch: remembers `conn` to wake at its end (true). Outside: false.
fn defer_wake(conn: &Arc<ConnShared>) -> bool {
    DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if !d.0 {
            return false;
        }
        if !d.1.iter().any(|c| Arc::ptr_eq(c, conn)) {
            d.1.push(conn.clone());
        }
        true
    })
}

/// The send side of one connection, shared by its reader task and every queue delivering to it.
pub struct ConnShared {
    pub id: u64,
    out: Mutex<BytesMut>,
    wake: Notify,
    frame_max: AtomicU32,
    closed: AtomicBool,
    /// Set when a queue skipped this connection for lack of buffer space.
    throttled: AtomicBool,
    /// Queues that deliver to this connection, kicked when the buffer drains.
    feeders: Mutex<Vec<Weak<Queue>>>,
    /// The client asked for server-sent basic.cancel (capability consumer_cancel_notify).
    pub cancel_notify: AtomicBool,
    /// Socket bytes read and written (`recv_oct`, `send_oct`; one add per read or write).
    pub io: super::stats::SocketStats,
}

impl ConnShared {
    pub fn new(id: u64, frame_max: u32) -> ConnShared {
        ConnShared {
            id,
            out: Mutex::new(BytesMut::new()),
            wake: Notify::new(),
            frame_max: AtomicU32::new(frame_max),
            closed: AtomicBool::new(false),
            throttled: AtomicBool::new(false),
            feeders: Mutex::new(Vec::new()),
            cancel_notify: AtomicBool::new(false),
            io: Default::default(),
        }
    }

    pub fn frame_max(&self) -> u32 {
        self.frame_max.load(Ordering::Relaxed)
    }

    pub fn set_frame_max(&self, v: u32) {
        self.frame_max.store(v, Ordering::Relaxed)
    }

    /// Appends frames with `f` and wakes the writer (at the end of the current reader batch when
    /// called inside [`DeferWakes`]).
    pub fn send(self: &Arc<Self>, f: impl FnOnce(&mut BytesMut)) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        {
            let mut out = self.out.lock();
            f(&mut out);
        }
        if !defer_wake(self) {
            self.wake.notify_one();
        }
    }

    /// Appends frames without waking the writer (the caller wakes it once for a batch).
    pub fn append(&self, f: impl FnOnce(&mut BytesMut)) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        f(&mut self.out.lock());
    }

    /// Wakes the writer if there is something to write (a wake-up with an empty buffer would only
    /// cost the writer a task switch).
    pub fn wake(&self) {
        if !self.out.lock().is_empty() {
            self.wake.notify_one();
        }
    }

    pub fn has_room(&self) -> bool {
        if self.out.lock().len() < OUTBOUND_HIGH_WATER {
            true
        } else {
            self.throttled.store(true, Ordering::Relaxed);
            false
        }
    }

    /// Waits until there is something to write (or the connection is closed), then swaps it out
    /// into `into` (which must be empty).
    pub async fn next_batch(&self, into: &mut BytesMut) {
        loop {
            {
                let mut out = self.out.lock();
                if !out.is_empty() || self.is_closed() {
                    std::mem::swap(&mut *out, into);
                    return;
                }
            }
            self.wake.notified().await;
        }
    }

    /// Takes whatever is buffered right now.
    pub fn take_now(&self, into: &mut BytesMut) {
        let mut out = self.out.lock();
        std::mem::swap(&mut *out, into);
    }

    /// Called by the writer after a write: if queues were held back, let them deliver again.
    pub fn after_write(&self) {
        if self.throttled.swap(false, Ordering::Relaxed) {
            let feeders: Vec<Arc<Queue>> = self.feeders.lock().iter().filter_map(Weak::upgrade).collect();
            for q in feeders {
                q.dispatch();
            }
        }
    }

    pub fn add_feeder(&self, q: &Arc<Queue>) {
        let mut f = self.feeders.lock();
        f.retain(|w| w.strong_count() > 0);
        if !f.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(q))) {
            f.push(Arc::downgrade(q));
        }
    }

    /// Stops all further output (the connection is going away).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

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
        ch.conn.send(|out| {
            frame::write_deliver(out, ch.number, &self.tag, tag, redelivered, &msg.exchange, &msg.routing_key);
            frame::write_header_raw(out, ch.number, &msg.header_raw);
            if !msg.body.is_empty() {
                frame::write_body(out, ch.number, &msg.body, frame_max);
            }
        });
        Offer::Delivered
    }
}
