//! The `v1.global_parameters` table: RabbitMQ's global runtime parameters (`cluster_name`,
//! `internal_cluster_id`), name → JSON value.
//!
//! Added after format version 1 without a version change: a file written before it has no such
//! table, which reads as empty; the first write transaction that touches it creates it.

use super::{StoreError, from_json};
use redb::{ReadTransaction, TableDefinition, TableError, WriteTransaction};

const TABLE_NAME: &str = "v1.global_parameters";
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new(TABLE_NAME);

pub(super) fn put(txn: &WriteTransaction, name: &str, value: &[u8]) -> Result<(), StoreError> {
    txn.open_table(TABLE)?.insert(name, value)?;
    Ok(())
}

/// Removes `name`; whether it was there.
pub(super) fn delete(txn: &WriteTransaction, name: &str) -> Result<bool, StoreError> {
    Ok(txn.open_table(TABLE)?.remove(name)?.is_some())
}

/// Every global parameter, in name order.
pub(super) fn load(rtx: &ReadTransaction) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    let table = match rtx.open_table(TABLE) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for e in table.range::<&str>(..)? {
        let (k, v) = e?;
        out.push((k.value().to_string(), from_json(TABLE_NAME, v.value())?));
    }
    Ok(out)
}
