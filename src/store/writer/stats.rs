//! The writer's counters (batches, ops, commit times as a histogram), read as a
//! [`StatsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
const HIST_BUCKETS: usize = 18;

/// Counters kept by the writer; read them with [`MessageLog::stats`].
#[derive(Default)]
pub(crate) struct WriterStats {
    pub(super) batches: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) failed_batches: AtomicU64,
    pub(super) reopens: AtomicU64,
    pub(super) ops: AtomicU64,
    pub(super) appends: AtomicU64,
    pub(super) removes: AtomicU64,
    pub(super) records_written: AtomicU64,
    pub(super) records_deleted: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) min_batch: AtomicU64,
    pub(super) max_batch: AtomicU64,
    pub(super) last_commit_us: AtomicU64,
    pub(super) max_commit_us: AtomicU64,
    pub(super) total_commit_us: AtomicU64,
    pub(super) hist: [AtomicU64; HIST_BUCKETS],
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

    pub(super) fn record_batch(&self, ops: u64) {
        self.batches.fetch_add(1, Relaxed);
        self.ops.fetch_add(ops, Relaxed);
        self.min_batch.fetch_min(ops, Relaxed);
        self.max_batch.fetch_max(ops, Relaxed);
        let bucket = (63 - ops.max(1).leading_zeros() as usize).min(HIST_BUCKETS - 1);
        self.hist[bucket].fetch_add(1, Relaxed);
    }

    pub(super) fn record_commit(&self, us: u64) {
        self.commits.fetch_add(1, Relaxed);
        self.last_commit_us.store(us, Relaxed);
        self.max_commit_us.fetch_max(us, Relaxed);
        self.total_commit_us.fetch_add(us, Relaxed);
    }

    pub(super) fn snapshot(&self) -> StatsSnapshot {
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

