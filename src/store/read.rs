//! Reads of stored messages: whole queues, ranges, the index of a queue (seq, size) without
//! bodies, single messages, counts. They use redb read transactions from the calling thread and
//! may run beside the writer.

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::*;


impl Store {
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

pub(crate) fn decode_record(rec: &[u8]) -> Result<StoredMessage, StoreError> {
    StoredMessage::decode_slice(rec).map_err(|e| StoreError::Record {
        table: "v1.messages",
        detail: e.to_string(),
    })
}
