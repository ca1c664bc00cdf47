//! The group-commit writer: one dedicated OS thread owns every write
//! transaction of the store (message ops *and* definition changes, so neither
//! can starve the other and their relative order is the order they were
//! submitted in).
//!
//! Loop: block for one op, then drain whatever else is queued (up to
//! `max_batch_ops` ops / `max_batch_bytes` record bytes), apply the whole batch
//! in ONE write transaction with `Durability::Immediate`, commit (one fsync),
//! then complete every ticket of the batch. While a commit is in flight new
//! ops pile up in the channel, so batches grow with load by themselves.
//!
//! Within a batch, an `append` and a later `remove` of the same (queue, seq)
//! cancel out: nothing is written for them. This relies on the broker's
//! contract that a (queue_id, seq) pair names one message for the life of the
//! queue (seqs are never reused).
//!
//! # Completion
//! Each op may carry a [`Done`]:
//! * [`Ticket`] (`MessageLog::append`, `purge_queue`, `flush`): a future
//!   backed by a `tokio::sync::oneshot`; `.await` it in async code or call
//!   [`Pending::wait`] from a plain thread.
//! * a callback (`MessageLog::append_then`): `FnOnce(Result<(), StoreError>)`
//!   run **on the writer thread** right after the commit. It must be cheap and
//!   must never block (push to a channel / wake a task). This is the cheapest
//!   mechanism for the broker: e.g. a channel can collect confirm seqnos and
//!   send one `basic.ack multiple=true` per batch. A panic in a callback is
//!   caught and logged. A callback must never call a blocking `Store` method
//!   (`put_*`, `delete_*`, `Pending::wait`): that would deadlock the writer.
//! * nothing (`append_detached`, `remove`).
//!
//! A ticket resolves `Ok` only after the transaction containing its op is
//! durably committed (or, for an append cancelled by a remove in the same
//! batch, when that batch is done). If anything in the batch fails, every
//! ticket of the batch resolves `Err`; the writer keeps running and the next
//! batch tries again. Removes carry no ticket: a failed remove is logged and
//! counted (`failed_batches`); the message may come back, redelivered, after
//! a restart (at-least-once).
//!
//! Files: this one holds the ops and the [`MessageLog`] handle that submits them; `batch` the
//! writer thread; `ticket` the completions; `stats` the counters.

mod batch;
mod stats;
mod ticket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;

use bytes::Bytes;
use redb::ReadableDatabase;
use tokio::sync::oneshot;

use super::error::StoreError;
use super::{DefOp, DefReply};

pub(crate) use batch::run;
pub use stats::StatsSnapshot;
pub(crate) use stats::WriterStats;
pub use ticket::{Callback, Pending, Ticket, at_batch_end};
pub(crate) use ticket::Done;

pub(crate) enum Op {
    Append {
        queue_id: u64,
        seq: u64,
        record: Bytes,
        done: Done,
    },
    Remove {
        queue_id: u64,
        seq: u64,
    },
    /// Messages `first..first + count` of a queue (a run of a purged backlog).
    RemoveRange {
        queue_id: u64,
        first: u64,
        count: u64,
    },
    Purge {
        queue_id: u64,
        done: Done,
    },
    Flush {
        done: Done,
    },
    Def {
        op: DefOp,
        reply: oneshot::Sender<Result<DefReply, StoreError>>,
    },
    Shutdown,
}

impl Op {
    /// Complete an op that never reached the writer.
    fn fail(self, e: StoreError) {
        match self {
            Op::Append { done, .. } | Op::Purge { done, .. } | Op::Flush { done } => {
                done.complete(Err(e))
            }
            Op::Def { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Op::Remove { .. } | Op::RemoveRange { .. } | Op::Shutdown => {}
        }
    }
}

/// Cloneable, `Send + Sync` handle for message writes. Every method only
/// enqueues (never blocks, never touches the disk); the writer thread does
/// the rest. Ops from one handle (or from clones used by one thread) are
/// applied in the order they were issued.
#[derive(Clone)]
pub struct MessageLog {
    pub(crate) tx: Sender<Op>,
    pub(crate) stats: Arc<WriterStats>,
    pub(crate) pending_bytes: Arc<AtomicU64>,
    /// For reading bodies back (paging in); reads never wait for the writer. Weak, so that
    /// closing the store closes the file even while handles live on.
    pub(crate) db: std::sync::Weak<super::DbSlot>,
}

impl MessageLog {
    /// Reads committed messages `seqs` of queue `queue_id` in one read transaction: element i
    /// is `None` if message `seqs[i]` is not on disk. Dense ascending sequence numbers (a run of
    /// the backlog) are read with one range scan rather than a lookup each; any other order
    /// (dead-lettered messages of several priority levels) is looked up one by one.
    pub fn read_batch(
        &self,
        queue_id: u64,
        seqs: &[u64],
    ) -> Result<Vec<Option<super::codec::StoredMessage>>, StoreError> {
        let db = self.db.upgrade().ok_or(StoreError::Closed)?.get()?;
        let rtx = db.begin_read()?;
        let table = rtx.open_table(super::MESSAGES)?;
        let mut out = Vec::with_capacity(seqs.len());
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else { return Ok(out) };
        if seqs.len() > 1 && last >= first && last - first < 2 * seqs.len() as u64 && seqs.windows(2).all(|w| w[0] < w[1]) {
            let mut want = seqs.iter().peekable();
            for e in table.range(super::msg_key(queue_id, first)..=super::msg_key(queue_id, last))? {
                let (k, v) = e?;
                let seq = k.value() as u64;
                while want.next_if(|&&w| w < seq).is_some() {
                    out.push(None);
                }
                if want.next_if(|&&w| w == seq).is_some() {
                    out.push(Some(super::decode_record(v.value())?));
                }
            }
            out.resize(seqs.len(), None);
            return Ok(out);
        }
        for &seq in seqs {
            out.push(match table.get(super::msg_key(queue_id, seq))? {
                Some(v) => Some(super::decode_record(v.value())?),
                None => None,
            });
        }
        Ok(out)
    }

    pub(crate) fn send(&self, op: Op) {
        if let Err(std::sync::mpsc::SendError(op)) = self.tx.send(op) {
            if let Op::Append { record, .. } = &op {
                self.pending_bytes.fetch_sub(record.len() as u64, Relaxed);
            }
            op.fail(StoreError::Closed);
        }
    }

    fn append_done(&self, queue_id: u64, seq: u64, record: Bytes, done: Done) {
        self.pending_bytes.fetch_add(record.len() as u64, Relaxed);
        self.send(Op::Append {
            queue_id,
            seq,
            record,
            done,
        });
    }

    /// Store `record` (see [`super::codec::StoredMessage::encode`]) as message
    /// `seq` of queue `queue_id`. The ticket resolves once it is on disk.
    pub fn append(&self, queue_id: u64, seq: u64, record: Bytes) -> Ticket {
        let (tx, ticket) = Pending::channel();
        self.append_done(queue_id, seq, record, Done::Oneshot(tx));
        ticket
    }

    /// Like [`append`](Self::append) but completes by calling `on_done` on
    /// the writer thread. `on_done` must be cheap and must not block.
    pub fn append_then(
        &self,
        queue_id: u64,
        seq: u64,
        record: Bytes,
        on_done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        self.append_done(queue_id, seq, record, Done::Callback(Box::new(on_done)));
    }

    /// Append without any completion (e.g. a transaction that will `flush`).
    pub fn append_detached(&self, queue_id: u64, seq: u64, record: Bytes) {
        self.append_done(queue_id, seq, record, Done::Nothing);
    }

    /// Delete message `seq` of queue `queue_id` (ack, reject without requeue,
    /// expiry). If its append has not been committed yet, neither is written.
    pub fn remove(&self, queue_id: u64, seq: u64) {
        self.send(Op::Remove { queue_id, seq });
    }

    /// Delete messages `first..first + count` of queue `queue_id` (those that exist), like as
    /// many [`remove`](Self::remove)s in one op.
    pub fn remove_range(&self, queue_id: u64, first: u64, count: u64) {
        if count > 0 {
            self.send(Op::RemoveRange { queue_id, first, count });
        }
    }

    /// Delete every message of the queue, including appends queued before.
    pub fn purge_queue(&self, queue_id: u64) -> Ticket {
        let (tx, ticket) = Pending::channel();
        self.send(Op::Purge {
            queue_id,
            done: Done::Oneshot(tx),
        });
        ticket
    }

    /// Resolves once every op enqueued before it is committed (or failed).
    /// `tx.commit` can be implemented as `append_detached`s + `flush`.
    pub fn flush(&self) -> Ticket {
        let (tx, ticket) = Pending::channel();
        self.send(Op::Flush {
            done: Done::Oneshot(tx),
        });
        ticket
    }

    /// Like [`flush`](Self::flush) with a callback run on the writer thread.
    pub fn flush_then(&self, on_done: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        self.send(Op::Flush {
            done: Done::Callback(Box::new(on_done)),
        });
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Bytes of appended records not yet committed: the broker can use it
    /// for flow control (e.g. block publishers above a threshold).
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Relaxed)
    }
}


#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterConfig {
    pub max_batch_ops: usize,
    pub max_batch_bytes: usize,
    pub quick_repair: bool,
}
