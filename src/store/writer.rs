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

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, Sender};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, WriteTransaction};
use tokio::sync::oneshot;

use super::error::StoreError;
use super::{DefOp, DefReply, MESSAGES, apply_def, msg_key, queue_range};

/// A pending result: `.await` it, or `.wait()` for it from a non-async thread.
#[must_use = "a ticket tells when the operation is durable"]
pub struct Pending<T> {
    rx: oneshot::Receiver<Result<T, StoreError>>,
}

// Never pin-projected: the receiver is Unpin and results are moved out.
impl<T> Unpin for Pending<T> {}

/// Completion of a message operation.
pub type Ticket = Pending<()>;

impl<T> Pending<T> {
    pub(crate) fn channel() -> (oneshot::Sender<Result<T, StoreError>>, Pending<T>) {
        let (tx, rx) = oneshot::channel();
        (tx, Pending { rx })
    }

    /// Block the current thread until the result is in. Safe to call from
    /// inside a tokio runtime thread (it does not use tokio's blocking_recv),
    /// but it blocks that thread: prefer `.await` in async code.
    pub fn wait(self) -> Result<T, StoreError> {
        futures_lite::future::block_on(self)
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Pending<T> is Unpin: oneshot::Receiver is Unpin.
        match Pin::new(&mut self.get_mut().rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            // The writer dropped the sender without answering: it is gone.
            Poll::Ready(Err(_)) => Poll::Ready(Err(StoreError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A callback completion, run on the writer thread. Must not block.
pub type Callback = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

pub(crate) enum Done {
    Nothing,
    Oneshot(oneshot::Sender<Result<(), StoreError>>),
    Callback(Callback),
}

impl Done {
    fn complete(self, r: Result<(), StoreError>) {
        match self {
            Done::Nothing => {}
            Done::Oneshot(tx) => {
                let _ = tx.send(r);
            }
            Done::Callback(f) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(r))).is_err() {
                    tracing::error!("store completion callback panicked");
                }
            }
        }
    }
}

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
            Op::Remove { .. } | Op::Shutdown => {}
        }
    }
}

const HIST_BUCKETS: usize = 18;

/// Counters kept by the writer; read them with [`MessageLog::stats`].
#[derive(Default)]
pub(crate) struct WriterStats {
    batches: AtomicU64,
    commits: AtomicU64,
    failed_batches: AtomicU64,
    reopens: AtomicU64,
    ops: AtomicU64,
    appends: AtomicU64,
    removes: AtomicU64,
    records_written: AtomicU64,
    records_deleted: AtomicU64,
    cancelled: AtomicU64,
    min_batch: AtomicU64,
    max_batch: AtomicU64,
    last_commit_us: AtomicU64,
    max_commit_us: AtomicU64,
    total_commit_us: AtomicU64,
    hist: [AtomicU64; HIST_BUCKETS],
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Batches processed (each is at most one commit).
    pub batches: u64,
    /// Write transactions committed.
    pub commits: u64,
    /// Batches whose transaction failed (all their tickets got `Err`).
    pub failed_batches: u64,
    /// Times the database was reopened after an I/O error.
    pub reopens: u64,
    /// Ops received (appends, removes, purges, flushes, definition changes).
    pub ops: u64,
    pub appends: u64,
    pub removes: u64,
    /// Records inserted into / deleted from the messages table.
    pub records_written: u64,
    pub records_deleted: u64,
    /// Appends cancelled by a remove in the same batch (never written).
    pub cancelled: u64,
    /// Ops per batch: smallest, largest (0 before the first batch).
    pub min_batch: u64,
    pub max_batch: u64,
    pub last_commit_us: u64,
    pub max_commit_us: u64,
    pub total_commit_us: u64,
    /// `batch_size_hist[i]` counts batches with `2^i <= ops < 2^(i+1)`
    /// (the last bucket is open-ended).
    pub batch_size_hist: Vec<u64>,
}

impl StatsSnapshot {
    /// Mean ops per batch.
    pub fn avg_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.ops as f64 / self.batches as f64
        }
    }

    /// Mean commit duration in microseconds.
    pub fn avg_commit_us(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.total_commit_us as f64 / self.commits as f64
        }
    }
}

impl WriterStats {
    pub(crate) fn new() -> Self {
        let s = WriterStats::default();
        s.min_batch.store(u64::MAX, Relaxed);
        s
    }

    fn record_batch(&self, ops: u64) {
        self.batches.fetch_add(1, Relaxed);
        self.ops.fetch_add(ops, Relaxed);
        self.min_batch.fetch_min(ops, Relaxed);
        self.max_batch.fetch_max(ops, Relaxed);
        let bucket = (63 - ops.max(1).leading_zeros() as usize).min(HIST_BUCKETS - 1);
        self.hist[bucket].fetch_add(1, Relaxed);
    }

    fn record_commit(&self, us: u64) {
        self.commits.fetch_add(1, Relaxed);
        self.last_commit_us.store(us, Relaxed);
        self.max_commit_us.fetch_max(us, Relaxed);
        self.total_commit_us.fetch_add(us, Relaxed);
    }

    fn snapshot(&self) -> StatsSnapshot {
        let min = self.min_batch.load(Relaxed);
        StatsSnapshot {
            batches: self.batches.load(Relaxed),
            commits: self.commits.load(Relaxed),
            failed_batches: self.failed_batches.load(Relaxed),
            reopens: self.reopens.load(Relaxed),
            ops: self.ops.load(Relaxed),
            appends: self.appends.load(Relaxed),
            removes: self.removes.load(Relaxed),
            records_written: self.records_written.load(Relaxed),
            records_deleted: self.records_deleted.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            min_batch: if min == u64::MAX { 0 } else { min },
            max_batch: self.max_batch.load(Relaxed),
            last_commit_us: self.last_commit_us.load(Relaxed),
            max_commit_us: self.max_commit_us.load(Relaxed),
            total_commit_us: self.total_commit_us.load(Relaxed),
            batch_size_hist: self.hist.iter().map(|h| h.load(Relaxed)).collect(),
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
    /// Reads committed messages `seqs` (ascending) of queue `queue_id` in one read
    /// transaction: element i is `None` if message `seqs[i]` is not on disk.
    pub fn read_batch(
        &self,
        queue_id: u64,
        seqs: &[u64],
    ) -> Result<Vec<Option<super::codec::StoredMessage>>, StoreError> {
        let db = self.db.upgrade().ok_or(StoreError::Closed)?.get()?;
        let rtx = db.begin_read()?;
        let table = rtx.open_table(super::MESSAGES)?;
        let mut out = Vec::with_capacity(seqs.len());
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

enum Pend {
    /// Insert this record. `after_delete`: a remove of the same key came
    /// earlier in the batch, so a later remove must still delete on disk.
    Put {
        record: Bytes,
        after_delete: bool,
    },
    Delete,
}

/// The writer thread's main loop. Returns when it receives `Shutdown` (after
/// finishing everything queued before it) or every sender is gone.
pub(crate) fn run(
    slot: Arc<super::DbSlot>,
    rx: Receiver<Op>,
    stats: Arc<WriterStats>,
    pending_bytes: Arc<AtomicU64>,
    cfg: WriterConfig,
) {
    let mut batch: Vec<Op> = Vec::with_capacity(1024);
    loop {
        let first = match rx.recv() {
            Ok(op) => op,
            Err(_) => return,
        };
        let mut bytes = op_bytes(&first);
        batch.push(first);
        while batch.len() < cfg.max_batch_ops && bytes < cfg.max_batch_bytes {
            match rx.try_recv() {
                Ok(op) => {
                    bytes += op_bytes(&op);
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        let shutdown = match slot.get() {
            Ok(db) => {
                let (shutdown, failure) = process_batch(&db, &mut batch, &stats, cfg);
                drop(db);
                if let Some(e) = failure
                    && is_io_error(&e)
                {
                    // redb refuses every write after an I/O error until reopened: reopen now,
                    // so the next batch can succeed once the cause (a full disk) is gone.
                    try_reopen(&slot, &stats);
                }
                shutdown
            }
            Err(_) => {
                // A reopen failed before: try again, then run the batch (or fail it).
                try_reopen(&slot, &stats);
                match slot.get() {
                    Ok(db) => process_batch(&db, &mut batch, &stats, cfg).0,
                    Err(e) => fail_batch(&mut batch, &stats, e),
                }
            }
        };
        pending_bytes.fetch_sub(bytes as u64, Relaxed);
        if shutdown {
            // Anything sent after Shutdown (racing with close) is failed.
            drop(batch);
            while let Ok(op) = rx.try_recv() {
                if let Op::Append { record, .. } = &op {
                    pending_bytes.fetch_sub(record.len() as u64, Relaxed);
                }
                op.fail(StoreError::Closed);
            }
            return;
        }
    }
}

/// An error after which redb must be reopened: an I/O error (its Display is "I/O error: ...")
/// or redb's "Previous I/O error occurred" that every later write gets.
fn is_io_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(m) if m.contains("I/O error"))
}

fn try_reopen(slot: &super::DbSlot, stats: &WriterStats) {
    match slot.reopen() {
        Ok(()) => {
            stats.reopens.fetch_add(1, Relaxed);
            tracing::warn!("store: reopened {} after an I/O error", slot.path.display());
        }
        Err(e) => tracing::error!("store: cannot reopen {} after an I/O error (will retry with the next write): {e}", slot.path.display()),
    }
}

/// Fails every op of a batch that could not run (the database is not open). Returns true if it
/// held a Shutdown.
fn fail_batch(batch: &mut Vec<Op>, stats: &WriterStats, e: StoreError) -> bool {
    stats.record_batch(batch.len() as u64);
    stats.failed_batches.fetch_add(1, Relaxed);
    let mut shutdown = false;
    for op in batch.drain(..) {
        match op {
            Op::Shutdown => shutdown = true,
            // A remove is retried by nobody: logged, the message may come back after a restart.
            Op::Remove { .. } => {}
            other => other.fail(e.clone()),
        }
    }
    shutdown
}

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Append { record, .. } => record.len(),
        _ => 0,
    }
}

/// Apply one batch in one transaction. Returns whether it held a Shutdown, and the error that
/// failed it.
fn process_batch(
    db: &Database,
    batch: &mut Vec<Op>,
    stats: &WriterStats,
    cfg: WriterConfig,
) -> (bool, Option<StoreError>) {
    stats.record_batch(batch.len() as u64);
    let mut overlay: BTreeMap<u128, Pend> = BTreeMap::new();
    let mut purged: Vec<u64> = Vec::new();
    let mut dones: Vec<Done> = Vec::new();
    let mut replies: Vec<(oneshot::Sender<Result<DefReply, StoreError>>, DefReply)> = Vec::new();
    let mut failed_replies: Vec<oneshot::Sender<Result<DefReply, StoreError>>> = Vec::new();
    let mut txn: Option<WriteTransaction> = None;
    let mut error: Option<StoreError> = None;
    let mut shutdown = false;
    let (mut n_app, mut n_rem) = (0u64, 0u64);

    for op in batch.drain(..) {
        match op {
            Op::Append {
                queue_id,
                seq,
                record,
                done,
            } => {
                n_app += 1;
                let k = msg_key(queue_id, seq);
                let after_delete = match overlay.get(&k) {
                    None => false,
                    Some(Pend::Delete) => true,
                    Some(Pend::Put { after_delete, .. }) => *after_delete,
                };
                overlay.insert(
                    k,
                    Pend::Put {
                        record,
                        after_delete,
                    },
                );
                dones.push(done);
            }
            Op::Remove { queue_id, seq } => {
                n_rem += 1;
                let k = msg_key(queue_id, seq);
                match overlay.get(&k) {
                    Some(Pend::Put {
                        after_delete: false,
                        ..
                    }) => {
                        overlay.remove(&k);
                        stats.cancelled.fetch_add(1, Relaxed);
                    }
                    _ => {
                        overlay.insert(k, Pend::Delete);
                    }
                }
            }
            Op::Purge { queue_id, done } => {
                let r = queue_range(queue_id);
                let keys: Vec<u128> = overlay.range(r).map(|(k, _)| *k).collect();
                for k in keys {
                    overlay.remove(&k);
                }
                if !purged.contains(&queue_id) {
                    purged.push(queue_id);
                }
                dones.push(done);
            }
            Op::Flush { done } => dones.push(done),
            Op::Shutdown => shutdown = true,
            Op::Def { op, reply } => {
                if error.is_some() {
                    failed_replies.push(reply);
                    continue;
                }
                // Messages queued before this definition change must hit the
                // transaction first (e.g. appends before a queue delete).
                let r = begin(db, &mut txn, cfg).and_then(|t| {
                    materialize(t, &mut overlay, &mut purged, stats)?;
                    apply_def(t, op)
                });
                match r {
                    Ok(rep) => replies.push((reply, rep)),
                    Err(e) => {
                        failed_replies.push(reply);
                        error = Some(e);
                    }
                }
            }
        }
    }
    stats.appends.fetch_add(n_app, Relaxed);
    stats.removes.fetch_add(n_rem, Relaxed);

    if error.is_none() && (txn.is_some() || !overlay.is_empty() || !purged.is_empty()) {
        let r =
            begin(db, &mut txn, cfg).and_then(|t| materialize(t, &mut overlay, &mut purged, stats));
        if let Err(e) = r {
            error = Some(e);
        }
    }
    if let Some(t) = txn.take() {
        if error.is_none() {
            let t0 = Instant::now();
            match t.commit() {
                Ok(()) => stats.record_commit(t0.elapsed().as_micros() as u64),
                Err(e) => error = Some(e.into()),
            }
        } else if let Err(e) = t.abort() {
            tracing::warn!("store: aborting failed batch: {e}");
        }
    }

    match &error {
        None => {
            for d in dones {
                d.complete(Ok(()));
            }
            for (tx, rep) in replies {
                let _ = tx.send(Ok(rep));
            }
        }
        Some(e) => {
            stats.failed_batches.fetch_add(1, Relaxed);
            tracing::error!("store: group commit failed, failing the whole batch: {e}");
            for d in dones {
                d.complete(Err(e.clone()));
            }
            for (tx, _) in replies {
                let _ = tx.send(Err(e.clone()));
            }
            // Definition ops that failed, or were skipped after the failure.
            for tx in failed_replies {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
    (shutdown, error)
}

fn begin<'a>(
    db: &Database,
    txn: &'a mut Option<WriteTransaction>,
    cfg: WriterConfig,
) -> Result<&'a mut WriteTransaction, StoreError> {
    if txn.is_none() {
        let mut t = db.begin_write()?;
        t.set_durability(Durability::Immediate)?;
        t.set_quick_repair(cfg.quick_repair);
        *txn = Some(t);
    }
    Ok(txn.as_mut().expect("just set"))
}

fn materialize(
    txn: &WriteTransaction,
    overlay: &mut BTreeMap<u128, Pend>,
    purged: &mut Vec<u64>,
    stats: &WriterStats,
) -> Result<(), StoreError> {
    if overlay.is_empty() && purged.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(MESSAGES)?;
    for q in purged.drain(..) {
        let before = table.len()?;
        table.retain_in(queue_range(q), |_, _| false)?;
        let after = table.len()?;
        stats.records_deleted.fetch_add(before - after, Relaxed);
    }
    let (mut w, mut d) = (0, 0);
    for (k, p) in std::mem::take(overlay) {
        match p {
            Pend::Put { record, .. } => {
                table.insert(k, &record[..])?;
                w += 1;
            }
            Pend::Delete => {
                if table.remove(k)?.is_some() {
                    d += 1;
                }
            }
        }
    }
    stats.records_written.fetch_add(w, Relaxed);
    stats.records_deleted.fetch_add(d, Relaxed);
    Ok(())
}
