//! A classic queue: ready messages in order, consumers served round-robin with credit.

use super::delivery::{Consumer, Offer};
use super::message::Message;
use crate::protocol::frame;
use crate::protocol::{AMQPClass, FieldTable, basic};
use crate::store::{Callback, MessageLog};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A message waiting in a queue.
pub struct Ready {
    pub msg: Arc<Message>,
    pub redelivered: bool,
    /// Sequence number in the store (0: not stored).
    pub seq: u64,
}

#[derive(Default)]
pub struct QueueInner {
    pub messages: VecDeque<Ready>,
    pub consumers: Vec<Arc<Consumer>>,
    /// Round-robin position.
    rr: usize,
    /// An exclusive consumer holds the queue.
    pub exclusive_consumer: bool,
    /// Set once a consumer was attached (auto-delete only applies after that).
    pub had_consumer: bool,
    /// Next store sequence number.
    next_seq: u64,
}

pub struct Queue {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    pub auto_delete: bool,
    /// Connection id of the owner of an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    pub inner: Mutex<QueueInner>,
    pub deleted: AtomicBool,
    /// Messages published into the queue (stats).
    pub published: AtomicU64,
    /// Store id and message log of a durable queue (persistent messages are written there).
    pub store: Option<(u64, MessageLog)>,
}

impl Queue {
    pub fn new(
        name: String,
        vhost: String,
        durable: bool,
        auto_delete: bool,
        exclusive_owner: Option<u64>,
        arguments: FieldTable,
        store: Option<(u64, MessageLog)>,
    ) -> Queue {
        Queue {
            name,
            vhost,
            durable,
            auto_delete,
            exclusive_owner,
            arguments,
            inner: Mutex::new(QueueInner { next_seq: 1, ..Default::default() }),
            deleted: AtomicBool::new(false),
            published: AtomicU64::new(0),
            store,
        }
    }

    /// Puts recovered messages in (at start, before any client).
    pub fn restore(&self, ready: Vec<Ready>, next_seq: u64) {
        let mut inner = self.inner.lock();
        inner.messages.extend(ready);
        inner.next_seq = inner.next_seq.max(next_seq);
    }

    /// Does a persistent message published here get written to the store?
    pub fn stores_persistent(&self) -> bool {
        self.store.is_some()
    }

    /// Drops stored message `seq` (acked, rejected, purged, or delivered with no-ack).
    pub fn forget(&self, seq: u64) {
        if seq != 0
            && let Some((id, log)) = &self.store
        {
            log.remove(*id, seq);
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Appends a message and delivers what consumers can take. With `persist` (a persistent
    /// message on a durable queue) the record is handed to the store's group-commit writer and
    /// `on_disk` runs once it is committed; it is delivered meanwhile, as in RabbitMQ.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>, persist: Option<(&Bytes, Callback)>) {
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock();
        if self.is_deleted() {
            drop(inner);
            if let Some((_, done)) = persist {
                done(Ok(()));
            }
            return;
        }
        let mut seq = 0;
        if let (Some((record, done)), Some((id, log))) = (persist, &self.store) {
            seq = inner.next_seq;
            inner.next_seq += 1;
            log.append_then(*id, seq, record.clone(), done);
        }
        inner.messages.push_back(Ready { msg, redelivered: false, seq });
        self.dispatch_locked(&mut inner);
    }

    /// Puts messages (with their store sequence numbers) back at the head of the queue, oldest
    /// first, flagged redelivered.
    pub fn requeue(self: &Arc<Self>, msgs: impl DoubleEndedIterator<Item = (Arc<Message>, u64)>) {
        let mut inner = self.inner.lock();
        if self.is_deleted() {
            return;
        }
        for (msg, seq) in msgs.rev() {
            inner.messages.push_front(Ready { msg, redelivered: true, seq });
        }
        self.dispatch_locked(&mut inner);
    }

    /// Delivers ready messages to consumers with credit.
    pub fn dispatch(self: &Arc<Self>) {
        let mut inner = self.inner.lock();
        self.dispatch_locked(&mut inner);
    }

    fn dispatch_locked(self: &Arc<Self>, inner: &mut QueueInner) {
        let n = inner.consumers.len();
        if n == 0 {
            return;
        }
        let mut idle = 0;
        while idle < n && !inner.messages.is_empty() {
            let idx = inner.rr % n;
            inner.rr = inner.rr.wrapping_add(1);
            let consumer = &inner.consumers[idx];
            if !consumer.has_credit() {
                idle += 1;
                continue;
            }
            let consumer = consumer.clone();
            let ready = inner.messages.pop_front().expect("not empty");
            match consumer.offer(self, &ready) {
                Offer::Delivered => idle = 0,
                Offer::Refused => {
                    inner.messages.push_front(ready);
                    idle += 1;
                }
            }
        }
    }

    /// Takes one message for basic.get; returns it with the number of messages left.
    pub fn get(&self) -> Option<(Ready, u32)> {
        let mut inner = self.inner.lock();
        let r = inner.messages.pop_front()?;
        Some((r, inner.messages.len() as u32))
    }

    pub fn counts(&self) -> (u32, u32) {
        let inner = self.inner.lock();
        (inner.messages.len() as u32, inner.consumers.len() as u32)
    }

    /// Removes all ready messages (unacked ones stay); returns how many.
    pub fn purge(&self) -> u32 {
        let mut inner = self.inner.lock();
        let n = inner.messages.len() as u32;
        for r in inner.messages.drain(..) {
            self.forget(r.seq);
        }
        n
    }

    /// Adds a consumer (the caller checked exclusivity with [`Queue::check_consume`]).
    pub fn add_consumer(self: &Arc<Self>, c: Arc<Consumer>) {
        c.channel.conn.add_feeder(self);
        let mut inner = self.inner.lock();
        if c.exclusive {
            inner.exclusive_consumer = true;
        }
        inner.had_consumer = true;
        inner.consumers.push(c);
        self.dispatch_locked(&mut inner);
    }

    /// `Err(true)` if an exclusive consumer holds the queue, `Err(false)` if `exclusive` was
    /// asked and consumers exist.
    pub fn check_consume(&self, exclusive: bool) -> Result<(), ()> {
        let inner = self.inner.lock();
        if inner.exclusive_consumer || (exclusive && !inner.consumers.is_empty()) {
            return Err(());
        }
        Ok(())
    }

    /// Removes a consumer; returns true if the queue should now be auto-deleted.
    pub fn remove_consumer(&self, c: &Arc<Consumer>) -> bool {
        let mut inner = self.inner.lock();
        let before = inner.consumers.len();
        inner.consumers.retain(|x| !Arc::ptr_eq(x, c));
        if inner.consumers.len() != before && c.exclusive {
            inner.exclusive_consumer = false;
        }
        self.auto_delete && inner.had_consumer && inner.consumers.is_empty() && !self.is_deleted()
    }

    /// Marks the queue deleted, drops its messages and tells its consumers (basic.cancel).
    /// Returns the number of messages it held.
    pub fn mark_deleted(&self) -> u32 {
        let (consumers, n) = {
            let mut inner = self.inner.lock();
            self.deleted.store(true, Ordering::Release);
            let n = inner.messages.len() as u32;
            inner.messages.clear();
            inner.exclusive_consumer = false;
            (std::mem::take(&mut inner.consumers), n)
        };
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
