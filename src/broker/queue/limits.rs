//! What leaves a queue other than by delivery: expiry (TTL), length limits, quorum delivery
//! limits, and the dead-lettering of all of these (outside the queue lock).

use super::{Queue, QueueInner, Ready};
use crate::broker::backlog::Backlogs;
use crate::broker::dead_letter::Reason;
use crate::broker::message::Message;
use parking_lot::MutexGuard;
use std::sync::{Arc, Weak};

impl Queue {
    /// Drops the expired messages at the head and arms the timer for the next head. A message
    /// expiring this very millisecond counts as expired, except when `take` (a consumer is
    /// taking the head: x-message-ttl 0 still delivers to a consumer that is there).
    /// With a dead-letter exchange, the dropped messages wait in `dead` until the lock is
    /// released ([`Queue::finish`]).
    pub(super) fn expire_heads(&self, inner: &mut QueueInner, take: bool) {
        self.expire_some(inner, take, usize::MAX);
    }

    /// Like [`Queue::expire_heads`], dropping at most `max` messages.
    fn expire_some(&self, inner: &mut QueueInner, take: bool, max: usize) {
        let QueueInner { backlog: b, dead, .. } = inner;
        if b.head_expires().is_none() {
            return;
        }
        let now = crate::broker::ttl::now_ms() + u64::from(!take);
        let mut n = 0;
        let dlx = self.args().dead_letter_exchange.is_some();
        while n < max
            && let Some(slot) = b.drop_expired(now, dlx, &self.home())
        {
            n += 1;
            if dlx {
                dead.push((slot, Reason::Expired));
            } else {
                self.forget(slot.seq);
            }
        }
        if let Some(at) = b.head_expires() {
            self.timer.wake_by(at);
        }
    }

    /// RabbitMQ's `will_overflow`: would one more message of `size` bytes take the ready
    /// messages past x-max-length or x-max-length-bytes?
    pub(super) fn would_overflow(&self, b: &Backlogs, size: usize) -> bool {
        let args = self.args();
        args.max_length.is_some_and(|m| b.len() as u64 + 1 > m) || args.max_length_bytes.is_some_and(|m| (b.bytes() + size) as u64 > m)
    }

    /// x-overflow drop-head: drops (or dead-letters, reason maxlen) the oldest ready messages
    /// until the queue is within its limits again.
    pub(super) fn drop_head_over_limit(&self, inner: &mut QueueInner) {
        let QueueInner { backlog: b, dead, .. } = inner;
        let args = self.args();
        while args.max_length.is_some_and(|m| b.len() as u64 > m) || args.max_length_bytes.is_some_and(|m| b.bytes() as u64 > m) {
            let Some(slot) = b.drop_head(args.dead_letter_exchange.is_some(), &self.home()) else { break };
            if args.dead_letter_exchange.is_some() {
                dead.push((slot, Reason::Maxlen));
            } else {
                self.forget(slot.seq);
            }
        }
    }

    /// Run by the expiry timer: drops what has expired; returns the next head's expiry.
    /// At most `EXPIRE_BATCH` per call: a million messages expiring at once hold the queue lock
    /// and the runtime thread only briefly each time; the timer comes straight back for more.
    pub(crate) fn expire_due(&self) -> Option<u64> {
        const EXPIRE_BATCH: usize = 4096;
        let mut inner = self.inner.lock();
        self.expire_some(&mut inner, false, EXPIRE_BATCH);
        let next = inner.backlog.head_expires();
        self.timer.arm(next);
        self.finish(inner);
        next
    }

    /// Releases the queue lock, then dead-letters the messages that expired meanwhile (never
    /// under the lock: the dead-letter exchange may route back here, or to a queue whose
    /// lock another thread holds while it waits for ours). One thread at a time does it, in
    /// the order the messages left (the timer and a publisher may both expire heads): a thread
    /// that finds another at it leaves its messages to that one.
    pub(super) fn finish<'a>(&'a self, mut inner: MutexGuard<'a, QueueInner>) {
        if inner.dead.is_empty() || inner.dead_draining {
            return;
        }
        inner.dead_draining = true;
        loop {
            let dead = std::mem::take(&mut inner.dead);
            if dead.is_empty() {
                inner.dead_draining = false;
                return;
            }
            drop(inner);
            self.dead_letter_slots(dead);
            inner = self.inner.lock();
        }
    }

    /// Dead-letters messages taken off the queue (bodies of paged-out ones read back first).
    fn dead_letter_slots(&self, dead: Vec<(crate::broker::backlog::Slot, Reason)>) {
        // Bodies of paged-out persistent messages are read back from the store first (those of
        // transient ones were read back from the page file when they were dropped).
        let missing: Vec<u64> = dead.iter().filter(|(s, _)| s.msg.is_none() && s.seq != 0).map(|(s, _)| s.seq).collect();
        let mut loaded = match (&self.store, missing.is_empty()) {
            (Some((id, log)), false) => log.read_batch(*id, &missing).unwrap_or_default().into_iter(),
            _ => Vec::new().into_iter(),
        };
        for (slot, reason) in &dead {
            let msg = match &slot.msg {
                Some(m) => Some(m.clone()),
                None if slot.seq == 0 => None,
                None => loaded.next().flatten().and_then(crate::broker::persist::message_from_record).map(Arc::new),
            };
            if let Some(m) = msg {
                self.dead_letter(vec![m], *reason);
            }
        }
        for (slot, _) in dead {
            self.forget(slot.seq);
        }
    }

    /// Dead-letters messages taken off this queue (nothing without a dead-letter exchange).
    pub fn dead_letter(&self, msgs: Vec<Arc<Message>>, reason: Reason) {
        if self.args().dead_letter_exchange.is_none() || msgs.is_empty() {
            return;
        }
        if let Some(v) = self.home.get().and_then(Weak::upgrade) {
            crate::broker::dead_letter::dead_letter(&v, self, msgs, reason);
        }
    }

    /// Records the vhost the queue belongs to (for dead-lettering), once it is registered.
    pub fn set_home(&self, vhost: Weak<crate::broker::Vhost>) {
        let _ = self.home.set(vhost);
    }

    /// Writes a returned quorum message again with its new `x-delivery-count`, so the count
    /// survives a restart. Only returns pay for it (a remove and an append of the same key in the
    /// group commit; the store applies them in order); publish, delivery and ack do not. The
    /// publish time of a message that expires is kept (as expiry minus its TTL).
    fn restore_count(&self, counted: &Message, seq: u64, expires: u64) {
        let (Some((id, log)), true) = (&self.store, seq != 0) else { return };
        let published = (expires != 0).then(|| {
            let ttl = crate::broker::ttl::ttl_of(self.args().message_ttl, counted).unwrap_or(0);
            expires.saturating_sub(ttl)
        });
        log.remove(*id, seq);
        log.append_detached(*id, seq, crate::broker::persist::record(counted, published));
    }

    /// A quorum queue counts returns: each requeued message carries `x-delivery-count`; one
    /// returned more than `x-delivery-limit` times is dead-lettered (reason delivery_limit) or
    /// dropped instead.
    pub(super) fn requeue_counted(self: &Arc<Self>, msgs: impl DoubleEndedIterator<Item = Ready>) {
        let mut back = Vec::new();
        for Ready { msg, seq, expires, pos, .. } in msgs {
            let count = match msg.properties.headers().as_ref().and_then(|h| h.inner().get("x-delivery-count")) {
                Some(v) => crate::broker::queue_args::as_int(v).unwrap_or(0).max(0) as u64,
                None => 0,
            } + 1;
            if self.args().delivery_limit.is_some_and(|limit| count > limit) {
                self.dead_letter(vec![msg], Reason::DeliveryLimit);
                self.forget(seq);
                continue;
            }
            let counted = msg.with_header("x-delivery-count", crate::protocol::AMQPValue::LongLongInt(count as i64));
            self.restore_count(&counted, seq, expires);
            back.push(Ready { msg: Arc::new(counted), redelivered: true, seq, expires, pos });
        }
        let mut inner = self.inner.lock();
        if self.is_deleted() {
            return;
        }
        for r in back.into_iter().rev() {
            inner.backlog.push_front(r);
        }
        self.dispatch_locked(&mut inner);
        self.expire_heads(&mut inner, false);
        self.finish(inner);
    }
}
