//! The cold segment of a backlog: queued messages whose bodies are on disk only, in order.
//!
//! Consecutive stored messages (store sequence numbers and arrival numbers both consecutive,
//! no per-message expiry, the same redelivered flag) are held as one [`Run`] of 40 bytes
//! however many they are, so a backlog of millions of paged-out persistent messages costs a few
//! bytes of memory in all rather than a slot each. Messages that do not fit a run (an expiry, a
//! transient message in the page file, one whose body stayed in memory because the page file
//! could not be written) keep an individual [`Slot`].

use super::Slot;
use std::collections::VecDeque;

/// Body size of a run whose messages differ in size: the total is kept, a message's own size is
/// asked of the store when it leaves the run unread (x-overflow drop-head).
pub(super) const MIXED: u32 = u32::MAX;

/// `count` consecutive stored messages: store sequence numbers `seq..seq + count`, arrival
/// numbers `pos..pos + count`, bodies in the message log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    pub seq: u64,
    pub pos: u64,
    pub count: u32,
    /// Body size of every message of the run, or [`MIXED`].
    pub size: u32,
    /// Body bytes of the run's messages.
    pub bytes: u64,
    pub redelivered: bool,
}

pub(super) enum Cold {
    Run(Run),
    One(Slot),
}

/// The cold messages, oldest first.
#[derive(Default)]
pub(super) struct ColdSegment {
    entries: VecDeque<Cold>,
    /// Messages in `entries` (a run counts its messages).
    len: usize,
}

impl ColdSegment {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries held (runs and single slots): what the segment costs in memory.
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// Appends a stored message without expiry, its body in the message log under `seq`: it
    /// extends the last run when it continues it.
    pub fn push_stored(&mut self, seq: u64, pos: u64, size: u32, redelivered: bool) {
        self.len += 1;
        if let Some(Cold::Run(r)) = self.entries.back_mut()
            && r.redelivered == redelivered
            && r.count < u32::MAX
            && r.seq.checked_add(r.count as u64) == Some(seq)
            && r.pos + r.count as u64 == pos
        {
            if r.size != size {
                r.size = MIXED;
            }
            r.count += 1;
            r.bytes += size as u64;
            return;
        }
        self.entries.push_back(Cold::Run(Run { seq, pos, count: 1, size, bytes: size as u64, redelivered }));
    }

    /// Appends a message that keeps its own slot.
    pub fn push_one(&mut self, slot: Slot) {
        self.len += 1;
        self.entries.push_back(Cold::One(slot));
    }

    /// The expiry of the first message (0: none; runs never expire).
    pub fn front_expires(&self) -> Option<u64> {
        match self.entries.front()? {
            Cold::Run(_) => Some(0),
            Cold::One(s) => Some(s.expires),
        }
    }

    /// Store sequence numbers of the first `n` messages whose bodies are to be read from the
    /// message log (not in memory, not in the page file), ascending.
    pub fn stored_seqs(&self, mut n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        for e in &self.entries {
            if n == 0 {
                break;
            }
            match e {
                Cold::Run(r) => {
                    let k = (r.count as usize).min(n);
                    out.extend(r.seq..r.seq + k as u64);
                    n -= k;
                }
                Cold::One(s) => {
                    if s.msg.is_none() && s.page.is_none() && s.seq != 0 {
                        out.push(s.seq);
                    }
                    n -= 1;
                }
            }
        }
        out
    }

    /// Takes the first message off. A message of a run comes out as a slot with its body on
    /// disk; its size is the run's, or for a run of mixed sizes `size_of(seq)` (the last message
    /// of a run gets what is left of the run's bytes, so the sizes taken add up to them).
    pub fn pop_front(&mut self, size_of: impl FnOnce(u64) -> Option<u32>) -> Option<Slot> {
        let slot = match self.entries.front_mut()? {
            Cold::One(_) => {
                let Some(Cold::One(s)) = self.entries.pop_front() else { unreachable!() };
                s
            }
            Cold::Run(r) => {
                let size = if r.count == 1 {
                    r.bytes
                } else if r.size == MIXED {
                    size_of(r.seq).map_or(0, u64::from).min(r.bytes)
                } else {
                    (r.size as u64).min(r.bytes)
                };
                let s = Slot { msg: None, page: None, redelivered: r.redelivered, seq: r.seq, expires: 0, size: size as u32, pos: r.pos };
                r.seq += 1;
                r.pos += 1;
                r.count -= 1;
                r.bytes -= size;
                if r.count == 0 {
                    self.entries.pop_front();
                }
                s
            }
        };
        self.len -= 1;
        Some(slot)
    }

    /// Takes every entry out.
    pub fn take(&mut self) -> VecDeque<Cold> {
        self.len = 0;
        std::mem::take(&mut self.entries)
    }

    /// Persistent messages (stored in the message log) and their body bytes: for statistics.
    pub fn persistent(&self) -> (u64, u64) {
        self.entries.iter().fold((0, 0), |(n, bytes), e| match e {
            Cold::Run(r) => (n + r.count as u64, bytes + r.bytes),
            Cold::One(s) if s.seq != 0 => (n + 1, bytes + s.size as u64),
            Cold::One(_) => (n, bytes),
        })
    }

    /// Messages whose body is on disk only, and bytes of the bodies held in memory (slots
    /// whose page-out failed).
    pub fn memory(&self) -> (usize, usize) {
        self.entries.iter().fold((0, 0), |(paged, bytes), e| match e {
            Cold::Run(r) => (paged + r.count as usize, bytes),
            Cold::One(s) if s.msg.is_none() => (paged + 1, bytes),
            Cold::One(s) => (paged, bytes + s.bytes()),
        })
    }
}
