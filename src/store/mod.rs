//! Durable storage: the only module that touches redb.
//!
//! One redb file, `<data_dir>/warren.redb`:
//!
//! | table            | key                         | value                       |
//! |------------------|-----------------------------|-----------------------------|
//! | `meta`           | `&str`                      | `&[u8]` (format id, version, next queue id) |
//! | `v1.vhosts`      | name                        | JSON [`VhostDef`]           |
//! | `v1.users`       | name                        | JSON [`UserDef`]            |
//! | `v1.permissions` | (user, vhost)               | JSON [`PermissionDef`]      |
//! | `v1.exchanges`   | (vhost, name)               | JSON [`ExchangeDef`]        |
//! | `v1.queues`      | (vhost, name)               | JSON [`QueueRecord`]        |
//! | `v1.bindings`    | all fields, length-prefixed | JSON [`BindingDef`]         |
//! | `v1.messages`    | `u128` = queue_id << 64 \| seq | [`codec`] record         |
//!
//! `meta` is deliberately unversioned: it is how a build recognises a file of
//! another format version and refuses it.
//!
//! Every write goes through the single writer thread ([`writer`]): message ops
//! are group-committed; definition changes ride in the same queue (so they
//! are never starved by message traffic and keep their order relative to
//! message ops), each completing once its transaction is durable. Reads
//! (`load_*`, `read_message`) use redb read transactions from the calling
//! thread and may run concurrently with the writer; they do blocking file
//! I/O, so call them from `spawn_blocking` in async code when they may be
//! large.

pub mod codec;
pub mod definitions;
mod error;
pub mod transient;
pub mod writer;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableError, WriteTransaction,
};

pub use codec::{CodecError, StoredMessage};
pub use definitions::{
    BindingDef, Definitions, ExchangeDef, PermissionDef, QueueDef, QueueRecord, UserDef, VhostDef,
};
pub use error::StoreError;
pub use writer::{Callback, MessageLog, Pending, StatsSnapshot, Ticket};

use writer::{Op, WriterConfig, WriterStats};

/// File name inside the data directory.
pub const FILE_NAME: &str = "warren.redb";
/// Identifies a Warren store in the `meta` table.
pub const FORMAT_ID: &[u8] = b"warren-store";
/// The store format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VHOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("v1.vhosts");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("v1.users");
const PERMISSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("v1.permissions");
const EXCHANGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("v1.exchanges");
const QUEUES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("v1.queues");
const BINDINGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("v1.bindings");
/// Global runtime parameters (`cluster_name`, `internal_cluster_id`): name → JSON value. Created
/// by the first write, so a database of an earlier version opens unchanged.
const GLOBAL_PARAMETERS: TableDefinition<&str, &[u8]> = TableDefinition::new("v1.global_parameters");
pub(crate) const MESSAGES: TableDefinition<u128, &[u8]> = TableDefinition::new("v1.messages");

const META_FORMAT: &str = "format";
const META_VERSION: &str = "format_version";
const META_NEXT_QUEUE_ID: &str = "next_queue_id";

/// redb's file magic (first 9 bytes of every redb file).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

pub(crate) fn msg_key(queue_id: u64, seq: u64) -> u128 {
    ((queue_id as u128) << 64) | seq as u128
}

pub(crate) fn queue_range(queue_id: u64) -> std::ops::RangeInclusive<u128> {
    msg_key(queue_id, 0)..=msg_key(queue_id, u64::MAX)
}

/// Tuning knobs; `Default` is what `Store::open` uses.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// redb page cache. redb's own default (1 GiB) would defeat keeping
    /// bodies on disk, so this defaults to 64 MiB.
    pub cache_size: usize,
    /// Most ops in one group commit.
    pub max_batch_ops: usize,
    /// Most appended record bytes in one group commit.
    pub max_batch_bytes: usize,
    /// redb "quick repair": each commit also saves the allocator state, so
    /// that opening after a crash does not have to walk the whole file.
    /// Costs some write amplification per commit. Default off.
    pub quick_repair: bool,
    /// Verify every page checksum on open (reads the whole file).
    pub check_integrity_on_open: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_size: 64 << 20,
            max_batch_ops: 16_384,
            max_batch_bytes: 64 << 20,
            quick_repair: false,
            check_integrity_on_open: false,
        }
    }
}

/// The store. Dropping it (or [`Store::close`]) finishes every queued op and
/// stops the writer thread; `MessageLog` clones that outlive it get
/// `StoreError::Closed`.
pub struct Store {
    db: Arc<DbSlot>,
    path: PathBuf,
    log: MessageLog,
    writer: Option<JoinHandle<()>>,
}

/// The open database, shared by the writer thread and readers, replaceable: after an I/O error
/// (ENOSPC, EIO) redb refuses every later write ("Previous I/O error occurred") until the file is
/// closed and opened again, so the writer reopens it (see `writer.rs`). Readers take a clone of
/// the `Arc` for one read transaction; while the writer reopens, they get an error.
pub(crate) struct DbSlot {
    db: parking_lot::RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    cache_size: usize,
}

impl DbSlot {
    fn new(db: Database, path: PathBuf, cache_size: usize) -> DbSlot {
        DbSlot { db: parking_lot::RwLock::new(Some(Arc::new(db))), path, cache_size }
    }

    /// The open database (an error while it is being reopened).
    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db.read().clone().ok_or_else(|| StoreError::Database("the store is being reopened after an I/O error".into()))
    }

    /// Closes the database (waiting for readers to let go of it) and opens the file again.
    /// On failure the slot stays empty and the next call tries again.
    pub(crate) fn reopen(&self) -> Result<(), StoreError> {
        let old = self.db.write().take();
        if let Some(mut old) = old {
            // Readers hold their clone for one read transaction at most.
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(a) => {
                        old = a;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        }
        let mut builder = redb::Builder::new();
        builder.set_cache_size(self.cache_size);
        let db = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.open(&self.path)))
            .map_err(|p| StoreError::Database(panic_msg(p)))?
            .map_err(|e| open_err(&self.path, e))?;
        check_meta(&self.path, &db)?;
        *self.db.write() = Some(Arc::new(db));
        Ok(())
    }
}

/// A definition change, applied on the writer thread.
pub(crate) enum DefOp {
    PutVhost(VhostDef),
    DeleteVhost(String),
    PutUser(UserDef),
    DeleteUser(String),
    PutPermission(PermissionDef),
    DeletePermission { user: String, vhost: String },
    PutExchange(ExchangeDef),
    DeleteExchange { vhost: String, name: String },
    PutQueue(QueueDef),
    DeleteQueue { vhost: String, name: String },
    PutBinding(BindingDef),
    DeleteBinding(BindingDef),
    /// A global parameter: its name and JSON value.
    PutGlobal(String, Vec<u8>),
}

pub(crate) enum DefReply {
    Done,
    Existed(bool),
    QueueId(u64),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn panic_msg(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic inside redb".to_owned()
    }
}

/// Map an error from opening the file.
fn open_err(path: &Path, e: DatabaseError) -> StoreError {
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
fn check_meta(path: &Path, db: &impl ReadableDatabase) -> Result<(), StoreError> {
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
fn init_new(db: &Database) -> Result<(), StoreError> {
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
    pub fn open_waiting(data_dir: &Path, wait: std::time::Duration) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + wait;
        let mut logged = false;
        loop {
            match Self::open(data_dir) {
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

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of records handed to the writer and not yet committed (one atomic load).
    pub fn pending_bytes(&self) -> u64 {
        self.log.pending_bytes()
    }

    /// A handle for message writes (cheap to clone).
    pub fn message_log(&self) -> MessageLog {
        self.log.clone()
    }

    /// Writer statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.log.stats()
    }

    /// Finish every queued op, stop the writer and close the file.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        if let Some(h) = self.writer.take() {
            self.log.send(Op::Shutdown);
            h.join()
                .map_err(|_| StoreError::Database("store writer thread panicked".into()))?;
        }
        Ok(())
    }

    fn def(&self, op: DefOp) -> Pending<DefReply> {
        let (reply, pending) = Pending::channel();
        self.log.send(Op::Def { op, reply });
        pending
    }

    // ---- definitions. Each returns once its transaction is durable. -------
    // The wait blocks the calling thread for about one commit (it does not
    // need a runtime); from async code prefer `spawn_blocking`.

    pub fn put_vhost(&self, def: &VhostDef) -> Result<(), StoreError> {
        self.def(DefOp::PutVhost(def.clone())).wait().map(|_| ())
    }

    /// Deletes the vhost and everything in it: exchanges, queues (with their
    /// messages), bindings and permissions. Returns whether it existed.
    pub fn delete_vhost(&self, name: &str) -> Result<bool, StoreError> {
        existed(self.def(DefOp::DeleteVhost(name.into())).wait()?)
    }

    pub fn put_user(&self, def: &UserDef) -> Result<(), StoreError> {
        self.def(DefOp::PutUser(def.clone())).wait().map(|_| ())
    }

    /// Deletes the user and its permissions.
    pub fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        existed(self.def(DefOp::DeleteUser(name.into())).wait()?)
    }

    pub fn put_permission(&self, def: &PermissionDef) -> Result<(), StoreError> {
        self.def(DefOp::PutPermission(def.clone()))
            .wait()
            .map(|_| ())
    }

    pub fn delete_permission(&self, user: &str, vhost: &str) -> Result<bool, StoreError> {
        existed(
            self.def(DefOp::DeletePermission {
                user: user.into(),
                vhost: vhost.into(),
            })
            .wait()?,
        )
    }

    pub fn put_exchange(&self, def: &ExchangeDef) -> Result<(), StoreError> {
        self.def(DefOp::PutExchange(def.clone())).wait().map(|_| ())
    }

    /// Deletes the exchange and every binding from or to it.
    pub fn delete_exchange(&self, vhost: &str, name: &str) -> Result<bool, StoreError> {
        existed(
            self.def(DefOp::DeleteExchange {
                vhost: vhost.into(),
                name: name.into(),
            })
            .wait()?,
        )
    }

    /// Stores a durable queue and returns its `queue_id`. Re-putting an
    /// existing (vhost, name) updates the definition and keeps its id.
    pub fn put_queue(&self, def: &QueueDef) -> Result<u64, StoreError> {
        match self.def(DefOp::PutQueue(def.clone())).wait()? {
            DefReply::QueueId(id) => Ok(id),
            _ => Err(StoreError::Database("unexpected reply".into())),
        }
    }

    /// Deletes the queue, all its messages (including appends queued before
    /// this call) and every binding to it.
    pub fn delete_queue(&self, vhost: &str, name: &str) -> Result<bool, StoreError> {
        existed(
            self.def(DefOp::DeleteQueue {
                vhost: vhost.into(),
                name: name.into(),
            })
            .wait()?,
        )
    }

    pub fn put_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.def(DefOp::PutBinding(def.clone())).wait().map(|_| ())
    }

    pub fn delete_binding(&self, def: &BindingDef) -> Result<bool, StoreError> {
        existed(self.def(DefOp::DeleteBinding(def.clone())).wait()?)
    }

    /// Stores global parameter `name` (a JSON value).
    pub fn put_global_parameter(&self, name: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.def(DefOp::PutGlobal(name.into(), value.to_string().into_bytes())).wait().map(|_| ())
    }

    // ---- reads --------------------------------------------------------------

    /// All definitions, each list in key order.
    pub fn load_definitions(&self) -> Result<Definitions, StoreError> {
        let db = self.db.get()?; // held until the read transaction ends (see `DbSlot::reopen`)
        let rtx = db.begin_read()?;
        let mut d = Definitions::default();
        for e in rtx.open_table(VHOSTS)?.range::<&str>(..)? {
            d.vhosts.push(from_json("v1.vhosts", e?.1.value())?);
        }
        for e in rtx.open_table(USERS)?.range::<&str>(..)? {
            d.users.push(from_json("v1.users", e?.1.value())?);
        }
        for e in rtx.open_table(PERMISSIONS)?.range::<(&str, &str)>(..)? {
            d.permissions
                .push(from_json("v1.permissions", e?.1.value())?);
        }
        for e in rtx.open_table(EXCHANGES)?.range::<(&str, &str)>(..)? {
            d.exchanges.push(from_json("v1.exchanges", e?.1.value())?);
        }
        for e in rtx.open_table(QUEUES)?.range::<(&str, &str)>(..)? {
            d.queues.push(from_json("v1.queues", e?.1.value())?);
        }
        for e in rtx.open_table(BINDINGS)?.range::<&[u8]>(..)? {
            d.bindings.push(from_json("v1.bindings", e?.1.value())?);
        }
        match rtx.open_table(GLOBAL_PARAMETERS) {
            Ok(t) => {
                for e in t.range::<&str>(..)? {
                    let (k, v) = e?;
                    d.global_parameters.push((k.value().to_string(), from_json("v1.global_parameters", v.value())?));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(d)
    }

    /// Every stored message of a queue, in seq order. For big queues prefer
    /// [`load_range`](Self::load_range) to page through it.
    pub fn load_queue_messages(
        &self,
        queue_id: u64,
    ) -> Result<Vec<(u64, StoredMessage)>, StoreError> {
        self.load_range(queue_id, 0, usize::MAX)
    }

    /// Up to `limit` messages of a queue with `seq >= from_seq`, in seq
    /// order. Page with `from_seq = last_seq + 1`.
    pub fn load_range(
        &self,
        queue_id: u64,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StoredMessage)>, StoreError> {
        let mut out = Vec::new();
        self.scan(queue_id, from_seq, limit, |seq, rec| {
            out.push((seq, decode_record(rec)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Up to `limit` `(seq, record length)` pairs of a queue with
    /// `seq >= from_seq`, in seq order, without decoding: enough to rebuild
    /// an in-memory index on recovery and fetch bodies later with
    /// [`read_message`](Self::read_message).
    pub fn load_index(
        &self,
        queue_id: u64,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, u32)>, StoreError> {
        let mut out = Vec::new();
        self.scan(queue_id, from_seq, limit, |seq, rec| {
            out.push((seq, rec.len() as u32));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f(seq, raw_record)` for up to `limit` messages with
    /// `seq >= from_seq`, in order, inside one read transaction.
    pub fn scan(
        &self,
        queue_id: u64,
        from_seq: u64,
        limit: usize,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if limit == 0 {
            return Ok(());
        }
        let db = self.db.get()?; // held until the read transaction ends (see `DbSlot::reopen`)
        let rtx = db.begin_read()?;
        let table = rtx.open_table(MESSAGES)?;
        let mut n = 0;
        for e in table.range(msg_key(queue_id, from_seq)..=msg_key(queue_id, u64::MAX))? {
            let (k, v) = e?;
            f(k.value() as u64, v.value())?;
            n += 1;
            if n >= limit {
                break;
            }
        }
        Ok(())
    }

    /// One message, e.g. to load a body on demand.
    pub fn read_message(
        &self,
        queue_id: u64,
        seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let db = self.db.get()?; // held until the read transaction ends (see `DbSlot::reopen`)
        let rtx = db.begin_read()?;
        let table = rtx.open_table(MESSAGES)?;
        match table.get(msg_key(queue_id, seq))? {
            Some(v) => Ok(Some(decode_record(v.value())?)),
            None => Ok(None),
        }
    }

    /// Number of stored messages of a queue (scans its key range).
    pub fn message_count(&self, queue_id: u64) -> Result<u64, StoreError> {
        let db = self.db.get()?; // held until the read transaction ends (see `DbSlot::reopen`)
        let rtx = db.begin_read()?;
        let table = rtx.open_table(MESSAGES)?;
        let mut n = 0;
        for e in table.range(queue_range(queue_id))? {
            e?;
            n += 1;
        }
        Ok(n)
    }

    /// Number of stored messages of all queues.
    pub fn total_message_count(&self) -> Result<u64, StoreError> {
        let db = self.db.get()?; // held until the read transaction ends (see `DbSlot::reopen`)
        let rtx = db.begin_read()?;
        Ok(rtx.open_table(MESSAGES)?.len()?)
    }
}

/// The first bytes and the length of a file, to undo a failed repair.
struct HeadBackup {
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

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("closing store: {e}");
        }
    }
}

fn existed(r: DefReply) -> Result<bool, StoreError> {
    match r {
        DefReply::Existed(b) => Ok(b),
        _ => Err(StoreError::Database("unexpected reply".into())),
    }
}

pub(crate) fn decode_record(rec: &[u8]) -> Result<StoredMessage, StoreError> {
    StoredMessage::decode_slice(rec).map_err(|e| StoreError::Record {
        table: "v1.messages",
        detail: e.to_string(),
    })
}

fn from_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    v: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Record {
        table,
        detail: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("definitions always serialize")
}

/// Deletes messages whose queue is not in `v1.queues` (e.g. appended after
/// the queue was deleted). Jumps from queue to queue, so it costs
/// O(queues × log n), not a scan. Returns the number of known queues.
fn remove_orphans(db: &Database) -> Result<usize, StoreError> {
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

fn next_queue_id(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let id = meta
        .get(META_NEXT_QUEUE_ID)?
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| StoreError::Record {
            table: "meta",
            detail: "next_queue_id missing or malformed".into(),
        })?;
    meta.insert(META_NEXT_QUEUE_ID, &(id + 1).to_le_bytes()[..])?;
    Ok(id)
}

fn delete_queue_messages(txn: &WriteTransaction, queue_id: u64) -> Result<(), StoreError> {
    txn.open_table(MESSAGES)?
        .retain_in(queue_range(queue_id), |_, _| false)?;
    Ok(())
}

/// Removes the bindings for which `drop_it` is true.
fn retain_bindings(
    txn: &WriteTransaction,
    mut drop_it: impl FnMut(&BindingDef) -> bool,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(BINDINGS)?;
    let mut bad = None;
    table.retain(|_, v| match serde_json::from_slice::<BindingDef>(v) {
        Ok(b) => !drop_it(&b),
        Err(e) => {
            bad = Some(e.to_string());
            true
        }
    })?;
    match bad {
        Some(detail) => Err(StoreError::Record {
            table: "v1.bindings",
            detail,
        }),
        None => Ok(()),
    }
}

/// Applies one definition change inside the writer's transaction.
pub(crate) fn apply_def(txn: &WriteTransaction, op: DefOp) -> Result<DefReply, StoreError> {
    match op {
        DefOp::PutGlobal(name, value) => {
            txn.open_table(GLOBAL_PARAMETERS)?.insert(name.as_str(), &value[..])?;
            Ok(DefReply::Done)
        }
        DefOp::PutVhost(d) => {
            txn.open_table(VHOSTS)?
                .insert(d.name.as_str(), &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteVhost(name) => {
            let existed = txn.open_table(VHOSTS)?.remove(name.as_str())?.is_some();
            txn.open_table(EXCHANGES)?.retain(|k, _| k.0 != name)?;
            let mut ids = Vec::new();
            txn.open_table(QUEUES)?.retain(|k, v| {
                if k.0 == name {
                    if let Ok(r) = serde_json::from_slice::<QueueRecord>(v) {
                        ids.push(r.queue_id);
                    }
                    false
                } else {
                    true
                }
            })?;
            for id in ids {
                delete_queue_messages(txn, id)?;
            }
            retain_bindings(txn, |b| b.vhost == name)?;
            txn.open_table(PERMISSIONS)?.retain(|k, _| k.1 != name)?;
            Ok(DefReply::Existed(existed))
        }
        DefOp::PutUser(d) => {
            txn.open_table(USERS)?
                .insert(d.name.as_str(), &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteUser(name) => {
            let existed = txn.open_table(USERS)?.remove(name.as_str())?.is_some();
            txn.open_table(PERMISSIONS)?.retain(|k, _| k.0 != name)?;
            Ok(DefReply::Existed(existed))
        }
        DefOp::PutPermission(d) => {
            txn.open_table(PERMISSIONS)?
                .insert((d.user.as_str(), d.vhost.as_str()), &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeletePermission { user, vhost } => {
            let existed = txn
                .open_table(PERMISSIONS)?
                .remove((user.as_str(), vhost.as_str()))?
                .is_some();
            Ok(DefReply::Existed(existed))
        }
        DefOp::PutExchange(d) => {
            txn.open_table(EXCHANGES)?
                .insert((d.vhost.as_str(), d.name.as_str()), &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteExchange { vhost, name } => {
            let existed = txn
                .open_table(EXCHANGES)?
                .remove((vhost.as_str(), name.as_str()))?
                .is_some();
            retain_bindings(txn, |b| {
                b.vhost == vhost
                    && (b.source == name || (b.destination_is_exchange && b.destination == name))
            })?;
            Ok(DefReply::Existed(existed))
        }
        DefOp::PutQueue(def) => {
            let existing: Option<QueueRecord> = match txn
                .open_table(QUEUES)?
                .get((def.vhost.as_str(), def.name.as_str()))?
            {
                Some(v) => Some(from_json("v1.queues", v.value())?),
                None => None,
            };
            let queue_id = match existing {
                Some(r) => r.queue_id,
                None => next_queue_id(txn)?,
            };
            let rec = QueueRecord { queue_id, def };
            txn.open_table(QUEUES)?.insert(
                (rec.def.vhost.as_str(), rec.def.name.as_str()),
                &to_json(&rec)[..],
            )?;
            Ok(DefReply::QueueId(queue_id))
        }
        DefOp::DeleteQueue { vhost, name } => {
            let removed: Option<QueueRecord> = match txn
                .open_table(QUEUES)?
                .remove((vhost.as_str(), name.as_str()))?
            {
                Some(v) => Some(from_json("v1.queues", v.value())?),
                None => None,
            };
            if let Some(r) = &removed {
                delete_queue_messages(txn, r.queue_id)?;
            }
            retain_bindings(txn, |b| {
                b.vhost == vhost && !b.destination_is_exchange && b.destination == name
            })?;
            Ok(DefReply::Existed(removed.is_some()))
        }
        DefOp::PutBinding(d) => {
            txn.open_table(BINDINGS)?
                .insert(&d.key_bytes()[..], &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteBinding(d) => {
            let existed = txn
                .open_table(BINDINGS)?
                .remove(&d.key_bytes()[..])?
                .is_some();
            Ok(DefReply::Existed(existed))
        }
    }
}
