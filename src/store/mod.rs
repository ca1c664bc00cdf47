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
//! | `v1.topic_permissions` | (user, vhost, exchange) | JSON [`TopicPermissionDef`] ([`topic_permissions`]) |
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
//!
//! Files: this one holds the tables and the `Store` handle; `open` opens, checks, creates and
//! repairs the file; `defs_ops` the definition changes; `read` the message reads; `writer/` the
//! writer thread; `codec` the message record; `definitions` the serde definitions;
//! `topic_permissions` that table's rows; `transient` the page files of transient messages.

pub mod codec;
pub mod definitions;
mod defs_ops;
mod error;
mod global_parameters;
mod open;
mod read;
mod topic_permissions;
pub mod transient;
pub mod writer;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;

use redb::{Database, DatabaseError, TableDefinition, TableError};

pub use codec::{CodecError, StoredMessage};
pub use definitions::{
    BindingDef, Definitions, ExchangeDef, PermissionDef, QueueDef, QueueRecord, TopicPermissionDef, UserDef,
    VhostDef,
};
pub use error::StoreError;
pub use writer::{Callback, MessageLog, Pending, StatsSnapshot, Ticket};

use writer::{Op, WriterConfig, WriterStats};

pub(crate) use defs_ops::{DefOp, DefReply, apply_def};
pub use defs_ops::{Existed, Written};
use defs_ops::{from_json, to_json};
use open::{check_meta, open_err, panic_msg};
pub(crate) use read::decode_record;

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
    /// redb page cache (read cache and write buffer together). redb's own
    /// default (1 GiB) would defeat keeping bodies on disk; the broker sets
    /// `storage.store_cache` (16 MiB): the cache fills up as messages are
    /// written, so it is part of what a backlog costs in memory.
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
/// closed and opened again, so the writer reopens it (see `writer/batch.rs`). Readers take a clone of
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

impl Store {
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
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("closing store: {e}");
        }
    }
}

