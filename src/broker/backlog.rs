//! The ready messages of a queue, in order, with their bodies in memory or on disk.
//!
//! A queue owns its backlogs (one today; one per priority for a priority queue); a backlog knows
//! nothing of consumers, only of order, memory and the store.

use super::message::Message;
use crate::store::MessageLog;
use std::collections::VecDeque;
use std::sync::Arc;

/// A message taken off a queue, body in memory.
pub struct Ready {
    pub msg: Arc<Message>,
    pub redelivered: bool,
    /// Sequence number in the store (0: not stored).
    pub seq: u64,
    /// When it expires, in ms since the Unix epoch (0: never). Kept through requeues, as in
    /// RabbitMQ.
    pub expires: u64,
    /// Arrival number in its backlog. A requeued message goes back to its original place
    /// among the queued ones (RabbitMQ's classic queues do), whatever order the requeues come
    /// in; the backlog stays sorted by it.
    pub pos: u64,
}

/// One queued message. `msg` is `None` while the body of a stored message lives only on disk.
pub(super) struct Slot {
    pub msg: Option<Arc<Message>>,
    pub redelivered: bool,
    pub seq: u64,
    /// Expiry in ms since the Unix epoch (0: never).
    pub expires: u64,
    /// Body size (counted for x-max-length-bytes while the body is on disk too).
    pub size: u32,
    /// Arrival number (see `Ready::pos`).
    pub pos: u64,
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

/// Where a durable queue's bodies live on disk, and whose they are (for log lines).
pub(super) struct StoreRef<'a> {
    pub id: u64,
    pub log: &'a MessageLog,
    pub queue: &'a str,
    pub vhost: &'a str,
}

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
pub(super) struct Backlog {
    slots: VecDeque<Slot>,
    hot: usize,
    cold: usize,
    hot_bytes: usize,
    /// Body bytes of every queued message, in memory or not (RabbitMQ's message_bytes_ready).
    bytes: usize,
    /// The next arrival number.
    next_pos: u64,
}

impl Backlog {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Body bytes of all queued messages.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn tail(&self) -> usize {
        self.slots.len() - self.hot - self.cold
    }

    /// Takes every slot out (purge, delete).
    pub fn clear(&mut self) -> VecDeque<Slot> {
        self.hot = 0;
        self.cold = 0;
        self.hot_bytes = 0;
        self.bytes = 0;
        std::mem::take(&mut self.slots)
    }

    /// Puts a message back at its original place (requeue, or a delivery a consumer refused):
    /// before every queued message that arrived after it. That is within the hot head: the
    /// message was taken from the head, so everything behind it then is still behind it.
    pub fn push_front(&mut self, r: Ready) {
        let size = r.msg.body.len();
        let at = if self.slots.front().is_none_or(|s| s.pos > r.pos) {
            0
        } else {
            self.slots.partition_point(|s| s.pos < r.pos).min(self.hot)
        };
        self.hot += 1;
        self.hot_bytes += size;
        self.bytes += size;
        let slot = Slot { msg: Some(r.msg), redelivered: r.redelivered, seq: r.seq, expires: r.expires, size: size as u32, pos: r.pos };
        self.slots.insert(at, slot);
    }

    /// Appends a newly published message. It joins the hot head if nothing is queued behind the
    /// head and the head has room (`ram_limit` None: unlimited); otherwise it waits in the tail.
    pub fn push_back(&mut self, msg: Arc<Message>, seq: u64, expires: u64, ram_limit: Option<usize>) {
        let size = msg.body.len();
        if self.len() == self.hot && (ram_limit.is_none_or(|limit| self.hot_bytes + size <= limit) || self.hot == 0) {
            self.hot += 1;
            self.hot_bytes += size;
        }
        self.bytes += size;
        let pos = self.next_pos;
        self.next_pos += 1;
        self.slots.push_back(Slot { msg: Some(msg), redelivered: false, seq, expires, size: size as u32, pos });
    }

    /// Appends recovered messages (store sequence numbers and expiry, bodies on disk), flagged
    /// redelivered.
    pub fn restore(&mut self, seqs: impl IntoIterator<Item = (u64, u64, u32)>) {
        debug_assert_eq!(self.tail(), 0);
        for (seq, expires, size) in seqs {
            self.bytes += size as usize;
            let pos = self.next_pos;
            self.next_pos += 1;
            self.slots.push_back(Slot { msg: None, redelivered: true, seq, expires, size, pos });
            self.cold += 1;
        }
    }

    /// Moves messages committed up to `committed` from the tail into `cold`, dropping their
    /// bodies.
    pub fn page_out(&mut self, committed: u64) {
        while self.tail() > 0 {
            let slot = &mut self.slots[self.hot + self.cold];
            if slot.seq != 0 {
                if slot.seq > committed {
                    break;
                }
                slot.msg = None;
            }
            self.cold += 1;
        }
    }

    /// Makes sure a few messages are loaded at the head: reads the next batch of `cold`
    /// messages from the store, or takes over the tail once `cold` is empty. A record missing
    /// from the store is dropped (with a warning) and returned in `lost` for the caller to
    /// forget.
    fn page_in(&mut self, store: Option<&StoreRef<'_>>, lost: &mut Vec<u64>) {
        if self.hot >= PAGE_IN_LOW {
            return;
        }
        if self.cold == 0 {
            if self.hot == 0 && self.tail() > 0 {
                // Nothing on disk ahead of the tail: it becomes the head.
                self.hot = self.slots.len();
                self.hot_bytes = self.slots.iter().map(Slot::bytes).sum();
            }
            return;
        }
        let Some(store) = store else {
            self.hot += self.cold;
            self.cold = 0;
            return;
        };
        let n = self.cold.min(PAGE_IN_BATCH);
        let first = self.hot;
        let seqs: Vec<u64> =
            (first..first + n).filter_map(|i| self.slots[i].msg.is_none().then_some(self.slots[i].seq)).collect();
        let loaded = if seqs.is_empty() {
            Vec::new()
        } else {
            match store.log.read_batch(store.id, &seqs) {
                Ok(v) => v,
                Err(e) => {
                    // Leave them on disk; the next dispatch tries again.
                    tracing::error!(queue = %store.queue, vhost = %store.vhost, "cannot read messages back from the store: {e}");
                    return;
                }
            }
        };
        let mut loaded = loaded.into_iter();
        let (mut i, mut moved) = (first, 0);
        while moved < n {
            moved += 1;
            if self.slots[i].msg.is_none() {
                let seq = self.slots[i].seq;
                match loaded.next().flatten().and_then(super::persist::message_from_record) {
                    Some(m) => self.slots[i].msg = Some(Arc::new(m)),
                    None => {
                        tracing::warn!(queue = %store.queue, vhost = %store.vhost, "dropping message {seq}: missing or unreadable in the store");
                        let gone = self.slots.remove(i).expect("slot");
                        self.bytes -= gone.size as usize;
                        self.cold -= 1;
                        lost.push(seq);
                        continue;
                    }
                }
            }
            self.hot_bytes += self.slots[i].bytes();
            self.hot += 1;
            self.cold -= 1;
            i += 1;
        }
    }

    /// Takes the message at the head, loading bodies from the store first if needed (sequence
    /// numbers of records found missing are added to `lost`).
    pub fn pop(&mut self, store: Option<&StoreRef<'_>>, lost: &mut Vec<u64>) -> Option<Ready> {
        if self.hot < PAGE_IN_LOW && self.hot < self.len() {
            self.page_in(store, lost);
        }
        if self.hot == 0 {
            return None;
        }
        let slot = self.slots.pop_front().expect("hot slot");
        self.hot -= 1;
        let msg = slot.msg.expect("hot slots are loaded");
        self.hot_bytes -= msg.body.len();
        self.bytes -= slot.size as usize;
        Some(Ready { msg, redelivered: slot.redelivered, seq: slot.seq, expires: slot.expires, pos: slot.pos })
    }

    /// The expiry of the message at the head, if it has one.
    pub fn head_expires(&self) -> Option<u64> {
        self.slots.front().map(|s| s.expires).filter(|&e| e != 0)
    }

    /// Removes the message at the head whatever segment it is in (expiry); its body may be on
    /// disk only.
    pub fn drop_head(&mut self) -> Option<Slot> {
        let slot = self.slots.pop_front()?;
        self.bytes -= slot.size as usize;
        if self.hot > 0 {
            self.hot -= 1;
            self.hot_bytes -= slot.bytes();
        } else if self.cold > 0 {
            self.cold -= 1;
        }
        Some(slot)
    }

    /// Ready messages with their body in memory, the bytes of those bodies, and ready messages
    /// whose body is on disk only. Walks the whole backlog: for statistics only.
    pub fn memory(&self) -> (usize, usize, usize) {
        let paged = self.slots.range(self.hot..self.hot + self.cold).filter(|s| s.msg.is_none()).count();
        (self.len() - paged, self.slots.iter().map(Slot::bytes).sum(), paged)
    }
}

/// A queue's backlogs: one, or one per priority level for a priority queue (x-max-priority),
/// the highest level served first and each level in order (FIFO within a priority). Each level
/// pages to disk on its own.
pub(super) struct Backlogs {
    levels: Vec<Backlog>,
}

impl Default for Backlogs {
    fn default() -> Backlogs {
        Backlogs { levels: vec![Backlog::default()] }
    }
}

impl Backlogs {
    /// One level, or `max_priority + 1` levels (RabbitMQ caps a message's priority at the max).
    pub fn new(max_priority: Option<u8>) -> Backlogs {
        let n = max_priority.map_or(1, |m| m as usize + 1);
        Backlogs { levels: (0..n).map(|_| Backlog::default()).collect() }
    }

    /// The level of a message with priority property `priority`.
    pub fn level_of(&self, priority: Option<u8>) -> usize {
        (priority.unwrap_or(0) as usize).min(self.levels.len() - 1)
    }

    fn level(&self, msg: &Message) -> usize {
        if self.levels.len() == 1 { 0 } else { self.level_of(*msg.properties.priority()) }
    }

    pub fn len(&self) -> usize {
        self.levels.iter().map(Backlog::len).sum()
    }

    pub fn bytes(&self) -> usize {
        self.levels.iter().map(Backlog::bytes).sum()
    }

    /// Body bytes in memory at the heads (publisher flow control counts these).
    pub fn hot_bytes(&self) -> usize {
        self.levels.iter().map(|l| l.hot_bytes).sum()
    }

    pub fn tail(&self) -> usize {
        self.levels.iter().map(Backlog::tail).sum()
    }

    pub fn clear(&mut self) -> VecDeque<Slot> {
        let mut all = VecDeque::new();
        for l in self.levels.iter_mut().rev() {
            all.append(&mut l.clear());
        }
        all
    }

    pub fn push_front(&mut self, r: Ready) {
        let i = self.level(&r.msg);
        self.levels[i].push_front(r);
    }

    pub fn push_back(&mut self, msg: Arc<Message>, seq: u64, expires: u64, ram_limit: Option<usize>) {
        let i = self.level(&msg);
        self.levels[i].push_back(msg, seq, expires, ram_limit);
    }

    /// Recovered messages: (sequence number, expiry, body size, level), in store order.
    pub fn restore(&mut self, seqs: impl IntoIterator<Item = (u64, u64, u32, usize)>) {
        for (seq, expires, size, level) in seqs {
            let i = level.min(self.levels.len() - 1);
            self.levels[i].restore(std::iter::once((seq, expires, size)));
        }
    }

    pub fn page_out(&mut self, committed: u64) {
        for l in &mut self.levels {
            if l.tail() > 0 {
                l.page_out(committed);
            }
        }
    }

    /// Takes the head of the highest non-empty level.
    pub fn pop(&mut self, store: Option<&StoreRef<'_>>, lost: &mut Vec<u64>) -> Option<Ready> {
        let l = self.levels.iter_mut().rev().find(|l| l.len() > 0)?;
        l.pop(store, lost)
    }

    /// The earliest expiry among the levels' heads (a message expires at the head of its level).
    pub fn head_expires(&self) -> Option<u64> {
        self.levels.iter().filter_map(Backlog::head_expires).min()
    }

    /// Removes one head that expires before `now`, if any.
    pub fn drop_expired(&mut self, now: u64) -> Option<Slot> {
        let l = self.levels.iter_mut().find(|l| l.head_expires().is_some_and(|at| at < now))?;
        l.drop_head()
    }

    /// Removes the head of the highest non-empty level (x-overflow drop-head).
    pub fn drop_head(&mut self) -> Option<Slot> {
        self.levels.iter_mut().rev().find(|l| l.len() > 0)?.drop_head()
    }

    pub fn memory(&self) -> (usize, usize, usize) {
        self.levels.iter().map(Backlog::memory).fold((0, 0, 0), |a, m| (a.0 + m.0, a.1 + m.1, a.2 + m.2))
    }
}
