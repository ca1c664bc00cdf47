//! The ready messages of a queue, in order, with their bodies in memory or on disk.
//!
//! A queue owns its backlogs (one today; one per priority for a priority queue); a backlog knows
//! nothing of consumers, only of order, memory and the store.
//!
//! Bodies beyond a queue's memory budget go to disk: persistent messages of a durable queue to
//! the message log (they are written there anyway), every other message to the queue's
//! [`PageFile`] (transient pages, discarded at restart), as RabbitMQ's classic queues v2 page to
//! their transient message store.

use super::message::Message;
use crate::store::MessageLog;
use crate::store::transient::{PageFile, PageRef};
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

/// One queued message. `msg` is `None` while its body lives only on disk: in the queue's page
/// file at `page`, or (no `page`) in the message log under `seq`.
pub(super) struct Slot {
    pub msg: Option<Arc<Message>>,
    /// Where a paged-out transient message is (see [`PageFile`]).
    page: Option<PageRef>,
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
/// What a message in memory costs beyond its body (the `Message` with its parsed properties,
/// the `Arc`, the slot), counted against the memory budget so that a backlog of tiny messages
/// pages too.
const MESSAGE_OVERHEAD: usize = std::mem::size_of::<Message>() + std::mem::size_of::<Slot>() + 64;

/// Whose backlog it is: the durable queue's message log (store id and log), and names for log
/// lines.
pub(super) struct Home<'a> {
    pub store: Option<(u64, &'a MessageLog)>,
    pub queue: &'a str,
    pub vhost: &'a str,
}

/// Reads a paged-out transient message back and forgets its place in the page file.
fn read_page(pages: &mut Option<PageFile>, at: PageRef, home: &Home<'_>) -> Option<Message> {
    let p = pages.as_mut()?;
    let r = p.read(at);
    p.release(at);
    match r {
        Ok(sm) => super::persist::message_from_record(sm),
        Err(e) => {
            tracing::error!(queue = %home.queue, vhost = %home.vhost, "cannot read a transient message back from its page file: {e}");
            None
        }
    }
}

/// The queued messages, oldest first, in three segments:
///
/// - `hot`: the first `hot` slots, all with bodies in memory, handed to consumers next;
/// - `cold`: the next `cold` slots, bodies on disk only (in memory only when writing the page
///   file failed, e.g. a full disk);
/// - tail: the rest, newest messages with bodies in memory: persistent ones waiting for their
///   store commit before they are paged out into `cold` (transient ones are written to the page
///   file at once, unless an uncommitted one is ahead of them).
///
/// A queue keeps at most `ram_limit` bytes (bodies and `MESSAGE_OVERHEAD` each) in `hot`; once it
/// is full, new messages go to the tail, move to `cold`, and are read back in batches as
/// consumers drain `hot`. The order of the queue is the order of `slots`.
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
        let slot = Slot { msg: Some(r.msg), page: None, redelivered: r.redelivered, seq: r.seq, expires: r.expires, size: size as u32, pos: r.pos };
        self.slots.insert(at, slot);
    }

    /// Appends a newly published message. It joins the hot head if nothing is queued behind the
    /// head and the head has room (`ram_limit` None: unlimited); otherwise it waits in the tail.
    pub fn push_back(&mut self, msg: Arc<Message>, seq: u64, expires: u64, ram_limit: Option<usize>) {
        let size = msg.body.len();
        let cost = |n: usize, bytes: usize| bytes + n * MESSAGE_OVERHEAD;
        if self.len() == self.hot
            && (ram_limit.is_none_or(|limit| cost(self.hot + 1, self.hot_bytes + size) <= limit) || self.hot == 0)
        {
            self.hot += 1;
            self.hot_bytes += size;
        }
        self.bytes += size;
        let pos = self.next_pos;
        self.next_pos += 1;
        self.slots.push_back(Slot { msg: Some(msg), page: None, redelivered: false, seq, expires, size: size as u32, pos });
    }

    /// Appends recovered messages (store sequence numbers and expiry, bodies on disk), flagged
    /// redelivered.
    pub fn restore(&mut self, seqs: impl IntoIterator<Item = (u64, u64, u32)>) {
        debug_assert_eq!(self.tail(), 0);
        for (seq, expires, size) in seqs {
            self.bytes += size as usize;
            let pos = self.next_pos;
            self.next_pos += 1;
            self.slots.push_back(Slot { msg: None, page: None, redelivered: true, seq, expires, size, pos });
            self.cold += 1;
        }
    }

    /// Moves messages from the tail into `cold`, dropping their bodies: stored ones once
    /// committed (up to `committed`), transient ones written to the page file. A message whose
    /// write fails stays in memory (`failing` keeps the error from being logged per message).
    fn page_out(&mut self, committed: u64, pages: &mut Option<PageFile>, failing: &mut bool, home: &Home<'_>) {
        while self.tail() > 0 {
            let slot = &mut self.slots[self.hot + self.cold];
            if slot.seq != 0 {
                if slot.seq > committed {
                    break;
                }
                slot.msg = None;
            } else if let (Some(p), Some(m)) = (pages.as_mut(), &slot.msg) {
                match p.write(&super::persist::stored(m)) {
                    Ok(at) => {
                        slot.page = Some(at);
                        slot.msg = None;
                        *failing = false;
                    }
                    Err(e) if !*failing => {
                        *failing = true;
                        tracing::error!(queue = %home.queue, vhost = %home.vhost, "cannot page transient messages out (they stay in memory): {e}");
                    }
                    Err(_) => {}
                }
            }
            self.cold += 1;
        }
    }

    /// Makes sure a few messages are loaded at the head: reads the next batch of `cold`
    /// messages back (from the message log in one read, from the page file in order), or takes
    /// over the tail once `cold` is empty. A message that cannot be read back is dropped (with a
    /// warning); a stored one's sequence number goes to `lost` for the caller to forget.
    fn page_in(&mut self, home: &Home<'_>, pages: &mut Option<PageFile>, lost: &mut Vec<u64>) {
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
        let n = self.cold.min(PAGE_IN_BATCH);
        let first = self.hot;
        let seqs: Vec<u64> = (first..first + n)
            .filter_map(|i| {
                let s = &self.slots[i];
                (s.msg.is_none() && s.page.is_none()).then_some(s.seq)
            })
            .collect();
        let loaded = match (&home.store, seqs.is_empty()) {
            (_, true) | (None, false) => Vec::new(),
            (Some((id, log)), false) => match log.read_batch(*id, &seqs) {
                Ok(v) => v,
                Err(e) => {
                    // Leave them on disk; the next dispatch tries again.
                    tracing::error!(queue = %home.queue, vhost = %home.vhost, "cannot read messages back from the store: {e}");
                    return;
                }
            },
        };
        let mut loaded = loaded.into_iter();
        let (mut i, mut moved) = (first, 0);
        while moved < n {
            moved += 1;
            if self.slots[i].msg.is_none() {
                let seq = self.slots[i].seq;
                let msg = match self.slots[i].page.take() {
                    Some(at) => read_page(pages, at, home),
                    None => loaded.next().flatten().and_then(super::persist::message_from_record),
                };
                match msg {
                    Some(m) => self.slots[i].msg = Some(Arc::new(m)),
                    None => {
                        tracing::warn!(queue = %home.queue, vhost = %home.vhost, "dropping message {seq}: missing or unreadable on disk");
                        let gone = self.slots.remove(i).expect("slot");
                        self.bytes -= gone.size as usize;
                        self.cold -= 1;
                        if seq != 0 {
                            lost.push(seq);
                        }
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

    /// Takes the message at the head, reading bodies back from disk first if needed (sequence
    /// numbers of records found missing are added to `lost`).
    fn pop(&mut self, home: &Home<'_>, pages: &mut Option<PageFile>, lost: &mut Vec<u64>) -> Option<Ready> {
        if self.hot < PAGE_IN_LOW && self.hot < self.len() {
            self.page_in(home, pages, lost);
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
    fn drop_head(&mut self) -> Option<Slot> {
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
/// pages to disk on its own; the levels share the queue's page file.
pub(super) struct Backlogs {
    levels: Vec<Backlog>,
    /// Where transient messages beyond the memory budget go (None: they stay in memory).
    pages: Option<PageFile>,
    /// Writing the page file failed last time (logged once until a write succeeds).
    failing: bool,
}

impl Default for Backlogs {
    fn default() -> Backlogs {
        Backlogs::new(None)
    }
}

impl Backlogs {
    /// One level, or `max_priority + 1` levels (RabbitMQ caps a message's priority at the max).
    pub fn new(max_priority: Option<u8>) -> Backlogs {
        let n = max_priority.map_or(1, |m| m as usize + 1);
        Backlogs { levels: (0..n).map(|_| Backlog::default()).collect(), pages: None, failing: false }
    }

    /// Transient messages beyond the memory budget go to `pages`.
    pub fn set_pages(&mut self, pages: PageFile) {
        self.pages = Some(pages);
    }

    /// Does every message count against the memory budget (not only stored ones)?
    pub fn pages(&self) -> bool {
        self.pages.is_some()
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

    /// Takes every slot out (purge, delete) and deletes the page file's contents: the slots
    /// returned have their bodies in memory or in the message log, never in the page file.
    pub fn clear(&mut self) -> VecDeque<Slot> {
        let mut all = VecDeque::new();
        for l in self.levels.iter_mut().rev() {
            all.append(&mut l.clear());
        }
        if let Some(p) = &mut self.pages {
            p.clear();
        }
        for s in &mut all {
            s.page = None;
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

    /// Pages the tails out: stored messages committed up to `committed`, transient ones to the
    /// page file.
    pub fn page_out(&mut self, committed: u64, home: &Home<'_>) {
        for l in &mut self.levels {
            if l.tail() > 0 {
                l.page_out(committed, &mut self.pages, &mut self.failing, home);
            }
        }
    }

    /// Takes the head of the highest non-empty level.
    pub fn pop(&mut self, home: &Home<'_>, lost: &mut Vec<u64>) -> Option<Ready> {
        let l = self.levels.iter_mut().rev().find(|l| l.len() > 0)?;
        l.pop(home, &mut self.pages, lost)
    }

    /// The earliest expiry among the levels' heads (a message expires at the head of its level).
    pub fn head_expires(&self) -> Option<u64> {
        self.levels.iter().filter_map(Backlog::head_expires).min()
    }

    /// Removes one head that expires before `now`, if any. With `load` (it is to be
    /// dead-lettered) a body in the page file is read back into the slot.
    pub fn drop_expired(&mut self, now: u64, load: bool, home: &Home<'_>) -> Option<Slot> {
        let l = self.levels.iter_mut().find(|l| l.head_expires().is_some_and(|at| at < now))?;
        let slot = l.drop_head()?;
        Some(self.unpage(slot, load, home))
    }

    /// Removes the head of the highest non-empty level (x-overflow drop-head); `load` as in
    /// [`Backlogs::drop_expired`].
    pub fn drop_head(&mut self, load: bool, home: &Home<'_>) -> Option<Slot> {
        let slot = self.levels.iter_mut().rev().find(|l| l.len() > 0)?.drop_head()?;
        Some(self.unpage(slot, load, home))
    }

    /// A slot taken out of the backlog leaves the page file (its body read back if `load`).
    fn unpage(&mut self, mut slot: Slot, load: bool, home: &Home<'_>) -> Slot {
        if let Some(at) = slot.page.take() {
            if load {
                slot.msg = read_page(&mut self.pages, at, home).map(Arc::new);
            } else if let Some(p) = &mut self.pages {
                p.release(at);
            }
        }
        slot
    }

    pub fn memory(&self) -> (usize, usize, usize) {
        self.levels.iter().map(Backlog::memory).fold((0, 0, 0), |a, m| (a.0 + m.0, a.1 + m.1, a.2 + m.2))
    }
}
