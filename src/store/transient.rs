//! Where a queue's transient messages wait on disk when its backlog is larger than its memory
//! budget (RabbitMQ's `msg_store_transient`, which classic queues v2 page to). Nothing here
//! survives a restart: the folder `<data-dir>/transient` is emptied when the broker opens its
//! data directory (after it holds the store's lock).
//!
//! Each queue that pages has a [`PageFile`]: an append-only series of segment files
//! `<queue page id>.<segment>` of about [`SEGMENT_BYTES`] each. A record is a little-endian
//! `u32` length followed by a [`StoredMessage`](super::codec::StoredMessage) encoding (the same
//! codec as the durable message log). A message is found again by its [`PageRef`] (segment and
//! offset), which the queue keeps in the message's slot; a segment file is deleted as soon as
//! every message written to it has been read back or dropped, so disk use follows the backlog.
//! No fsync: these bytes need only outlive the process, and the kernel's page cache (which is not
//! the process's resident memory) absorbs them until it writes them out.

use super::codec::StoredMessage;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A segment file is closed for writing once it holds this many bytes (RabbitMQ's message
/// store files are 16 MiB too).
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Records are gathered in memory up to this many bytes before one write to the segment.
const WRITE_BUFFER: usize = 128 << 10;
/// One read from a segment brings at least this many bytes: page-ins take the messages of a
/// backlog in the order they were written, so the next records are usually in the same read.
const READ_CHUNK: usize = 256 << 10;
/// Bits of a [`PageRef`] that hold the offset in the segment (1 TiB; segments are 16 MiB, or one
/// message when it is larger).
const OFFSET_BITS: u32 = 40;

/// The folder of the page files, shared by every queue of the broker.
pub struct TransientDir {
    path: PathBuf,
    /// Page ids of queues (a queue takes one when it first pages).
    next_id: AtomicU64,
}

impl TransientDir {
    /// The folder `path` (created when the first queue pages).
    pub fn new(path: PathBuf) -> Arc<TransientDir> {
        Arc::new(TransientDir { path, next_id: AtomicU64::new(1) })
    }

    /// Deletes what an earlier run left in the folder: transient messages do not survive a
    /// restart. Returns how many files were removed. Call it only while holding the data
    /// directory (the store's lock): another broker's queues may be paging there otherwise.
    pub fn wipe(&self) -> io::Result<usize> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for e in entries {
            let e = e?;
            if e.file_type()?.is_file() {
                std::fs::remove_file(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A page file for a new queue (no file exists until it writes).
    pub fn pages(self: &Arc<Self>) -> PageFile {
        PageFile { dir: self.clone(), id: 0, write: None, next_segment: 1, live: HashMap::new(), reader: None, chunk: None }
    }
}

/// Where a paged message is: segment number (from 1) and byte offset of its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRef(NonZeroU64);

impl PageRef {
    fn new(segment: u32, offset: u64) -> PageRef {
        debug_assert!(segment > 0 && offset < 1 << OFFSET_BITS);
        PageRef(NonZeroU64::new(((segment as u64) << OFFSET_BITS) | offset).expect("segment numbers start at 1"))
    }

    pub fn segment(self) -> u32 {
        (self.0.get() >> OFFSET_BITS) as u32
    }

    pub fn offset(self) -> u64 {
        self.0.get() & ((1 << OFFSET_BITS) - 1)
    }
}

/// The segment being written: its file, its length on disk, and records not yet written.
struct Writer {
    segment: u32,
    file: File,
    written: u64,
    buf: BytesMut,
}

/// One read from a segment, kept for the records after the one it was made for.
struct Chunk {
    segment: u32,
    start: u64,
    bytes: Bytes,
}

/// A queue's transient messages on disk (see the module doc). Owned by the queue and used under
/// its lock; dropping it deletes its files.
pub struct PageFile {
    dir: Arc<TransientDir>,
    /// 0 until the first write.
    id: u64,
    write: Option<Writer>,
    next_segment: u32,
    /// Segment → messages written there and not yet read back or dropped.
    live: HashMap<u32, u32>,
    /// The segment last read from, open for reading.
    reader: Option<(u32, File)>,
    chunk: Option<Chunk>,
}

impl PageFile {
    fn segment_path(&self, segment: u32) -> PathBuf {
        self.dir.path.join(format!("{}.{segment}", self.id))
    }

    /// Messages on disk (written and neither read back nor released).
    pub fn live(&self) -> u64 {
        self.live.values().map(|&n| n as u64).sum()
    }

    /// Segment files that exist now.
    pub fn segments(&self) -> usize {
        self.live.len() + usize::from(self.write.as_ref().is_some_and(|w| !self.live.contains_key(&w.segment)))
    }

    /// Writes `msg` at the end; returns where it is. Fails with the I/O error (disk full, ...):
    /// the caller then keeps the message in memory.
    pub fn write(&mut self, msg: &StoredMessage) -> io::Result<PageRef> {
        let len = msg.encoded_len();
        let full = self.write.as_ref().is_some_and(|w| w.written + w.buf.len() as u64 > 0 && w.written + (w.buf.len() + 4 + len) as u64 > SEGMENT_BYTES);
        if full || self.write.is_none() {
            self.start_segment()?;
        }
        let w = self.write.as_mut().expect("a segment is open");
        let offset = w.written + w.buf.len() as u64;
        if offset + 4 + len as u64 >= 1 << OFFSET_BITS {
            return Err(io::Error::other("message too large for a page file"));
        }
        w.buf.extend_from_slice(&(len as u32).to_le_bytes());
        msg.encode_into(&mut w.buf).map_err(io::Error::other)?;
        let segment = w.segment;
        if w.buf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        *self.live.entry(segment).or_insert(0) += 1;
        Ok(PageRef::new(segment, offset))
    }

    /// Closes the current segment (its buffered records written) and opens the next.
    fn start_segment(&mut self) -> io::Result<()> {
        if self.write.is_some() {
            self.flush()?;
            let old = self.write.take().expect("checked").segment;
            if !self.live.contains_key(&old) {
                self.remove_segment(old);
            }
        }
        if self.id == 0 {
            std::fs::create_dir_all(&self.dir.path)?;
            self.id = self.dir.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let segment = self.next_segment;
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(self.segment_path(segment))?;
        self.next_segment += 1;
        self.write = Some(Writer { segment, file, written: 0, buf: BytesMut::with_capacity(WRITE_BUFFER + 4096) });
        Ok(())
    }

    /// Writes the buffered records to the segment file.
    fn flush(&mut self) -> io::Result<()> {
        let Some(w) = self.write.as_mut() else { return Ok(()) };
        if !w.buf.is_empty() {
            w.file.write_all_at(&w.buf, w.written)?;
            w.written += w.buf.len() as u64;
            w.buf.clear();
        }
        Ok(())
    }

    /// Reads the message at `at` back (the caller then [`release`](Self::release)s it). The
    /// record's bytes may share one allocation with the records read after it.
    pub fn read(&mut self, at: PageRef) -> io::Result<StoredMessage> {
        let (segment, offset) = (at.segment(), at.offset());
        if self.write.as_ref().is_some_and(|w| w.segment == segment && offset >= w.written) {
            self.flush()?;
        }
        let record = match self.from_chunk(segment, offset) {
            Some(r) => r,
            None => {
                self.load_chunk(segment, offset)?;
                self.from_chunk(segment, offset).ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "page file record truncated"))?
            }
        };
        StoredMessage::decode(record).map_err(io::Error::other)
    }

    /// The record at `offset` if the kept chunk holds all of it.
    fn from_chunk(&self, segment: u32, offset: u64) -> Option<Bytes> {
        let c = self.chunk.as_ref().filter(|c| c.segment == segment && offset >= c.start)?;
        let at = (offset - c.start) as usize;
        let len = u32::from_le_bytes(c.bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        (at + 4 + len <= c.bytes.len()).then(|| c.bytes.slice(at + 4..at + 4 + len))
    }

    /// Reads from `offset` in `segment`: at least [`READ_CHUNK`] bytes, or the whole record.
    fn load_chunk(&mut self, segment: u32, offset: u64) -> io::Result<()> {
        self.chunk = None;
        if self.reader.as_ref().is_none_or(|(s, _)| *s != segment) {
            self.reader = Some((segment, File::open(self.segment_path(segment))?));
        }
        let file = &self.reader.as_ref().expect("just opened").1;
        let mut len = [0u8; 4];
        file.read_exact_at(&mut len, offset)?;
        let want = (4 + u32::from_le_bytes(len) as usize).max(READ_CHUNK);
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        self.chunk = Some(Chunk { segment, start: offset, bytes: Bytes::from(buf) });
        Ok(())
    }

    /// Forgets the message at `at` (read back, or dropped); deletes its segment file once the
    /// segment holds no message still wanted and is no longer written to.
    pub fn release(&mut self, at: PageRef) {
        let segment = at.segment();
        let Some(n) = self.live.get_mut(&segment) else { return };
        *n -= 1;
        if *n == 0 {
            self.live.remove(&segment);
            if self.write.as_ref().is_none_or(|w| w.segment != segment) {
                self.remove_segment(segment);
            } else if self.live.is_empty() {
                // Nothing on disk is wanted: start the current segment over rather than grow it.
                let w = self.write.as_mut().expect("checked");
                w.buf.clear();
                w.written = 0;
                if let Err(e) = w.file.set_len(0) {
                    tracing::warn!("cannot truncate page file {}: {e}", self.segment_path(segment).display());
                }
                self.chunk = None;
            }
        }
    }

    fn remove_segment(&mut self, segment: u32) {
        if self.reader.as_ref().is_some_and(|(s, _)| *s == segment) {
            self.reader = None;
            self.chunk = None;
        }
        let path = self.segment_path(segment);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove page file {}: {e}", path.display());
        }
    }

    /// Forgets every message and deletes every file (purge, delete).
    pub fn clear(&mut self) {
        let mut segments: Vec<u32> = self.live.drain().map(|(s, _)| s).collect();
        if let Some(w) = self.write.take() {
            segments.push(w.segment);
        }
        segments.sort_unstable();
        segments.dedup();
        for s in segments {
            self.remove_segment(s);
        }
        self.reader = None;
        self.chunk = None;
    }
}

impl Drop for PageFile {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u32, size: usize) -> StoredMessage {
        let mut body = vec![(i % 251) as u8; size];
        body[..4].copy_from_slice(&i.to_be_bytes());
        StoredMessage {
            exchange: "x".into(),
            routing_key: format!("k{i}"),
            properties: Bytes::from_static(&[0x10, 0x00, 0x01]),
            body: Bytes::from(body),
            delivered: false,
        }
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[test]
    fn messages_come_back_intact_and_segments_go_once_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TransientDir::new(tmp.path().join("transient"));
        let mut p = dir.pages();
        // 40 MiB of 100 KiB messages: three segments.
        let refs: Vec<PageRef> = (0..400).map(|i| p.write(&msg(i, 100 << 10)).unwrap()).collect();
        assert_eq!(p.live(), 400);
        assert_eq!(files(dir.path()), 3);
        // Out of order (priorities, expiry) works as well as in order.
        let m = p.read(refs[399]).unwrap();
        assert_eq!(m, msg(399, 100 << 10));
        p.release(refs[399]);
        for (i, r) in refs.iter().enumerate().take(399) {
            assert_eq!(p.read(*r).unwrap(), msg(i as u32, 100 << 10), "message {i}");
            p.release(*r);
        }
        assert_eq!(p.live(), 0);
        // The first two segments are gone; the one being written was emptied.
        assert_eq!(files(dir.path()), 1);
        assert_eq!(std::fs::metadata(dir.path().join(format!("{}.3", p.id))).unwrap().len(), 0);
        drop(p);
        assert_eq!(files(dir.path()), 0);
    }

    #[test]
    fn a_message_larger_than_a_segment_and_small_ones_around_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TransientDir::new(tmp.path().to_owned());
        let mut p = dir.pages();
        let a = p.write(&msg(1, 10)).unwrap();
        let big = p.write(&msg(2, 20 << 20)).unwrap();
        let b = p.write(&msg(3, 10)).unwrap();
        assert_ne!(a.segment(), big.segment());
        assert_ne!(big.segment(), b.segment());
        for (r, i, size) in [(a, 1, 10), (big, 2, 20 << 20), (b, 3, 10)] {
            assert_eq!(p.read(r).unwrap(), msg(i, size));
            p.release(r);
        }
        p.clear();
        assert_eq!(files(tmp.path()), 0);
    }

    #[test]
    fn wipe_removes_what_an_earlier_run_left() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TransientDir::new(tmp.path().join("t"));
        assert_eq!(dir.wipe().unwrap(), 0);
        let mut p = dir.pages();
        p.write(&msg(1, 10)).unwrap();
        p.flush().unwrap();
        std::mem::forget(p);
        assert_eq!(TransientDir::new(tmp.path().join("t")).wipe().unwrap(), 1);
        assert_eq!(files(&tmp.path().join("t")), 0);
    }
}
