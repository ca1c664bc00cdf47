//! The ready messages of a queue, in order, with their bodies in memory or on disk.
//!
//! A queue owns its backlogs (one today; one per priority for a priority queue); a backlog knows
//! nothing of consumers, only of order, memory and the store.
//!
//! Bodies beyond a queue's memory budget go to disk: persistent messages of a durable queue to
//! the message log (they are written there anyway), every other message to the queue's
//! [`PageFile`] (transient pages, discarded at restart), as RabbitMQ's classic queues v2 page to
//! their transient message store.

mod cold;
#[cfg(test)]
mod tests;

use super::message::Message;
use crate::store::MessageLog;
use cold::{Cold, ColdSegment};
pub(crate) use cold::Run;
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
/// pages too. The properties are counted as set: a persistent message always has some
/// (delivery_mode), and their box is larger than the rest together.
const MESSAGE_OVERHEAD: usize = std::mem::size_of::<Message>()
    + std::mem::size_of::<amq_protocol::protocol::basic::AMQPProperties>()
    + std::mem::size_of::<Slot>()
    + 64;

/// Whose backlog it is: the durable queue's message log (store id and log), and names for log
/// lines.
pub(super) struct Home<'a> {
    pub store: Option<(u64, &'a MessageLog)>,
    pub queue: &'a str,
    pub vhost: &'a str,
}

impl Home<'_> {
    /// Body size of stored message `seq`, read from the message log (None: not there).
    fn stored_size(&self, seq: u64) -> Option<u32> {
        let (id, log) = self.store?;
        let r = log.read_batch(id, &[seq]).ok()?;
        r.into_iter().next().flatten().map(|m| m.body.len() as u32)
    }
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

/// What [`Backlog::clear`] took out: single slots (bodies in memory, in the message log, or
/// in the page file) and runs of stored messages.
#[derive(Default)]
pub(super) struct Cleared {
    pub slots: Vec<Slot>,
    pub runs: Vec<Run>,
}

impl Cleared {
    /// Messages taken out.
    pub fn len(&self) -> usize {
        self.slots.len() + self.runs.iter().map(|r| r.count as usize).sum::<usize>()
    }
}

/// The queued messages, oldest first, in three segments:
///
/// - `hot`: bodies in memory, handed to consumers next;
/// - `cold`: bodies on disk only (in memory only when writing the page file failed, e.g. a full
///   disk), as runs of consecutive stored messages where they form them (see [`ColdSegment`]);
/// - `tail`: the newest messages, bodies in memory: persistent ones waiting for their store
///   commit before they are paged out into `cold` (transient ones are written to the page file
///   at once, unless an uncommitted one is ahead of them).
///
/// A queue keeps at most `ram_limit` bytes (bodies and `MESSAGE_OVERHEAD` each) in `hot`; once it
/// is full, new messages go to the tail, move to `cold`, and are read back in batches as
/// consumers drain `hot`. The order of the queue is hot, then cold, then tail.
#[derive(Default)]
pub(super) struct Backlog {
    hot: VecDeque<Slot>,
    cold: ColdSegment,
    tail: VecDeque<Slot>,
    hot_bytes: usize,
    /// Body bytes of every queued message, in memory or not (RabbitMQ's message_bytes_ready).
    bytes: usize,
    /// The next arrival number.
    next_pos: u64,
    /// Messages read back from disk and transient ones written to the page file (RabbitMQ's
    /// `disk_reads` / `disk_writes`, with the queue's writes to the message log).
    disk_reads: u64,
    disk_writes: u64,
}

impl Backlog {
    pub fn len(&self) -> usize {
        self.hot.len() + self.cold.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hot.is_empty() && self.tail.is_empty() && self.cold.is_empty()
    }

    /// Body bytes of all queued messages.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn tail(&self) -> usize {
        self.tail.len()
    }

    /// Takes every message out (purge, delete).
    pub fn clear(&mut self) -> Cleared {
        self.hot_bytes = 0;
        self.bytes = 0;
        let mut out = Cleared { slots: std::mem::take(&mut self.hot).into(), runs: Vec::new() };
        for e in self.cold.take() {
            match e {
                Cold::Run(r) => out.runs.push(r),
                Cold::One(s) => out.slots.push(s),
            }
        }
        out.slots.extend(std::mem::take(&mut self.tail));
        out
    }

    /// Puts a message back at its original place (requeue, or a delivery a consumer refused):
    /// before every queued message that arrived after it. That is within the hot head: the
    /// message was taken from the head, so everything behind it then is still behind it (and
    /// the cold segment, all of which arrived later, is never split by a requeue).
    pub fn push_front(&mut self, r: Ready) {
        let size = r.msg.body.len();
        let at = if self.hot.front().is_none_or(|s| s.pos > r.pos) { 0 } else { self.hot.partition_point(|s| s.pos < r.pos) };
        self.hot_bytes += size;
        self.bytes += size;
        let slot = Slot { msg: Some(r.msg), page: None, redelivered: r.redelivered, seq: r.seq, expires: r.expires, size: size as u32, pos: r.pos };
        self.hot.insert(at, slot);
    }

    /// Appends a newly published message. It joins the hot head if nothing is queued behind the
    /// head and the head has room (`ram_limit` None: unlimited); otherwise it waits in the tail.
    pub fn push_back(&mut self, msg: Arc<Message>, seq: u64, expires: u64, ram_limit: Option<usize>) {
        let size = msg.body.len();
        let cost = |n: usize, bytes: usize| bytes + n * MESSAGE_OVERHEAD;
        let pos = self.next_pos;
        self.next_pos += 1;
        self.bytes += size;
        let slot = Slot { msg: Some(msg), page: None, redelivered: false, seq, expires, size: size as u32, pos };
        if self.cold.is_empty()
            && self.tail.is_empty()
            && (ram_limit.is_none_or(|limit| cost(self.hot.len() + 1, self.hot_bytes + size) <= limit) || self.hot.is_empty())
        {
            self.hot_bytes += size;
            self.hot.push_back(slot);
        } else {
            self.tail.push_back(slot);
        }
    }

    /// Appends a recovered message (store sequence number, expiry, body size; body on disk),
    /// flagged redelivered. Consecutive ones without expiry form runs at once.
    pub fn restore(&mut self, seq: u64, expires: u64, size: u32) {
        debug_assert!(self.tail.is_empty());
        self.bytes += size as usize;
        let pos = self.next_pos;
        self.next_pos += 1;
        if expires == 0 {
            self.cold.push_stored(seq, pos, size, true);
        } else {
            self.cold.push_one(Slot { msg: None, page: None, redelivered: true, seq, expires, size, pos });
        }
    }

    /// Moves messages from the tail into `cold`, dropping their bodies: stored ones once
    /// committed (up to `committed`), transient ones written to the page file. A message whose
    /// write fails stays in memory (`failing` keeps the error from being logged per message).
    fn page_out(&mut self, committed: u64, pages: &mut Option<PageFile>, failing: &mut bool, home: &Home<'_>) {
        while let Some(front) = self.tail.front() {
            if front.seq != 0 && front.seq > committed {
                break;
            }
            let mut slot = self.tail.pop_front().expect("front");
            if slot.seq != 0 {
                if slot.expires == 0 {
                    self.cold.push_stored(slot.seq, slot.pos, slot.size, slot.redelivered);
                } else {
                    slot.msg = None;
                    self.cold.push_one(slot);
                }
                continue;
            }
            if let (Some(p), Some(m)) = (pages.as_mut(), &slot.msg) {
                match p.write(&super::persist::stored(m)) {
                    Ok(at) => {
                        self.disk_writes += 1;
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
            self.cold.push_one(slot);
        }
    }

    /// Makes sure a few messages are loaded at the head: reads the next batch of `cold`
    /// messages back (from the message log in one read, from the page file in order), or takes
    /// over the tail once `cold` is empty. A message that cannot be read back is dropped (with a
    /// warning); a stored one's sequence number goes to `lost` for the caller to forget.
    fn page_in(&mut self, home: &Home<'_>, pages: &mut Option<PageFile>, lost: &mut Vec<u64>) {
        if self.hot.len() >= PAGE_IN_LOW {
            return;
        }
        if self.cold.is_empty() {
            if self.hot.is_empty() && !self.tail.is_empty() {
                // Nothing on disk ahead of the tail: it becomes the head.
                self.hot = std::mem::take(&mut self.tail);
                self.hot_bytes = self.hot.iter().map(Slot::bytes).sum();
            }
            return;
        }
        let n = self.cold.len().min(PAGE_IN_BATCH);
        let seqs = self.cold.stored_seqs(n);
        let mut loaded = match (&home.store, seqs.is_empty()) {
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
        let mut next = 0;
        for _ in 0..n {
            let mut slot = self
                .cold
                .pop_front(|_| loaded.get(next).and_then(|m| m.as_ref()).map(|m| m.body.len() as u32))
                .expect("cold message");
            if slot.msg.is_none() {
                let msg = match slot.page.take() {
                    Some(at) => read_page(pages, at, home),
                    None if slot.seq == 0 => None,
                    None => {
                        next += 1;
                        loaded.get_mut(next - 1).and_then(Option::take).and_then(super::persist::message_from_record)
                    }
                };
                match msg {
                    Some(m) => {
                        self.disk_reads += 1;
                        slot.msg = Some(Arc::new(m));
                    }
                    None => {
                        tracing::warn!(queue = %home.queue, vhost = %home.vhost, "dropping message {}: missing or unreadable on disk", slot.seq);
                        self.bytes -= slot.size as usize;
                        if slot.seq != 0 {
                            lost.push(slot.seq);
                        }
                        continue;
                    }
                }
            }
            self.hot_bytes += slot.bytes();
            self.hot.push_back(slot);
        }
    }

    /// Takes the message at the head, reading bodies back from disk first if needed (sequence
    /// numbers of records found missing are added to `lost`).
    fn pop(&mut self, home: &Home<'_>, pages: &mut Option<PageFile>, lost: &mut Vec<u64>) -> Option<Ready> {
        if self.hot.len() < PAGE_IN_LOW && self.hot.len() < self.len() {
            self.page_in(home, pages, lost);
        }
        let slot = self.hot.pop_front()?;
        let msg = slot.msg.expect("hot slots are loaded");
        self.hot_bytes -= msg.body.len();
        self.bytes -= slot.size as usize;
        Some(Ready { msg, redelivered: slot.redelivered, seq: slot.seq, expires: slot.expires, pos: slot.pos })
    }

    /// The expiry of the message at the head, if it has one.
    pub fn head_expires(&self) -> Option<u64> {
        let e = match self.hot.front() {
            Some(s) => s.expires,
            None => match self.cold.front_expires() {
                Some(e) => e,
                None => self.tail.front()?.expires,
            },
        };
        (e != 0).then_some(e)
    }

    /// Removes the message at the head whatever segment it is in (expiry, length limits); its
    /// body may be on disk only.
    fn drop_head(&mut self, home: &Home<'_>) -> Option<Slot> {
        let slot = if let Some(s) = self.hot.pop_front() {
            self.hot_bytes -= s.bytes();
            s
        } else if !self.cold.is_empty() {
            self.cold.pop_front(|seq| home.stored_size(seq))?
        } else {
            self.tail.pop_front()?
        };
        self.bytes -= slot.size as usize;
        Some(slot)
    }

    /// Ready messages with their body in memory, the bytes of those bodies, and ready messages
    /// whose body is on disk only. Walks the tail and the cold entries: for statistics only.
    pub fn memory(&self) -> (usize, usize, usize) {
        let (paged, cold_bytes) = self.cold.memory();
        (self.len() - paged, self.hot_bytes + cold_bytes + self.tail.iter().map(Slot::bytes).sum::<usize>(), paged)
    }

    /// The message at the head, if its body is in memory.
    fn head(&self) -> Option<&Arc<Message>> {
        match (self.hot.front(), self.cold.is_empty()) {
            (Some(s), _) => s.msg.as_ref(),
            (None, true) => self.tail.front()?.msg.as_ref(),
            (None, false) => None,
        }
    }

    /// Ready persistent messages (stored in the message log) and their body bytes. Walks the
    /// whole backlog: for statistics only.
    pub fn persistent(&self) -> (u64, u64) {
        let stored = |s: &Slot| if s.seq != 0 { (1, s.size as u64) } else { (0, 0) };
        let (n, b) = self.cold.persistent();
        self.hot.iter().chain(self.tail.iter()).map(stored).fold((n, b), |a, x| (a.0 + x.0, a.1 + x.1))
    }

    /// Entries the cold segment holds for its messages (runs and single slots).
    #[cfg(test)]
    pub fn cold_entries(&self) -> usize {
        self.cold.entries()
    }
}

/// A queue's backlogs: one, or one per priority level for a priority queue (x-max-priority),
/// the highest level served first and each level in order (FIFO within a priority). Each level
/// pages to disk on its own; the levels share the queue's page file.
pub(super) struct Backlogs {
    levels: Vec<Backlog>,
    /// Messages the queue wrote to the message log (see `disk_io`).
    logged: u64,
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
        Backlogs { levels: (0..n).map(|_| Backlog::default()).collect(), pages: None, failing: false, logged: 0 }
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

    pub fn is_empty(&self) -> bool {
        self.levels.iter().all(Backlog::is_empty)
    }

    /// A newly published message that does not expire, as [`Backlogs::pop`] would return it
    /// after [`Backlogs::push_back`] — for handing it to a consumer without queueing it when
    /// nothing is queued ahead of it. It takes its arrival number (a requeue puts it back in its
    /// place); if no consumer takes it, [`Backlogs::push_front`] queues it.
    pub fn arrival(&mut self, msg: Arc<Message>, seq: u64) -> Ready {
        let i = self.level(&msg);
        let l = &mut self.levels[i];
        let pos = l.next_pos;
        l.next_pos += 1;
        Ready { msg, redelivered: false, seq, expires: 0, pos }
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

    /// Takes every message out (purge, delete) and deletes the page file's contents: the slots
    /// returned have their bodies in memory or in the message log, never in the page file.
    pub fn clear(&mut self) -> Cleared {
        let mut all = Cleared::default();
        for l in self.levels.iter_mut().rev() {
            let c = l.clear();
            all.slots.extend(c.slots);
            all.runs.extend(c.runs);
        }
        if let Some(p) = &mut self.pages {
            p.clear();
        }
        for s in &mut all.slots {
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

    /// A recovered message: sequence number, expiry, body size, level (in store order).
    pub fn restore(&mut self, seq: u64, expires: u64, size: u32, level: usize) {
        let i = level.min(self.levels.len() - 1);
        self.levels[i].restore(seq, expires, size);
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
        let l = self.levels.iter_mut().rev().find(|l| !l.is_empty())?;
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
        let slot = l.drop_head(home)?;
        Some(self.unpage(slot, load, home))
    }

    /// Removes the head of the highest non-empty level (x-overflow drop-head); `load` as in
    /// [`Backlogs::drop_expired`].
    pub fn drop_head(&mut self, load: bool, home: &Home<'_>) -> Option<Slot> {
        let slot = self.levels.iter_mut().rev().find(|l| !l.is_empty())?.drop_head(home)?;
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

    /// Entries the cold segments hold (runs and single slots), all levels.
    #[cfg(test)]
    pub fn cold_entries(&self) -> usize {
        self.levels.iter().map(Backlog::cold_entries).sum()
    }

    /// The message the next pop takes, if its body is in memory.
    pub fn head(&self) -> Option<&Arc<Message>> {
        self.levels.iter().rev().find(|l| l.len() > 0)?.head()
    }

    /// Messages read from disk and written to it: (reads, writes), the queue's appends to the
    /// message log included.
    pub fn disk_io(&self) -> (u64, u64) {
        self.levels.iter().fold((0, self.logged), |a, l| (a.0 + l.disk_reads, a.1 + l.disk_writes))
    }

    /// Counts a message written to the message log.
    pub fn count_logged(&mut self) {
        self.logged += 1;
    }

    pub fn persistent(&self) -> (u64, u64) {
        self.levels.iter().map(Backlog::persistent).fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1))
    }

    pub fn memory(&self) -> (usize, usize, usize) {
        self.levels.iter().map(Backlog::memory).fold((0, 0, 0), |a, m| (a.0 + m.0, a.1 + m.1, a.2 + m.2))
    }
}
