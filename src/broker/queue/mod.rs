//! A classic queue: ready messages in order, consumers served round-robin with credit.

mod consumers;
mod limits;

use super::backlog::{Backlogs, Home};
pub use super::backlog::Ready;
use super::delivery::Consumer;
use super::message::Message;
use super::dead_letter::Reason;
use super::queue_args::{Overflow, QueueArgs};
use crate::protocol::frame;
use crate::protocol::{AMQPClass, FieldTable, basic};
use crate::store::{Callback, MessageLog};
use bytes::Bytes;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
pub struct QueueInner {
    backlog: Backlogs,
    pub consumers: Vec<Arc<Consumer>>,
    /// Round-robin position.
    rr: usize,
    /// An exclusive consumer holds the queue.
    pub exclusive_consumer: bool,
    /// Set once a consumer was attached (auto-delete only applies after that).
    pub had_consumer: bool,
    /// Next store sequence number.
    next_seq: u64,
    /// Messages waiting to be dead-lettered once the lock is released (expired, or dropped by
    /// a length limit).
    dead: Vec<(super::backlog::Slot, Reason)>,
    /// A thread is dead-lettering `dead` (outside the lock); others leave theirs to it, so the
    /// messages reach the dead-letter exchange in the order they left the queue.
    dead_draining: bool,
}

/// What a queue did with a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued (and perhaps delivered at once); nothing to wait for.
    Accepted,
    /// Queued; its record is on the way to the store and `on_disk` runs after the commit.
    Stored,
    /// The queue was deleted meanwhile: the message was dropped (`on_disk` has run).
    Gone,
    /// The queue is full and refuses new messages (x-overflow reject-publish or
    /// reject-publish-dlx): the publisher gets a nack (`on_disk` never runs).
    Rejected,
}

pub struct Queue {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    pub auto_delete: bool,
    /// Connection id of the owner of an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    /// `arguments`, parsed and validated at declare.
    pub declared: QueueArgs,
    /// What the queue acts on: `declared` with the policies that apply (see `policy.rs`);
    /// swapped when a policy changes, read with [`Queue::args`].
    args: ArcSwap<QueueArgs>,
    /// The policies that apply and their merged definition (for listings).
    applied: Mutex<super::policy::Applied>,
    /// An x-expires watcher task runs for this queue.
    expiry_watched: AtomicBool,
    /// Wakes that task when a policy changes the expiry.
    pub(super) expiry_changed: Arc<tokio::sync::Notify>,
    pub inner: Mutex<QueueInner>,
    pub deleted: AtomicBool,
    /// Messages published into the queue (stats).
    pub published: AtomicU64,
    /// Deliveries, gets, acks, redeliveries of its messages (management `message_stats`).
    pub stats: super::stats::MessageStats,
    /// Set when the queue is deleted: where its counters went (see [`Queue::retire`]).
    retired: Mutex<Option<super::stats::RetiredAt>>,
    /// Deliveries awaiting an ack (see `delivery::Unacked`).
    pub unacked: AtomicU64,
    /// Store id and message log of a durable queue (persistent messages are written there).
    pub store: Option<(u64, MessageLog)>,
    /// Highest store sequence number known to be committed (its body may be paged out).
    committed: AtomicU64,
    /// Store sequence number of the newest stored message.
    appended: AtomicU64,
    /// Bytes a queue keeps in memory ahead of its consumers (bodies and per-message overhead);
    /// beyond them bodies are paged to disk (durable queues' persistent messages always; every
    /// other message when the queue has a page file, see [`Queue::with_pages`]).
    ram_limit: usize,
    /// Drops messages whose TTL ran out (started by the first message with one).
    timer: super::ttl::Timer,
    /// The vhost the queue is registered in (dead-lettering publishes there).
    home: std::sync::OnceLock<Weak<super::Vhost>>,
    /// x-expires: when the queue was last used (declared, consumed from, got from), in ms
    /// since the Unix epoch. Kept only for queues with x-expires.
    last_used: AtomicU64,
    /// Publisher flow control: raised while consumers are slower than publishers.
    pub flow: super::flow::QueueFlow,
}

impl Queue {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        vhost: String,
        durable: bool,
        auto_delete: bool,
        exclusive_owner: Option<u64>,
        arguments: FieldTable,
        args: QueueArgs,
        store: Option<(u64, MessageLog)>,
        ram_limit: usize,
    ) -> Queue {
        let max_priority = args.max_priority;
        Queue {
            name,
            vhost,
            durable,
            auto_delete,
            exclusive_owner,
            arguments,
            args: ArcSwap::from_pointee(args.clone()),
            declared: args,
            applied: Default::default(),
            expiry_watched: AtomicBool::new(false),
            expiry_changed: Default::default(),
            inner: Mutex::new(QueueInner { next_seq: 1, backlog: Backlogs::new(max_priority), ..Default::default() }),
            deleted: AtomicBool::new(false),
            published: AtomicU64::new(0),
            stats: Default::default(),
            retired: Mutex::new(None),
            unacked: AtomicU64::new(0),
            store,
            committed: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            ram_limit,
            timer: Default::default(),
            last_used: AtomicU64::new(super::ttl::now_ms()),
            home: Default::default(),
            flow: super::flow::QueueFlow::new(super::flow::FlowLimits::default()),
        }
    }

    /// The queue is deleted: its counters go to `into`'s deleted-queue totals of its type (the
    /// caller holds [`Retired::moving`](super::stats::Retired::moving) while it also takes the
    /// queue out of its vhost). What is counted later is added when the queue is dropped.
    pub fn retire(&self, into: &Arc<super::stats::Retired>) {
        let mut r = self.retired.lock();
        if r.is_none() {
            let at = self.stats.snapshot();
            into.queues[super::counters::type_index(self.declared.queue_type)].absorb(&at);
            *r = Some(super::stats::RetiredAt { at, into: into.clone() });
        }
    }

    /// The same queue with a page file for transient messages beyond its memory budget.
    pub fn with_pages(mut self, pages: crate::store::transient::PageFile) -> Queue {
        self.inner.get_mut().backlog.set_pages(pages);
        self
    }

    /// Its message log (durable queues) and names, for the backlog.
    pub(super) fn home(&self) -> Home<'_> {
        Home { store: self.store.as_ref().map(|(id, log)| (*id, log)), queue: &self.name, vhost: &self.vhost }
    }

    /// The same queue with these flow-control limits.
    pub fn with_flow_limits(mut self, limits: super::flow::FlowLimits) -> Queue {
        self.flow = super::flow::QueueFlow::new(limits);
        self
    }

    /// The arguments the queue acts on (declared, with its policies applied).
    #[inline]
    pub fn args(&self) -> arc_swap::Guard<Arc<QueueArgs>> {
        self.args.load()
    }

    /// The policies that apply to the queue and their merged definition.
    pub fn applied_policy(&self) -> super::policy::Applied {
        self.applied.lock().clone()
    }

    /// Applies a (new) policy result at once, as RabbitMQ does when a policy is set or cleared:
    /// the effective arguments are swapped; a lower length limit (drop-head) drops or
    /// dead-letters the oldest messages now; a new `expires` counts from now. Messages already
    /// queued keep the expiry they got at enqueue (as in RabbitMQ; a new message-ttl applies to
    /// new messages).
    pub fn set_policy(self: &Arc<Self>, applied: super::policy::Applied) {
        let args = applied.queue_args(&self.declared, &self.arguments);
        *self.applied.lock() = applied;
        let old = self.args.swap(Arc::new(args.clone()));
        if args.expires != old.expires {
            if args.expires.is_some() {
                self.last_used.store(super::ttl::now_ms(), Ordering::Relaxed);
                if let Some(v) = self.home.get() {
                    super::ttl::watch_queue_expiry(v.clone(), self);
                }
            }
            // A running watcher looks again now (a shorter period, or none: it ends).
            self.expiry_changed.notify_one();
        }
        let mut inner = self.inner.lock();
        if self.is_deleted() {
            return;
        }
        // reject-publish keeps what is there and refuses new messages (RabbitMQ's maybe_drop_head).
        if (args.max_length.is_some() || args.max_length_bytes.is_some()) && args.overflow == Overflow::DropHead {
            self.drop_head_over_limit(&mut inner);
        }
        self.finish(inner);
    }

    /// Claims the x-expires watcher of this queue (false: one runs already).
    pub(super) fn claim_expiry_watch(&self) -> bool {
        !self.expiry_watched.swap(true, Ordering::AcqRel)
    }

    /// The watcher ends (the queue no longer has x-expires); true if it must go on after all
    /// because a policy gave it one meanwhile.
    pub(super) fn release_expiry_watch(&self) -> bool {
        self.expiry_watched.store(false, Ordering::Release);
        self.args().expires.is_some() && self.claim_expiry_watch()
    }

    /// A consumer of this queue delivers to connection `conn` (flow control must not pause a
    /// reader whose acks the queue is waiting for).
    pub fn consumed_by(&self, conn: &Arc<super::outbound::ConnShared>) -> bool {
        self.inner.lock().consumers.iter().any(|c| Arc::ptr_eq(&c.channel.conn, conn))
    }

    /// Lowers the flow flag if the backlog drained enough (dispatch, consumer removal); costs one
    /// atomic load while the flag is down, which is nearly always.
    pub(super) fn lower_flow(&self, inner: &QueueInner) {
        if self.flow.is_over() {
            self.flow.after_drain(inner.backlog.len(), inner.backlog.hot_bytes(), !inner.consumers.is_empty());
        }
    }

    /// Re-evaluates the flow flag (a paused publisher's periodic check).
    pub fn recheck_flow(&self) {
        let inner = self.inner.lock();
        self.flow.after_drain(inner.backlog.len(), inner.backlog.hot_bytes(), !inner.consumers.is_empty());
    }

    /// Puts recovered messages in (at start, before any client): their store sequence
    /// numbers, in order. Bodies stay on disk until consumers come; all are flagged
    /// redelivered (they may have been delivered before the restart).
    pub fn restore(self: &Arc<Self>, seqs: impl IntoIterator<Item = (u64, u64, u32, usize)>, next_seq: u64) {
        let _ = self.restore_with(|add| {
            seqs.into_iter().for_each(|(seq, expires, size, level)| add(seq, expires, size, level));
            Ok::<(), ()>(())
        });
        let mut inner = self.inner.lock();
        inner.next_seq = inner.next_seq.max(next_seq);
        self.committed.fetch_max(next_seq.saturating_sub(1), Ordering::AcqRel);
    }

    /// Like [`Queue::restore`], streaming: `scan` calls `add(seq, expiry, body size, level)` for
    /// each recovered message in store order (straight into the backlog, which builds runs of
    /// them: nothing per message is kept on the way). Returns how many were added.
    pub fn restore_with<E>(self: &Arc<Self>, scan: impl FnOnce(&mut dyn FnMut(u64, u64, u32, usize)) -> Result<(), E>) -> Result<usize, E> {
        let mut inner = self.inner.lock();
        let (mut n, mut last) = (0usize, 0u64);
        let backlog = &mut inner.backlog;
        scan(&mut |seq, expires, size, level| {
            backlog.restore(seq, expires, size, level);
            n += 1;
            last = last.max(seq);
        })?;
        if let Some(at) = inner.backlog.head_expires() {
            self.timer.start(self);
            self.timer.wake_by(at);
        }
        inner.next_seq = inner.next_seq.max(last + 1);
        self.committed.fetch_max(last, Ordering::AcqRel);
        Ok(n)
    }

    /// Marks the queue used now (x-expires restarts; nothing for queues without it).
    pub fn touch(&self) {
        if self.args().expires.is_some() {
            self.last_used.store(super::ttl::now_ms(), Ordering::Relaxed);
        }
    }

    /// x-expires: when the queue expires if nothing uses it meanwhile (None: it is in use, or
    /// has no x-expires).
    pub fn expires_at(&self) -> Option<u64> {
        let ms = self.args().expires?;
        if !self.inner.lock().consumers.is_empty() {
            return None;
        }
        Some(self.last_used.load(Ordering::Relaxed).saturating_add(ms))
    }

    /// Is `msg` written to the store when published here? Persistent messages on durable
    /// queues; every message on a quorum queue (as RabbitMQ's are all in its log).
    pub fn stores(&self, msg: &Message) -> bool {
        self.store.is_some() && (msg.is_persistent() || self.is_quorum())
    }

    pub fn is_quorum(&self) -> bool {
        // Not policy-settable: the declared value, no atomic load.
        self.declared.queue_type == super::queue_args::QueueType::Quorum
    }

    /// Drops stored message `seq` (acked, rejected, purged, or delivered with no-ack).
    pub fn forget(&self, seq: u64) {
        if seq != 0
            && let Some((id, log)) = &self.store
        {
            log.remove(*id, seq);
        }
    }

    /// Drops the stored messages of a run (purged): one range removal in the store.
    fn forget_run(&self, run: &super::backlog::Run) {
        if let Some((id, log)) = &self.store {
            log.remove_range(*id, run.seq, run.count as u64);
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Appends a message and delivers what consumers can take. With `persist` (a persistent
    /// message on a durable queue) the record is handed to the store's group-commit writer and
    /// `on_disk` runs once it is committed; it is delivered meanwhile, as in RabbitMQ.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>, persist: Option<(&Bytes, Callback)>) -> Enqueued {
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock();
        if self.is_deleted() {
            drop(inner);
            if let Some((_, done)) = persist {
                done(Ok(()));
            }
            return Enqueued::Gone;
        }
        let args = self.args();
        let limited = args.max_length.is_some() || args.max_length_bytes.is_some();
        if limited && args.overflow != Overflow::DropHead && self.would_overflow(&inner.backlog, msg.body.len()) {
            if args.overflow == Overflow::RejectPublishDlx && args.dead_letter_exchange.is_some() {
                drop(inner);
                self.dead_letter(vec![msg], Reason::Maxlen);
            }
            return Enqueued::Rejected;
        }
        let mut seq = 0;
        if let (Some((record, done)), Some((id, log))) = (persist, &self.store) {
            seq = inner.next_seq;
            inner.next_seq += 1;
            self.appended.store(seq, Ordering::Release);
            inner.backlog.count_logged();
            let queue = Arc::downgrade(self);
            log.append_then(*id, seq, record.clone(), move |r| {
                if let Some(q) = queue.upgrade() {
                    q.committed_up_to(seq);
                }
                done(r);
            });
        }
        // A quorum queue delivers x-delivery-count, 0 the first time (as RabbitMQ 3.10).
        let msg = if self.is_quorum() && msg.properties.headers().as_ref().is_none_or(|h| !h.inner().contains_key("x-delivery-count")) {
            Arc::new(msg.with_header("x-delivery-count", crate::protocol::AMQPValue::LongLongInt(0)))
        } else {
            msg
        };
        // A TTL costs a clock read here, and only for queues or messages that have one.
        let expires = if args.message_ttl.is_some() || msg.properties.expiration().is_some() {
            super::ttl::expiry(args.message_ttl, &msg)
        } else {
            0
        };
        if expires == 0 && !inner.consumers.is_empty() && inner.backlog.is_empty() {
            // Nothing queued ahead of it: offered to the consumers first, queued only if none
            // takes it (no slot pushed and popped per message on a queue that keeps up).
            let arrival = inner.backlog.arrival(msg, seq);
            self.dispatch_arrival(&mut inner, arrival);
        } else {
            let limit = (self.store.is_some() || inner.backlog.pages()).then_some(self.ram_limit);
            let b = &mut inner.backlog;
            b.push_back(msg, seq, expires, limit);
            if b.tail() > 0 {
                b.page_out(self.committed.load(Ordering::Acquire), &self.home());
            }
            self.dispatch_locked(&mut inner);
        }
        if expires != 0 {
            // Not taken at once: x-message-ttl 0 means deliver now or never.
            self.timer.start(self);
            self.expire_heads(&mut inner, false);
        }
        if limited {
            self.drop_head_over_limit(&mut inner);
        }
        // The backlog's totals are summed only when the flag could rise (a queue with consumers).
        if !inner.consumers.is_empty() && !self.flow.is_over() {
            self.flow.after_push(inner.backlog.len(), inner.backlog.hot_bytes(), true);
        }
        self.finish(inner);
        if seq != 0 { Enqueued::Stored } else { Enqueued::Accepted }
    }

    /// Runs on the store's writer thread once message `seq` is on disk. A failed append was
    /// nacked to its publisher; its body may go too (paging it in finds no record and drops it,
    /// with a warning). When the newest message is committed, the tail is paged out now: no
    /// later publish may come to do it.
    fn committed_up_to(&self, seq: u64) {
        self.committed.fetch_max(seq, Ordering::AcqRel);
        if self.appended.load(Ordering::Acquire) == seq {
            let mut inner = self.inner.lock();
            if inner.backlog.tail() > 0 {
                inner.backlog.page_out(self.committed.load(Ordering::Acquire), &self.home());
            }
        }
    }

    /// Takes the message at the head, loading bodies from the store first if needed. Expired
    /// messages at the head are dropped first.
    pub(super) fn pop(&self, inner: &mut QueueInner) -> Option<Ready> {
        if inner.backlog.head_expires().is_some() {
            self.expire_heads(inner, true);
        }
        let b = &mut inner.backlog;
        let mut lost = Vec::new();
        let mut r = b.pop(&self.home(), &mut lost);
        for seq in lost {
            self.forget(seq);
        }
        if let Some(at) = b.head_expires() {
            self.timer.wake_by(at);
        }
        // A quorum message read back from the store that was never returned has no count yet
        // (its record was written before the header was added): it is delivered with 0.
        if self.is_quorum()
            && let Some(ready) = r.as_mut()
            && ready.msg.properties.headers().as_ref().is_none_or(|h| !h.inner().contains_key("x-delivery-count"))
        {
            ready.msg = Arc::new(ready.msg.with_header("x-delivery-count", crate::protocol::AMQPValue::LongLongInt(0)));
        }
        r
    }

    /// Puts messages (with their store sequence numbers) back at the head of the queue, oldest
    /// first, flagged redelivered.
    pub fn requeue(self: &Arc<Self>, msgs: impl DoubleEndedIterator<Item = Ready>) {
        if self.is_quorum() {
            return self.requeue_counted(msgs);
        }
        let mut inner = self.inner.lock();
        if self.is_deleted() {
            return;
        }
        let mut ttl = false;
        for r in msgs.rev() {
            ttl |= r.expires != 0;
            inner.backlog.push_front(Ready { redelivered: true, ..r });
        }
        self.dispatch_locked(&mut inner);
        if ttl {
            self.timer.start(self);
            self.expire_heads(&mut inner, false);
        }
        self.finish(inner);
    }

    /// Takes one message for basic.get; returns it with the number of messages left.
    pub fn get(&self) -> Option<(Ready, u32)> {
        self.touch();
        let mut inner = self.inner.lock();
        let r = self.pop(&mut inner);
        let left = inner.backlog.len() as u32;
        self.finish(inner);
        Some((r?, left))
    }

    pub fn counts(&self) -> (u32, u32) {
        let mut inner = self.inner.lock();
        if inner.backlog.head_expires().is_some() {
            self.expire_heads(&mut inner, false);
        }
        let counts = (inner.backlog.len() as u32, inner.consumers.len() as u32);
        self.finish(inner);
        counts
    }

    /// Ready messages with their body in memory, the bytes of those bodies, and ready messages
    /// whose body is on disk only (RabbitMQ's messages_ram, message_bytes_ram,
    /// messages_paged_out). Walks the whole queue: for statistics, not for the hot path.
    pub fn memory(&self) -> (usize, usize, usize) {
        self.inner.lock().backlog.memory()
    }

    /// Body bytes of the ready messages (RabbitMQ's `message_bytes_ready`).
    pub fn ready_bytes(&self) -> usize {
        self.inner.lock().backlog.bytes()
    }

    /// The `timestamp` property of the message at the head of the queue, if it has one and its
    /// body is in memory (RabbitMQ's `head_message_timestamp`).
    pub fn head_timestamp(&self) -> Option<u64> {
        let inner = self.inner.lock();
        inner.backlog.head().and_then(|m| *m.properties.timestamp())
    }

    /// Messages this queue read from disk and wrote to it since it started (RabbitMQ's
    /// `disk_reads`, `disk_writes`).
    pub fn disk_io(&self) -> (u64, u64) {
        self.inner.lock().backlog.disk_io()
    }

    /// Ready persistent messages (written to the message log) and their body bytes; walks the
    /// backlog, for statistics only.
    pub fn ready_persistent(&self) -> (u64, u64) {
        self.inner.lock().backlog.persistent()
    }

    /// Removes all ready messages (unacked ones stay); returns how many.
    pub fn purge(&self) -> u32 {
        let mut inner = self.inner.lock();
        let cleared = inner.backlog.clear();
        self.flow.clear();
        let n = cleared.len() as u32;
        for r in &cleared.slots {
            self.forget(r.seq);
        }
        for r in &cleared.runs {
            self.forget_run(r);
        }
        n
    }

    /// Marks the queue deleted, drops its messages and tells its consumers (basic.cancel).
    /// Returns the number of messages it held.
    /// Flags the queue deleted at once (publishes to it from now on find it gone), before
    /// `mark_deleted` empties it: called while it is taken out of its vhost's map, so that a
    /// queue not flagged is still its name's queue there (`Vhost::default_route` relies on it).
    pub fn flag_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    pub fn mark_deleted(&self) -> u32 {
        let (consumers, n) = {
            let mut inner = self.inner.lock();
            self.deleted.store(true, Ordering::Release);
            let n = inner.backlog.clear().len() as u32;
            self.flow.clear();
            inner.exclusive_consumer = false;
            (std::mem::take(&mut inner.consumers), n)
        };
        self.timer.stop();
        self.expiry_changed.notify_one();
        for c in consumers {
            if !c.cancelled.swap(true, Ordering::AcqRel)
                && c.channel.open.load(Ordering::Relaxed)
                && c.channel.conn.cancel_notify.load(Ordering::Relaxed)
            {
                let ch = &c.channel;
                let m = AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: c.tag.as_str().into(),
                    nowait: true,
                }));
                ch.conn.send(|out| frame::write_method(out, ch.number, m));
            }
        }
        n
    }
}

impl Drop for Queue {
    /// A deleted queue's last counts (after [`Queue::retire`]) join the deleted-queue totals.
    fn drop(&mut self) {
        if let Some(r) = self.retired.get_mut().take() {
            let late = self.stats.snapshot().since(&r.at);
            if !late.is_empty() {
                r.into.queues[super::counters::type_index(self.declared.queue_type)].absorb(&late);
            }
        }
    }
}

#[cfg(test)]
mod tests;
