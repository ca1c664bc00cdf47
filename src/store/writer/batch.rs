//! The writer thread: its loop, one batch applied in one write transaction, and the
//! recovery after an I/O error (reopen the file, fail the batch's tickets, go on).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;
use redb::{Database, Durability, ReadableTableMetadata, WriteTransaction};

use super::{Done, Op, WriterConfig, WriterStats};
use crate::store::error::StoreError;
use crate::store::{DbSlot, DefReply, MESSAGES, apply_def, msg_key, queue_range};

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
    slot: Arc<DbSlot>,
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

fn try_reopen(slot: &DbSlot, stats: &WriterStats) {
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
            Op::Remove { .. } | Op::RemoveRange { .. } => {}
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
    let mut ranges: Vec<std::ops::Range<u128>> = Vec::new();
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
            Op::RemoveRange { queue_id, first, count } => {
                n_rem += count;
                let r = msg_key(queue_id, first)..msg_key(queue_id, first.saturating_add(count));
                // Earlier ops of this batch on these keys are superseded (an append not yet
                // written is cancelled); later ones apply after the range is deleted.
                let keys: Vec<u128> = overlay.range(r.clone()).map(|(k, _)| *k).collect();
                for k in keys {
                    overlay.remove(&k);
                }
                ranges.push(r);
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
                    materialize(t, &mut overlay, &mut purged, &mut ranges, stats)?;
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

    if error.is_none() && (txn.is_some() || !overlay.is_empty() || !purged.is_empty() || !ranges.is_empty()) {
        let r =
            begin(db, &mut txn, cfg).and_then(|t| materialize(t, &mut overlay, &mut purged, &mut ranges, stats));
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
            super::ticket::complete_all(dones, &Ok(()));
            for (tx, rep) in replies {
                let _ = tx.send(Ok(rep));
            }
        }
        Some(e) => {
            stats.failed_batches.fetch_add(1, Relaxed);
            tracing::error!("store: group commit failed, failing the whole batch: {e}");
            super::ticket::complete_all(dones, &Err(e.clone()));
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
    ranges: &mut Vec<std::ops::Range<u128>>,
    stats: &WriterStats,
) -> Result<(), StoreError> {
    if overlay.is_empty() && purged.is_empty() && ranges.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(MESSAGES)?;
    for q in purged.drain(..) {
        let before = table.len()?;
        table.retain_in(queue_range(q), |_, _| false)?;
        let after = table.len()?;
        stats.records_deleted.fetch_add(before - after, Relaxed);
    }
    for r in ranges.drain(..) {
        let before = table.len()?;
        table.retain_in(r, |_, _| false)?;
        let after = table.len()?;
        stats.records_deleted.fetch_add(before - after, Relaxed);
    }
    let (mut w, mut d) = (0, 0);
    // Deletes of consecutive keys (a consumer acking a backlog in order) are applied as one
    // range: redb removes a range leaf by leaf, instead of descending from the root per key.
    let mut deletes: Option<std::ops::Range<u128>> = None;
    for (k, p) in std::mem::take(overlay) {
        match p {
            Pend::Put { record, .. } => {
                if let Some(r) = deletes.take() {
                    d += delete_keys(&mut table, r)?;
                }
                table.insert(k, &record[..])?;
                w += 1;
            }
            Pend::Delete => match &mut deletes {
                Some(r) if r.end == k => r.end = k + 1,
                _ => {
                    if let Some(r) = deletes.replace(k..k + 1) {
                        d += delete_keys(&mut table, r)?;
                    }
                }
            },
        }
    }
    if let Some(r) = deletes.take() {
        d += delete_keys(&mut table, r)?;
    }
    stats.records_written.fetch_add(w, Relaxed);
    stats.records_deleted.fetch_add(d, Relaxed);
    Ok(())
}

/// Deletes the records of keys `r`; returns how many there were.
fn delete_keys(table: &mut redb::Table<'_, u128, &'static [u8]>, r: std::ops::Range<u128>) -> Result<u64, StoreError> {
    if r.end - r.start == 1 {
        return Ok(u64::from(table.remove(r.start)?.is_some()));
    }
    let before = table.len()?;
    table.retain_in(r, |_, _| false)?;
    Ok(before - table.len()?)
}

