//! Publisher confirms of one channel.
//!
//! Publishes complete out of order (a transient message at once, a persistent one when its batch is
//! on disk), but an ack with multiple=true confirms everything up to its tag, so only the
//! contiguous prefix of completed sequence numbers may be acked. Both the connection's reader task
//! and the store's writer thread complete publishes here; whoever advances the prefix writes the
//! frame.

use super::delivery::ChannelShared;
use super::outbound::ConnShared;
use crate::protocol::frame;
use crate::protocol::{AMQPClass, basic};
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::atomic::Ordering::{AcqRel, Relaxed, SeqCst};

#[derive(Default)]
struct Inner {
    /// Every sequence number ≤ `done_upto` is complete.
    done_upto: u64,
    /// Highest sequence number confirmed on the wire.
    sent: u64,
    /// Completed numbers above `done_upto` (waiting for a gap to close).
    done: BTreeSet<u64>,
    /// Completed with failure: these get a basic.nack.
    failed: BTreeSet<u64>,
}

#[derive(Default)]
pub struct Confirms {
    inner: Mutex<Inner>,
    /// The last sequence number handed out (the channel stores it on each confirm-mode publish).
    issued: AtomicU64,
    /// Publishes acked to the client (management `message_stats.confirm`).
    acked: AtomicU64,
    /// A flush is scheduled for the end of the store writer's current batch.
    flush_scheduled: AtomicBool,
}

impl Confirms {
    /// The channel handed out sequence number `seq`.
    #[inline]
    pub fn issued(&self, seq: u64) {
        self.issued.store(seq, Relaxed);
    }

    /// Publishes not yet confirmed to the client (`messages_unconfirmed`).
    pub fn unconfirmed(&self) -> u64 {
        self.issued.load(Relaxed).saturating_sub(self.inner.lock().sent)
    }

    /// Publishes acked to the client so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Relaxed)
    }

    /// Marks publish `seq` complete (`ok` false: it will be nacked).
    pub fn complete(&self, seq: u64, ok: bool) {
        let mut st = self.inner.lock();
        if !ok {
            st.failed.insert(seq);
        }
        if seq == st.done_upto + 1 {
            st.done_upto = seq;
            loop {
                let next = st.done_upto + 1;
                if !st.done.remove(&next) {
                    break;
                }
                st.done_upto = next;
            }
        } else if seq > st.done_upto {
            st.done.insert(seq);
        }
    }

    /// Sends what became sendable of `ch`'s confirms and wakes its connection's writer: at the end
    /// of the store batch when called from a commit callback on the writer thread (one
    /// `basic.ack multiple=true` and one wake-up for all the channel's publishes of that batch,
    /// instead of one per publish), at once anywhere else.
    pub fn flush_soon(ch: &Arc<ChannelShared>) {
        // Ordering: `complete` (under the lock) happens before this swap; the deferred flush
        // clears the flag before it takes the lock, so a completion that found the flag set is
        // seen by that flush, and one that comes after the clear schedules its own.
        if ch.confirms.flush_scheduled.swap(true, AcqRel) {
            return;
        }
        let ch = ch.clone();
        crate::store::writer::at_batch_end(move || {
            ch.confirms.flush_scheduled.store(false, SeqCst);
            if ch.open.load(Relaxed) && ch.confirms.flush(&ch.conn, ch.number) {
                ch.conn.wake();
            }
        });
    }

    /// Writes the confirms that became sendable. Returns true if anything was written.
    pub fn flush(&self, conn: &ConnShared, channel: u16) -> bool {
        let mut st = self.inner.lock();
        if st.done_upto <= st.sent {
            return false;
        }
        let (from, to) = (st.sent + 1, st.done_upto);
        st.sent = to;
        if st.failed.range(from..=to).next().is_none() {
            self.acked.fetch_add(to - from + 1, Relaxed);
            conn.append(|out| frame::write_ack(out, channel, to, to > from));
            return true;
        }
        // Rare (a store failure): confirm one by one so no ack covers a nacked publish.
        let failed: Vec<u64> = st.failed.range(from..=to).copied().collect();
        for f in &failed {
            st.failed.remove(f);
        }
        self.acked.fetch_add(to - from + 1 - failed.len() as u64, Relaxed);
        conn.append(|out| {
            for seq in from..=to {
                if failed.contains(&seq) {
                    let m = AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack { delivery_tag: seq, multiple: false, requeue: false }));
                    frame::write_method(out, channel, m);
                } else {
                    frame::write_ack(out, channel, seq, false);
                }
            }
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{Frame, parse_frame};

    fn frames(conn: &ConnShared) -> Vec<(u64, bool, bool)> {
        let mut buf = bytes::BytesMut::new();
        conn.take_now(&mut buf);
        let mut out = Vec::new();
        while let Some(Frame::Method { method, .. }) = parse_frame(&mut buf, 131072).unwrap() {
            match method {
                AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => out.push((a.delivery_tag, a.multiple, true)),
                AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => out.push((n.delivery_tag, n.multiple, false)),
                other => panic!("{other:?}"),
            }
        }
        out
    }

    #[test]
    fn acks_only_the_contiguous_prefix() {
        let conn = ConnShared::new(1, 131072);
        let c = Confirms::default();
        c.complete(2, true);
        c.complete(3, true);
        assert!(!c.flush(&conn, 1));
        c.complete(1, true);
        assert!(c.flush(&conn, 1));
        assert_eq!(frames(&conn), vec![(3, true, true)]);
        c.complete(4, true);
        c.flush(&conn, 1);
        assert_eq!(frames(&conn), vec![(4, false, true)]);
    }

    #[test]
    fn failures_are_nacked_alone() {
        let conn = ConnShared::new(1, 131072);
        let c = Confirms::default();
        c.complete(1, true);
        c.complete(2, false);
        c.complete(3, true);
        c.flush(&conn, 1);
        assert_eq!(frames(&conn), vec![(1, false, true), (2, false, false), (3, false, true)]);
    }
}
