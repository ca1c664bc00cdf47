//! Per-thread lists of empty byte buffers that connections let go of (an idle connection holds
//! none) and the next connection on the same worker thread takes back, instead of one allocation
//! freed and another made per wake-up. One list per kind of buffer: the connection reader's read
//! buffers (`connection::transport`), the outbound buffers (`broker::outbound`).

use bytes::BytesMut;
use std::cell::RefCell;
use std::thread::LocalKey;

/// At most this many spare buffers per list and thread.
pub const SPARE_MAX: usize = 4;

/// A list of spare buffers, held in a `thread_local!` (`const { Spares::new() }`).
#[derive(Default)]
pub struct Spares(RefCell<Vec<BytesMut>>);

impl Spares {
    pub const fn new() -> Spares {
        Spares(RefCell::new(Vec::new()))
    }

    /// Keeps `buf` (emptied by the caller) while fewer than [`SPARE_MAX`] are kept; otherwise it
    /// is dropped.
    pub fn put(&self, buf: BytesMut) {
        let mut s = self.0.borrow_mut();
        if s.len() < SPARE_MAX {
            s.push(buf);
        }
    }

    /// Gives `buf` a spare of this thread's `list` if it holds no allocation and there is one. A
    /// buffer that has one (the usual case: every delivery appends through here) does not touch
    /// the thread-local.
    pub fn fill(list: &'static LocalKey<Spares>, buf: &mut BytesMut) {
        if buf.capacity() == 0
            && let Some(spare) = list.with(|s| s.0.borrow_mut().pop())
        {
            *buf = spare;
        }
    }

    #[cfg(test)]
    pub fn capacities(&self) -> Vec<usize> {
        self.0.borrow().iter().map(BytesMut::capacity).collect()
    }

    #[cfg(test)]
    pub fn clear(&self) {
        self.0.borrow_mut().clear()
    }
}
