use std::path::PathBuf;

/// Every failure of the store. `Clone`, because one failed group commit
/// completes every ticket of its batch with the same error.
///
/// The broker maps any error on a message operation to 541 INTERNAL_ERROR.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data directory or file {path}: {message}")]
    Io { path: PathBuf, message: String },

    #[error(
        "{path} is not a Warren data file ({reason}); refusing to open it, nothing was written"
    )]
    NotAWarrenFile { path: PathBuf, reason: String },

    #[error(
        "{path} has Warren store format version {found}, this build reads version {expected}; \
         refusing to open it, nothing was written"
    )]
    FormatVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    #[error("{path} is corrupt or truncated ({detail}); refusing to open it")]
    Corrupt { path: PathBuf, detail: String },

    #[error("{path} is already open by another Warren process")]
    InUse { path: PathBuf },

    /// A redb error at run time (I/O error, full disk, ...).
    #[error("storage error: {0}")]
    Database(String),

    /// A stored record or definition could not be decoded.
    #[error("corrupt record in {table}: {detail}")]
    Record { table: &'static str, detail: String },

    /// The store (its writer thread) is shut down.
    #[error("the message store is closed")]
    Closed,

    #[error("invalid argument: {0}")]
    Invalid(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::SetDurabilityError
);
