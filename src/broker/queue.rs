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

/// A message taken off a queue, body in memory.
pub struct Ready {
    pub msg: Arc<Message>,
    pub redelivered: bool,
    /// Sequence number in the store (0: not stored).
    pub seq: u64,
}

/// One queued message. `msg` is `None` while the body of a stored message lives only on disk.
struct Slot {
    msg: Option<Arc<Message>>,
    redelivered: bool,
    seq: u64,
}

impl Slot {
    fn bytes(&self) -> usize {
        self.msg.as_ref().map_or(0, |m| m.body.len())
    }
}

/// How many messages one page-in reads from the store, at most.
const PAGE_IN_BATCH: usize = 256;
/// Page in ahead of consumers when fewer loaded messages than this are at the head.
const PAGE_IN_LOW: usize = 64;

/// The queued messages, oldest first, in three segments:
///
/// - `hot`: the first `hot` slots, all with bodies in memory, handed to consumers next;
/// - `cold`: the next `cold` slots; bodies of stored messages are on disk only (transient ones
///   stay in memory: they have nowhere else to be);
/// - tail: the rest, newest messages with bodies in memory, waiting for their store commit
///   before they are paged out into `cold`.
///
/// A durable queue keeps at most `ram_limit` body bytes in `hot`; once it is full, new
/// messages go to the tail, move to `cold` when committed, and are read back from the store in
/// batches as consumers drain `hot`. The order of the queue is the order of `slots`.
#[derive(Default)]
struct Backlog {
    slots: VecDeque<Slot>,
    hot: usize,
    cold: usize,
    hot_bytes: usize,
}

impl Backlog {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn tail(&self) -> usize {
        self.slots.len() - self.hot - self.cold
    }

    fn clear(&mut self) -> VecDeque<Slot> {
        self.hot = 0;
        self.cold = 0;
        self.hot_bytes = 0;
        std::mem::take(&mut self.slots)
    }

    fn push_front(&mut self, r: Ready) {
        self.hot += 1;
        self.hot_bytes += r.msg.body.len();
        self.slots.push_front(Slot { msg: Some(r.msg), redelivered: r.redelivered, seq: r.seq });
    }
}

#[derive(Default)]
pub struct QueueInner {
    backlog: Backlog,
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
    /// Deliveries awaiting an ack (see `delivery::Unacked`).
    pub unacked: AtomicU64,
    /// Store id and message log of a durable queue (persistent messages are written there).
    pub store: Option<(u64, MessageLog)>,
    /// Highest store sequence number known to be committed (its body may be paged out).
    committed: AtomicU64,
    /// Store sequence number of the newest stored message.
    appended: AtomicU64,
    /// Body bytes a durable queue keeps in memory ahead of its consumers.
    ram_limit: usize,
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
        store: Option<(u64, MessageLog)>,
        ram_limit: usize,
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
            unacked: AtomicU64::new(0),
            store,
            committed: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            ram_limit,
            flow: super::flow::QueueFlow::new(super::flow::FlowLimits::default()),
        }
    }

    /// The same queue with these flow-control limits.
    pub fn with_flow_limits(mut self, limits: super::flow::FlowLimits) -> Queue {
        self.flow = super::flow::QueueFlow::new(limits);
        self
    }

    /// A consumer of this queue delivers to connection `conn` (flow control must not pause a
    /// reader whose acks the queue is waiting for).
    pub fn consumed_by(&self, conn: &Arc<super::delivery::ConnShared>) -> bool {
        self.inner.lock().consumers.iter().any(|c| Arc::ptr_eq(&c.channel.conn, conn))
    }

    /// Re-evaluates the flow flag (a paused publisher's periodic check).
    pub fn recheck_flow(&self) {
        let inner = self.inner.lock();
        self.flow.after_drain(inner.backlog.len(), inner.backlog.hot_bytes, !inner.consumers.is_empty());
    }

    /// Puts recovered messages in (at start, before any client): their store sequence
    /// numbers, in order. Bodies stay on disk until consumers come; all are flagged
    /// redelivered (they may have been delivered before the restart).
    pub fn restore(&self, seqs: impl IntoIterator<Item = u64>, next_seq: u64) {
        let mut inner = self.inner.lock();
        let b = &mut inner.backlog;
        debug_assert_eq!(b.tail(), 0);
        for seq in seqs {
            b.slots.push_back(Slot { msg: None, redelivered: true, seq });
            b.cold += 1;
        }
        inner.next_seq = inner.next_seq.max(next_seq);
        self.committed.fetch_max(next_seq.saturating_sub(1), Ordering::AcqRel);
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
            self.appended.store(seq, Ordering::Release);
            let queue = Arc::downgrade(self);
            log.append_then(*id, seq, record.clone(), move |r| {
                if let Some(q) = queue.upgrade() {
                    q.committed_up_to(seq);
                }
                done(r);
            });
        }
        let size = msg.body.len();
        let b = &mut inner.backlog;
        if b.len() == b.hot && (self.store.is_none() || b.hot_bytes + size <= self.ram_limit || b.hot == 0) {
            b.hot += 1;
            b.hot_bytes += size;
        }
        b.slots.push_back(Slot { msg: Some(msg), redelivered: false, seq });
        if b.tail() > 0 {
            self.page_out(b);
        }
        self.dispatch_locked(&mut inner);
        self.flow.after_push(inner.backlog.len(), inner.backlog.hot_bytes, !inner.consumers.is_empty());
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
                self.page_out(&mut inner.backlog);
            }
        }
    }

    /// Moves committed messages from the tail into `cold`, dropping their bodies.
    fn page_out(&self, b: &mut Backlog) {
        let committed = self.committed.load(Ordering::Acquire);
        while b.tail() > 0 {
            let slot = &mut b.slots[b.hot + b.cold];
            if slot.seq != 0 {
                if slot.seq > committed {
                    break;
                }
                slot.msg = None;
            }
            b.cold += 1;
        }
    }

    /// Makes sure a few messages are loaded at the head: reads the next batch of `cold`
    /// messages from the store, or takes over the tail once `cold` is empty.
    fn page_in(&self, b: &mut Backlog) {
        if b.hot >= PAGE_IN_LOW {
            return;
        }
        if b.cold == 0 {
            if b.hot == 0 && b.tail() > 0 {
                // Nothing on disk ahead of the tail: it becomes the head.
                b.hot = b.slots.len();
                b.hot_bytes = b.slots.iter().map(Slot::bytes).sum();
            }
            return;
        }
        let Some((id, log)) = &self.store else {
            b.hot += b.cold;
            b.cold = 0;
            return;
        };
        let n = b.cold.min(PAGE_IN_BATCH);
        let first = b.hot;
        let seqs: Vec<u64> = (first..first + n).filter_map(|i| b.slots[i].msg.is_none().then_some(b.slots[i].seq)).collect();
        let loaded = if seqs.is_empty() {
            Vec::new()
        } else {
            match log.read_batch(*id, &seqs) {
                Ok(v) => v,
                Err(e) => {
                    // Leave them on disk; the next dispatch tries again.
                    tracing::error!(queue = %self.name, vhost = %self.vhost, "cannot read messages back from the store: {e}");
                    return;
                }
            }
        };
        let mut loaded = loaded.into_iter();
        let (mut i, mut moved) = (first, 0);
        while moved < n {
            moved += 1;
            if b.slots[i].msg.is_none() {
                let seq = b.slots[i].seq;
                match loaded.next().flatten().and_then(super::persist::message_from_record) {
                    Some(m) => b.slots[i].msg = Some(Arc::new(m)),
                    None => {
                        tracing::warn!(queue = %self.name, vhost = %self.vhost, "dropping message {seq}: missing or unreadable in the store");
                        b.slots.remove(i);
                        b.cold -= 1;
                        self.forget(seq);
                        continue;
                    }
                }
            }
            b.hot_bytes += b.slots[i].bytes();
            b.hot += 1;
            b.cold -= 1;
            i += 1;
        }
    }

    /// Takes the message at the head, loading bodies from the store first if needed.
    fn pop(&self, b: &mut Backlog) -> Option<Ready> {
        if b.hot < PAGE_IN_LOW && b.hot < b.len() {
            self.page_in(b);
        }
        if b.hot == 0 {
            return None;
        }
        let slot = b.slots.pop_front().expect("hot slot");
        b.hot -= 1;
        let msg = slot.msg.expect("hot slots are loaded");
        b.hot_bytes -= msg.body.len();
        Some(Ready { msg, redelivered: slot.redelivered, seq: slot.seq })
    }

    /// Puts messages (with their store sequence numbers) back at the head of the queue, oldest
    /// first, flagged redelivered.
    pub fn requeue(self: &Arc<Self>, msgs: impl DoubleEndedIterator<Item = (Arc<Message>, u64)>) {
        let mut inner = self.inner.lock();
        if self.is_deleted() {
            return;
        }
        for (msg, seq) in msgs.rev() {
            inner.backlog.push_front(Ready { msg, redelivered: true, seq });
        }
        self.dispatch_locked(&mut inner);
    }

    /// Delivers ready messages to consumers with credit.
    pub fn dispatch(self: &Arc<Self>) {
        let mut inner = self.inner.lock();
        if inner.backlog.tail() > 0 {
            self.page_out(&mut inner.backlog);
        }
        self.dispatch_locked(&mut inner);
    }

    fn dispatch_locked(self: &Arc<Self>, inner: &mut QueueInner) {
        let n = inner.consumers.len();
        if n == 0 {
            self.flow.after_drain(inner.backlog.len(), inner.backlog.hot_bytes, false);
            return;
        }
        let mut idle = 0;
        while idle < n && inner.backlog.len() > 0 {
            let idx = inner.rr % n;
            inner.rr = inner.rr.wrapping_add(1);
            let consumer = &inner.consumers[idx];
            if !consumer.has_credit() {
                idle += 1;
                continue;
            }
            let consumer = consumer.clone();
            let Some(ready) = self.pop(&mut inner.backlog) else { break };
            match consumer.offer(self, &ready) {
                Offer::Delivered => idle = 0,
                Offer::Refused => {
                    inner.backlog.push_front(ready);
                    idle += 1;
                }
            }
        }
        self.flow.after_drain(inner.backlog.len(), inner.backlog.hot_bytes, true);
    }

    /// Takes one message for basic.get; returns it with the number of messages left.
    pub fn get(&self) -> Option<(Ready, u32)> {
        let mut inner = self.inner.lock();
        let r = self.pop(&mut inner.backlog)?;
        Some((r, inner.backlog.len() as u32))
    }

    pub fn counts(&self) -> (u32, u32) {
        let inner = self.inner.lock();
        (inner.backlog.len() as u32, inner.consumers.len() as u32)
    }

    /// Ready messages with their body in memory, the bytes of those bodies, and ready messages
    /// whose body is on disk only (RabbitMQ's messages_ram, message_bytes_ram,
    /// messages_paged_out). Walks the whole queue: for statistics, not for the hot path.
    pub fn memory(&self) -> (usize, usize, usize) {
        let inner = self.inner.lock();
        let b = &inner.backlog;
        let paged = b.slots.range(b.hot..b.hot + b.cold).filter(|s| s.msg.is_none()).count();
        (b.len() - paged, b.slots.iter().map(Slot::bytes).sum(), paged)
    }

    /// Removes all ready messages (unacked ones stay); returns how many.
    pub fn purge(&self) -> u32 {
        let mut inner = self.inner.lock();
        let slots = inner.backlog.clear();
        self.flow.clear();
        let n = slots.len() as u32;
        for r in slots {
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
        self.flow.after_drain(inner.backlog.len(), inner.backlog.hot_bytes, !inner.consumers.is_empty());
        self.auto_delete && inner.had_consumer && inner.consumers.is_empty() && !self.is_deleted()
    }

    /// Marks the queue deleted, drops its messages and tells its consumers (basic.cancel).
    /// Returns the number of messages it held.
    pub fn mark_deleted(&self) -> u32 {
        let (consumers, n) = {
            let mut inner = self.inner.lock();
            self.deleted.store(true, Ordering::Release);
            let n = inner.backlog.clear().len() as u32;
            self.flow.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use bytes::{BufMut, BytesMut};

    fn persistent(body: Vec<u8>) -> Arc<Message> {
        let properties = amq_protocol::protocol::basic::AMQPProperties::default().with_delivery_mode(2);
        let mut raw = BytesMut::new();
        raw.put_u16(crate::protocol::CLASS_BASIC);
        raw.put_u16(0);
        raw.put_u64(body.len() as u64);
        raw.put_u16(0x1000); // property flags: delivery-mode
        raw.put_u8(2);
        Arc::new(Message {
            exchange: String::new(),
            routing_key: "q".into(),
            properties,
            header_raw: raw.freeze(),
            body: Bytes::from(body),
        })
    }

    fn body(i: u32) -> Vec<u8> {
        let mut b = vec![(i % 251) as u8; 1000];
        b[..4].copy_from_slice(&i.to_be_bytes());
        b
    }

    fn publish(q: &Arc<Queue>, i: u32) {
        let m = persistent(body(i));
        let rec = crate::broker::persist::record(&m);
        q.publish(m, Some((&rec, Box::new(|r| r.expect("stored")))));
    }

    fn durable_queue(store: &Store, limit: usize) -> Arc<Queue> {
        let def = crate::store::QueueDef { vhost: "/".into(), name: "q".into(), durable: true, auto_delete: false, arguments: vec![] };
        let id = store.put_queue(&def).unwrap();
        Arc::new(Queue::new("q".into(), "/".into(), true, false, None, FieldTable::default(), Some((id, store.message_log())), limit))
    }

    /// Bodies beyond the queue's memory limit go to disk once committed and come back, in
    /// order and intact, when taken.
    #[test]
    fn backlog_beyond_the_limit_is_paged_out_and_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let q = durable_queue(&store, 20_000);
        for i in 0..2_000 {
            publish(&q, i);
        }
        store.message_log().flush().wait().unwrap();
        let (_, in_ram, paged) = q.memory();
        assert!(in_ram <= 20_000 + 1_000, "{in_ram} body bytes in memory");
        assert!(paged >= 1_970, "{paged} paged");
        // A redelivery in the middle goes back to the head.
        let (first, _) = q.get().unwrap();
        q.requeue(std::iter::once((first.msg.clone(), first.seq)));
        for i in 0..2_000u32 {
            let (r, left) = q.get().expect("message");
            assert_eq!(r.msg.body[..], body(i)[..], "message {i}");
            assert_eq!(r.redelivered, i == 0);
            assert_eq!(left, 1_999 - i);
            q.forget(r.seq);
        }
        assert!(q.get().is_none());
        store.message_log().flush().wait().unwrap();
        assert_eq!(store.total_message_count().unwrap(), 0);
    }

    /// Messages published while part of the backlog is on disk queue up behind it, even when
    /// the head has room again.
    #[test]
    fn publishes_after_paging_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let q = durable_queue(&store, 5_000);
        let mut next = 0u32;
        let mut expect = 0u32;
        for round in 0..20 {
            for _ in 0..300 {
                publish(&q, next);
                next += 1;
            }
            if round % 3 == 0 {
                store.message_log().flush().wait().unwrap();
            }
            for _ in 0..200 {
                let (r, _) = q.get().expect("message");
                assert_eq!(r.msg.body[..4], expect.to_be_bytes(), "round {round}");
                expect += 1;
                q.forget(r.seq);
            }
        }
        while let Some((r, _)) = q.get() {
            assert_eq!(r.msg.body[..4], expect.to_be_bytes());
            expect += 1;
        }
        assert_eq!(expect, next);
    }

    /// A recovered queue holds only the index; bodies are read when taken, and a record that
    /// vanished from the store is skipped, not delivered empty.
    #[test]
    fn restored_index_reads_bodies_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let q = durable_queue(&store, 1 << 20);
        for i in 0..10 {
            publish(&q, i);
        }
        store.message_log().flush().wait().unwrap();
        let id = q.store.as_ref().unwrap().0;
        let seqs: Vec<u64> = store.load_index(id, 0, usize::MAX).unwrap().into_iter().map(|(s, _)| s).collect();
        store.message_log().remove(id, seqs[3]);
        store.message_log().flush().wait().unwrap();
        let r = Arc::new(Queue::new("r".into(), "/".into(), true, false, None, FieldTable::default(), Some((id, store.message_log())), 1 << 20));
        r.restore(seqs.clone(), seqs.last().unwrap() + 1);
        assert_eq!(r.memory(), (0, 0, 10));
        let got: Vec<u32> = std::iter::from_fn(|| r.get()).map(|(m, _)| {
            assert!(m.redelivered);
            u32::from_be_bytes(m.msg.body[..4].try_into().unwrap())
        }).collect();
        assert_eq!(got, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    }
}
