//! Opening the file: refusing a foreign, newer or corrupt one unchanged, creating the tables of
//! a fresh one, waiting for a previous process to let go of it, repairing it after a crash (with
//! a backup of the file's head to undo a failed repair), removing orphaned messages.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::*;

pub(super) fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

pub(super) fn panic_msg(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic inside redb".to_owned()
    }
}

/// Map an error from opening the file.
pub(super) fn open_err(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::InUse {
                path: path.to_owned(),
            }
        }
        DatabaseError::UpgradeRequired(v) => StoreError::NotAWarrenFile {
            path: path.to_owned(),
            reason: format!("redb file format {v} needs a manual upgrade"),
        },
        DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            StoreError::Corrupt {
                path: path.to_owned(),
                detail: format!("file ends too early (truncated?): {io}"),
            }
        }
        DatabaseError::Storage(redb::StorageError::Io(io)) => io_err(path, io),
        other => StoreError::Corrupt {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Check the `meta` records of an opened file.
pub(super) fn check_meta(path: &Path, db: &impl ReadableDatabase) -> Result<(), StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let rtx = db.begin_read().map_err(|e| corrupt(&e))?;
    let meta = match rtx.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(StoreError::NotAWarrenFile {
                path: path.to_owned(),
                reason: "a redb database without Warren's meta table".into(),
            });
        }
        Err(e) => return Err(corrupt(&e)),
    };
    let format = meta.get(META_FORMAT).map_err(|e| corrupt(&e))?;
    if format.as_ref().map(|g| g.value()) != Some(FORMAT_ID) {
        return Err(StoreError::NotAWarrenFile {
            path: path.to_owned(),
            reason: "meta table does not identify a Warren store".into(),
        });
    }
    let version = meta
        .get(META_VERSION)
        .map_err(|e| corrupt(&e))?
        .ok_or_else(|| corrupt(&"format version record missing"))?;
    let found = <[u8; 4]>::try_from(version.value())
        .map(u32::from_le_bytes)
        .map_err(|_| corrupt(&"format version record malformed"))?;
    if found != FORMAT_VERSION {
        return Err(StoreError::FormatVersion {
            path: path.to_owned(),
            found,
            expected: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Creates all tables and the meta records in a fresh file.
pub(super) fn init_new(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(META_FORMAT, FORMAT_ID)?;
        meta.insert(META_VERSION, &FORMAT_VERSION.to_le_bytes()[..])?;
        meta.insert(META_NEXT_QUEUE_ID, &1u64.to_le_bytes()[..])?;
        txn.open_table(VHOSTS)?;
        txn.open_table(USERS)?;
        txn.open_table(PERMISSIONS)?;
        txn.open_table(EXCHANGES)?;
        txn.open_table(QUEUES)?;
        txn.open_table(BINDINGS)?;
        txn.open_table(MESSAGES)?;
    }
    txn.commit()?;
    Ok(())
}

impl Store {
    /// Open (or create) `<data_dir>/warren.redb` with default options.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(data_dir, StoreOptions::default())
    }

    /// Like [`open`](Self::open), but while another process holds the file's lock, retries for
    /// up to `wait` (a broker restarted right after `kill -9` finds the old process still being
    /// torn down by the kernel, its lock released only when its last file is closed). Logs why it
    /// waits; after `wait`, a lock still held is `StoreError::InUse` as before.
    pub fn open_waiting(data_dir: &Path, wait: std::time::Duration, opts: StoreOptions) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + wait;
        let mut logged = false;
        loop {
            match Self::open_with(data_dir, opts.clone()) {
                Err(StoreError::InUse { path }) if std::time::Instant::now() < deadline => {
                    if !logged {
                        logged = true;
                        tracing::warn!(
                            "{} is locked by another process (a previous broker still exiting?); waiting up to {} ms for it",
                            path.display(),
                            wait.as_millis()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(StoreError::InUse { path }) if logged => {
                    tracing::error!("{} is still locked after {} ms", path.display(), wait.as_millis());
                    return Err(StoreError::InUse { path });
                }
                Ok(s) => {
                    if logged {
                        tracing::info!("{}: lock released by the other process, opened", s.path().display());
                    }
                    return Ok(s);
                }
                other => return other,
            }
        }
    }

    /// Open (or create) `<data_dir>/warren.redb`.
    ///
    /// An existing file is first checked without writing to it: redb's magic
    /// bytes, then (read-only) Warren's `meta` records. A foreign, corrupt or
    /// truncated file, or one of another format version, gives a
    /// `StoreError` naming the file and is left untouched. A file that needs
    /// crash recovery (unclean shutdown) is repaired by redb, then checked.
    pub fn open_with(data_dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| io_err(data_dir, e))?;
        let path = data_dir.join(FILE_NAME);
        let existing = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m.len() > 0,
            Ok(_) => return Err(io_err(&path, "not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&path, e)),
        };

        let mut builder = redb::Builder::new();
        builder.set_cache_size(opts.cache_size);
        builder.set_check_integrity_on_open(opts.check_integrity_on_open);

        let db = if existing {
            let needs_repair = Self::precheck(&path, &builder)?;
            // redb's crash repair rewrites the header before it walks the
            // file; if the repair then fails, put the original bytes back so
            // a refused file is left exactly as it was found.
            let backup = if needs_repair {
                tracing::warn!("{}: unclean shutdown, repairing", path.display());
                Some(HeadBackup::take(&path)?)
            } else {
                None
            };
            let opened =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.open(&path)))
                    .map_err(|p| StoreError::Corrupt {
                        path: path.clone(),
                        detail: panic_msg(p),
                    })
                    .and_then(|r| r.map_err(|e| open_err(&path, e)));
            let db = match opened {
                Ok(db) => db,
                Err(e) => {
                    if let Some(b) = backup {
                        b.restore(&path);
                    }
                    return Err(e);
                }
            };
            // After a crash repair the read-only check could not run.
            check_meta(&path, &db)?;
            db
        } else {
            let db = builder.create(&path).map_err(|e| open_err(&path, e))?;
            init_new(&db)?;
            db
        };
        let known = remove_orphans(&db)?;
        let db = Arc::new(DbSlot::new(db, path.clone(), opts.cache_size));
        tracing::debug!("store {}: {} durable queues", path.display(), known);

        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(WriterStats::new());
        let pending = Arc::new(AtomicU64::new(0));
        let cfg = WriterConfig {
            max_batch_ops: opts.max_batch_ops.max(1),
            max_batch_bytes: opts.max_batch_bytes.max(1),
            quick_repair: opts.quick_repair,
        };
        let writer = {
            let (db, stats, pending) = (db.clone(), stats.clone(), pending.clone());
            std::thread::Builder::new()
                .name("warren-store-writer".into())
                .spawn(move || writer::run(db, rx, stats, pending, cfg))
                .map_err(|e| io_err(&path, e))?
        };
        Ok(Store {
            db: db.clone(),
            path,
            log: MessageLog {
                tx,
                stats,
                pending_bytes: pending,
                db: Arc::downgrade(&db),
            },
            writer: Some(writer),
        })
    }

    /// Checks an existing file without modifying it.
    /// Returns whether the file needs redb's crash repair.
    fn precheck(path: &Path, builder: &redb::Builder) -> Result<bool, StoreError> {
        let mut head = [0u8; REDB_MAGIC.len()];
        let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let mut got = 0;
        while got < head.len() {
            match f.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(io_err(path, e)),
            }
        }
        drop(f);
        if got < head.len() || head != REDB_MAGIC {
            return Err(StoreError::NotAWarrenFile {
                path: path.to_owned(),
                reason: "not a redb database (bad magic bytes)".into(),
            });
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            builder.open_read_only(path)
        })) {
            Err(p) => Err(StoreError::Corrupt {
                path: path.to_owned(),
                detail: panic_msg(p),
            }),
            // Unclean shutdown: redb must repair it, which needs a writable
            // open; the meta check runs after that.
            Ok(Err(DatabaseError::RepairAborted)) => Ok(true),
            Ok(Err(e)) => Err(open_err(path, e)),
            Ok(Ok(ro)) => {
                let r = check_meta(path, &ro);
                drop(ro);
                r.map(|()| false)
            }
        }
    }
}

/// The first bytes and the length of a file, to undo a failed repair.
pub(super) struct HeadBackup {
    head: Vec<u8>,
    len: u64,
}

impl HeadBackup {
    const SIZE: u64 = 64 * 1024;

    fn take(path: &Path) -> Result<HeadBackup, StoreError> {
        let f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let len = f.metadata().map_err(|e| io_err(path, e))?.len();
        let mut head = Vec::new();
        f.take(Self::SIZE)
            .read_to_end(&mut head)
            .map_err(|e| io_err(path, e))?;
        Ok(HeadBackup { head, len })
    }

    fn restore(self, path: &Path) {
        use std::io::{Seek, Write};
        let r = (|| -> std::io::Result<bool> {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)?;
            let mut now = Vec::new();
            (&mut f).take(Self::SIZE).read_to_end(&mut now)?;
            if now == self.head && f.metadata()?.len() == self.len {
                return Ok(false);
            }
            f.seek(std::io::SeekFrom::Start(0))?;
            f.write_all(&self.head)?;
            f.set_len(self.len)?;
            f.sync_all()?;
            Ok(true)
        })();
        match r {
            Ok(true) => tracing::warn!(
                "{}: crash repair failed; restored the file's original header",
                path.display()
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(
                "{}: crash repair failed and restoring the original header failed too: {e}",
                path.display()
            ),
        }
    }
}

/// Deletes messages whose queue is not in `v1.queues` (e.g. appended after
/// the queue was deleted). Jumps from queue to queue, so it costs
/// O(queues × log n), not a scan. Returns the number of known queues.
pub(super) fn remove_orphans(db: &Database) -> Result<usize, StoreError> {
    let txn = db.begin_write()?;
    let mut known = std::collections::HashSet::new();
    for e in txn.open_table(QUEUES)?.range::<(&str, &str)>(..)? {
        let rec: QueueRecord = from_json("v1.queues", e?.1.value())?;
        known.insert(rec.queue_id);
    }
    let mut orphans = Vec::new();
    {
        let table = txn.open_table(MESSAGES)?;
        let mut from = 0u128;
        loop {
            let next = table.range(from..)?.next();
            let Some(e) = next else { break };
            let q = (e?.0.value() >> 64) as u64;
            if !known.contains(&q) {
                orphans.push(q);
            }
            if q == u64::MAX {
                break;
            }
            from = msg_key(q + 1, 0);
        }
    }
    if orphans.is_empty() {
        txn.abort()?;
    } else {
        let mut table = txn.open_table(MESSAGES)?;
        for q in &orphans {
            tracing::warn!("store: deleting messages of unknown queue id {q}");
            table.retain_in(queue_range(*q), |_, _| false)?;
        }
        drop(table);
        txn.commit()?;
    }
    Ok(known.len())
}
