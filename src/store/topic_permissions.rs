//! The `v1.topic_permissions` table: RabbitMQ's `rabbit_topic_permission` records,
//! (user, vhost, exchange) → [`TopicPermissionDef`] (write and read patterns).
//!
//! Added after format version 1 without a version change: a file written before it has no such
//! table, which reads as empty; the first write transaction that touches it creates it.

use super::definitions::TopicPermissionDef;
use super::{StoreError, from_json, to_json};
use redb::{ReadTransaction, TableDefinition, TableError, WriteTransaction};

const TABLE_NAME: &str = "v1.topic_permissions";
const TABLE: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new(TABLE_NAME);

pub(super) fn put(txn: &WriteTransaction, d: &TopicPermissionDef) -> Result<(), StoreError> {
    txn.open_table(TABLE)?.insert((d.user.as_str(), d.vhost.as_str(), d.exchange.as_str()), &to_json(d)[..])?;
    Ok(())
}

/// Deletes the user's rows in the vhost (all, or the one of `exchange`); whether any existed.
pub(super) fn delete(txn: &WriteTransaction, user: &str, vhost: &str, exchange: Option<&str>) -> Result<bool, StoreError> {
    let mut table = txn.open_table(TABLE)?;
    let mut n = 0;
    table.retain(|k, _| {
        let hit = k.0 == user && k.1 == vhost && exchange.is_none_or(|x| k.2 == x);
        n += hit as usize;
        !hit
    })?;
    Ok(n > 0)
}

/// Deletes every row of a user (`delete_user`).
pub(super) fn delete_user(txn: &WriteTransaction, user: &str) -> Result<(), StoreError> {
    txn.open_table(TABLE)?.retain(|k, _| k.0 != user)?;
    Ok(())
}

/// Deletes every row of a vhost (`delete_vhost`).
pub(super) fn delete_vhost(txn: &WriteTransaction, vhost: &str) -> Result<(), StoreError> {
    txn.open_table(TABLE)?.retain(|k, _| k.1 != vhost)?;
    Ok(())
}

/// Every row, in key order (none in a file that predates the table).
pub(super) fn load(rtx: &ReadTransaction) -> Result<Vec<TopicPermissionDef>, StoreError> {
    let table = match rtx.open_table(TABLE) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for e in table.range::<(&str, &str, &str)>(..)? {
        out.push(from_json(TABLE_NAME, e?.1.value())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    fn row(user: &str, vhost: &str, exchange: &str, write: &str) -> TopicPermissionDef {
        TopicPermissionDef { user: user.into(), vhost: vhost.into(), exchange: exchange.into(), write: write.into(), read: ".*".into() }
    }

    #[test]
    fn rows_survive_reopen_and_go_with_their_user_or_vhost() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(s.load_definitions().unwrap().topic_permissions.is_empty(), "no table yet reads as empty");
        s.put_topic_permission(&row("u", "/", "amq.topic", "^a")).unwrap();
        s.put_topic_permission(&row("u", "/", "amq.topic", "^b")).unwrap(); // replaces
        s.put_topic_permission(&row("u", "/", "x", "")).unwrap();
        s.put_topic_permission(&row("u", "v2", "amq.topic", "^c")).unwrap();
        s.put_topic_permission(&row("w", "v2", "amq.topic", "^d")).unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let rows = s.load_definitions().unwrap().topic_permissions;
        assert_eq!(
            rows,
            [row("u", "/", "amq.topic", "^b"), row("u", "/", "x", ""), row("u", "v2", "amq.topic", "^c"), row("w", "v2", "amq.topic", "^d")]
        );
        assert!(s.delete_topic_permissions("u", "/", Some("x")).unwrap());
        assert!(!s.delete_topic_permissions("u", "/", Some("x")).unwrap());
        s.delete_user("u").unwrap();
        assert_eq!(s.load_definitions().unwrap().topic_permissions, [row("w", "v2", "amq.topic", "^d")]);
        s.delete_vhost("v2").unwrap();
        assert!(s.load_definitions().unwrap().topic_permissions.is_empty());
        s.put_topic_permission(&row("w", "/", "a", "")).unwrap();
        s.put_topic_permission(&row("w", "/", "b", "")).unwrap();
        assert!(s.delete_topic_permissions("w", "/", None).unwrap());
        assert!(s.load_definitions().unwrap().topic_permissions.is_empty());
    }
}
