//! The send side of one connection: its outbound buffer, shared by the connection's reader task
//! and every queue that delivers to it, and how the buffered bytes reach the socket.
//!
//! Bytes leave in one of two ways, never both at once (the `writing` flag, under the buffer's
//! lock, keeps them in order):
//! - the connection's writer task swaps the buffer out and writes it (any size, TLS included);
//! - at the end of a reader batch ([`DeferWakes`]), the task that produced a small amount of
//!   output for a plain TCP connection writes it itself with one non-blocking `send`
//!   ([`ConnShared::flush_direct`]). A message that arrives alone, or a slow queue's delivery,
//!   then costs no task wake-up, and no second worker thread is woken to run writer tasks (on a
//!   two-worker runtime, 100 writer tasks woken at once made the idle worker wake, steal a few
//!   and park again about 25 times per batch). Whatever the socket does not take at once goes to
//!   the writer task.

use super::queue::Queue;
use super::spares::Spares;
use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// Above this many buffered outbound bytes, queues stop delivering to the connection until its
/// writer has drained the buffer (then they are kicked).
pub const OUTBOUND_HIGH_WATER: usize = 1 << 20;

/// At most this many buffered bytes are written directly by the task that produced them (a lone
/// message with a body of up to ~4 KB, or a few dozen small ones); more goes to the connection's
/// writer task, which takes what accumulated meanwhile in one write. Measured with the raw
/// client, pipelined 1→1→1 at load 4, three runs each: 2 and 4 KiB cost the same broker CPU per
/// message as no direct writes (0.50–0.60 µs), 16 KiB up to 0.72 µs (more, smaller sends).
const DIRECT_MAX: usize = 4 * 1024;

/// Outbound buffers up to this capacity are not kept by their connection once written (idle
/// connections hold none); larger ones stay with it (a busy connection reuses it).
const KEEP_ABOVE: usize = 16 * 1024;

thread_local! {
    /// Emptied outbound buffers of at most [`KEEP_ABOVE`] bytes, for the next output on this
    /// thread: a lone delivery then takes one instead of allocating a buffer and growing it (two
    /// `realloc`s per write of four deliveries) and freeing it after the send.
    static SPARE: Spares = const { Spares::new() };
}

/// Empties a buffer whose bytes were written: one larger than [`KEEP_ABOVE`] keeps its capacity
/// (a busy connection reuses it); a smaller one leaves its connection (idle connections hold
/// none) for this thread's spares.
pub fn release_written(buf: &mut BytesMut) {
    if buf.capacity() > KEEP_ABOVE {
        buf.clear();
        return;
    }
    let mut spare = std::mem::take(buf);
    spare.clear();
    if spare.capacity() > 0 {
        SPARE.with(|s| s.put(spare));
    }
}

/// The outbound buffer to append to: a connection that holds none takes a spare of this thread
/// if there is one.
fn with_spare(buf: &mut BytesMut) -> &mut BytesMut {
    Spares::fill(&SPARE, buf);
    buf
}

thread_local! {
    /// Writers to wake at the end of the current reader batch (see [`DeferWakes`]): whether a
    /// batch is open on this thread, and the connections that got frames during it.
    static DEFERRED: RefCell<(bool, Vec<Arc<ConnShared>>)> = const { RefCell::new((false, Vec::new())) };
}

/// While alive, deliveries made on this thread reach their connection once, when the guard
/// drops, instead of once per message: a connection reader holds one while it handles the frames
/// of one read, so the 100 messages of a read become one write per consuming connection, and a
/// message that arrives alone is written as soon as it is handled (no added latency). The guard
/// is not `Send`, so it cannot be held across an `.await` in a spawned task: the batch always
/// ends before the reader waits.
pub struct DeferWakes {
    owner: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl DeferWakes {
    pub fn begin() -> DeferWakes {
        let owner = DEFERRED.with(|d| !std::mem::replace(&mut d.borrow_mut().0, true));
        DeferWakes { owner, _not_send: std::marker::PhantomData }
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let conns = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            d.0 = false;
            std::mem::take(&mut d.1)
        });
        for c in &conns {
            c.flush_direct();
        }
        // Keep the allocation for the next batch.
        let mut conns = conns;
        conns.clear();
        DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.1.capacity() == 0 {
                d.1 = conns;
            }
        });
    }
}

/// Inside a [`DeferWakes`] batch: remembers `conn` to flush at its end (true). Outside: false.
fn defer_wake(conn: &Arc<ConnShared>) -> bool {
    DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if !d.0 {
            return false;
        }
        if !d.1.iter().any(|c| Arc::ptr_eq(c, conn)) {
            d.1.push(conn.clone());
        }
        true
    })
}

/// The outbound buffer and who may write it.
#[derive(Default)]
struct Out {
    buf: BytesMut,
    /// The writer task is writing bytes it took from `buf`: nobody else writes until it is done.
    writing: bool,
    /// A plain TCP connection's socket, for direct writes (None for TLS, whose session lives in
    /// the writer task, and once the writer has ended).
    socket: Option<Arc<OwnedWriteHalf>>,
}

/// What [`ConnShared::flush_direct`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Nothing was buffered.
    Empty,
    /// Everything buffered was written by the caller.
    Written,
    /// The writer task was woken for (the rest of) it.
    Handed,
}

/// The send side of one connection, shared by its reader task and every queue delivering to it.
pub struct ConnShared {
    pub id: u64,
    out: Mutex<Out>,
    wake: Notify,
    frame_max: AtomicU32,
    closed: AtomicBool,
    /// Set when a queue skipped this connection for lack of buffer space.
    throttled: AtomicBool,
    /// Queues that deliver to this connection, kicked when the buffer drains.
    feeders: Mutex<Vec<Weak<Queue>>>,
    /// The client asked for server-sent basic.cancel (capability consumer_cancel_notify).
    pub cancel_notify: AtomicBool,
    /// Socket bytes read and written (`recv_oct`, `send_oct`; one add per read or write).
    pub io: super::stats::SocketStats,
}

impl ConnShared {
    pub fn new(id: u64, frame_max: u32) -> ConnShared {
        ConnShared {
            id,
            out: Mutex::new(Out::default()),
            wake: Notify::new(),
            frame_max: AtomicU32::new(frame_max),
            closed: AtomicBool::new(false),
            throttled: AtomicBool::new(false),
            feeders: Mutex::new(Vec::new()),
            cancel_notify: AtomicBool::new(false),
            io: Default::default(),
        }
    }

    pub fn frame_max(&self) -> u32 {
        self.frame_max.load(Ordering::Relaxed)
    }

    pub fn set_frame_max(&self, v: u32) {
        self.frame_max.store(v, Ordering::Relaxed)
    }

    /// Lets tasks other than the writer write small outputs straight to this plain TCP socket
    /// (see [`ConnShared::flush_direct`]); the writer task calls [`ConnShared::writer_ended`]
    /// before it ends.
    pub fn set_direct_socket(&self, socket: Arc<OwnedWriteHalf>) {
        self.out.lock().socket = Some(socket);
    }

    /// Appends frames with `f` and wakes the writer (at the end of the current reader batch when
    /// called inside [`DeferWakes`], which may write them itself).
    pub fn send(self: &Arc<Self>, f: impl FnOnce(&mut BytesMut)) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        f(with_spare(&mut self.out.lock().buf));
        if !defer_wake(self) {
            self.wake.notify_one();
        }
    }

    /// Appends frames without waking the writer (the caller wakes it once for a batch).
    pub fn append(&self, f: impl FnOnce(&mut BytesMut)) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        f(with_spare(&mut self.out.lock().buf));
    }

    /// Wakes the writer if there is something to write (a wake-up with an empty buffer would only
    /// cost the writer a task switch).
    pub fn wake(&self) {
        if !self.out.lock().buf.is_empty() {
            self.wake.notify_one();
        }
    }

    /// Writes what is buffered with one non-blocking `send` from the calling task, when that is
    /// safe and cheap: a plain TCP socket, the writer task not in the middle of a write, at most
    /// [`DIRECT_MAX`] bytes. Whatever is left (or everything, otherwise) goes to the writer task.
    pub fn flush_direct(&self) -> Flush {
        let mut out = self.out.lock();
        if out.buf.is_empty() {
            return Flush::Empty;
        }
        let direct = !out.writing && out.buf.len() <= DIRECT_MAX && !self.is_closed();
        let written = match (&out.socket, direct) {
            (Some(socket), true) => socket.try_write(&out.buf),
            _ => Err(std::io::ErrorKind::WouldBlock.into()),
        };
        match written {
            Ok(n) => {
                self.io.sent(n);
                if n == out.buf.len() {
                    release_written(&mut out.buf);
                    drop(out);
                    self.after_write();
                    return Flush::Written;
                }
                out.buf.advance(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // The writer task meets the same error on its next write and closes the connection.
            Err(_) => {}
        }
        drop(out);
        self.wake.notify_one();
        Flush::Handed
    }

    pub fn has_room(&self) -> bool {
        if self.out.lock().buf.len() < OUTBOUND_HIGH_WATER {
            true
        } else {
            self.throttled.store(true, Ordering::Relaxed);
            false
        }
    }

    /// The writer task: waits until there is something to write (or the connection is closed),
    /// then swaps it out into `into` (which must be empty) and marks a write in progress, until
    /// [`ConnShared::write_done`].
    pub async fn next_batch(&self, into: &mut BytesMut) {
        loop {
            {
                let mut out = self.out.lock();
                if !out.buf.is_empty() || self.is_closed() {
                    std::mem::swap(&mut out.buf, into);
                    out.writing = true;
                    return;
                }
            }
            self.wake.notified().await;
        }
    }

    /// The writer task: takes whatever is buffered right now and marks a write in progress,
    /// until [`ConnShared::write_done`].
    pub fn take_now(&self, into: &mut BytesMut) {
        let mut out = self.out.lock();
        std::mem::swap(&mut out.buf, into);
        out.writing = true;
    }

    /// The writer task finished writing what it took.
    pub fn write_done(&self) {
        self.out.lock().writing = false;
    }

    /// The writer task is ending: no more direct writes (the socket closes with the writer).
    pub fn writer_ended(&self) {
        let mut out = self.out.lock();
        out.writing = true;
        out.socket = None;
    }

    /// Called after a write: if queues were held back, let them deliver again.
    pub fn after_write(&self) {
        if self.throttled.swap(false, Ordering::Relaxed) {
            let feeders: Vec<Arc<Queue>> = self.feeders.lock().iter().filter_map(Weak::upgrade).collect();
            for q in feeders {
                q.dispatch();
            }
        }
    }

    pub fn add_feeder(&self, q: &Arc<Queue>) {
        let mut f = self.feeders.lock();
        f.retain(|w| w.strong_count() > 0);
        if !f.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(q))) {
            f.push(Arc::downgrade(q));
        }
    }

    /// Stops all further output (the connection is going away).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A connected pair on 127.0.0.1: the server side's write half (as a connection's writer
    /// holds it) and the client side to read from.
    async fn pair() -> (Arc<OwnedWriteHalf>, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let (_, w) = server.into_split();
        (Arc::new(w), client)
    }

    async fn read_exactly(c: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        c.read_exact(&mut v).await.unwrap();
        v
    }

    fn spares() -> usize {
        SPARE.with(|s| s.capacities().len())
    }

    #[tokio::test]
    async fn a_written_small_buffer_leaves_its_connection_for_the_next_output_on_the_thread() {
        SPARE.with(Spares::clear);
        let (w, mut client) = pair().await;
        let conn = Arc::new(ConnShared::new(1, 131072));
        conn.set_direct_socket(w);
        conn.append(|b| b.extend_from_slice(&[1u8; 300]));
        let first = conn.out.lock().buf.as_ptr();
        assert_eq!(conn.flush_direct(), Flush::Written);
        assert_eq!(read_exactly(&mut client, 300).await, [1u8; 300]);
        assert_eq!(conn.out.lock().buf.capacity(), 0, "an idle connection holds no buffer");
        assert_eq!(spares(), 1);
        // Another connection's next output on this thread writes into that allocation.
        let other = Arc::new(ConnShared::new(2, 131072));
        other.append(|b| b.extend_from_slice(b"x"));
        assert_eq!(other.out.lock().buf.as_ptr(), first);
        assert_eq!(&other.out.lock().buf[..], b"x");
        assert_eq!(spares(), 0);
        // A large buffer stays with its connection, emptied; at most four spares are kept.
        let mut big = BytesMut::with_capacity(64 * 1024);
        big.extend_from_slice(b"abc");
        release_written(&mut big);
        assert!(big.is_empty() && big.capacity() >= 64 * 1024);
        assert_eq!(spares(), 0);
        for _ in 0..6 {
            let mut b = BytesMut::with_capacity(512);
            b.extend_from_slice(b"abc");
            release_written(&mut b);
            assert_eq!(b.capacity(), 0);
        }
        assert_eq!(spares(), crate::broker::spares::SPARE_MAX);
    }

    #[tokio::test]
    async fn a_small_output_is_written_by_the_caller_in_order() {
        let (w, mut client) = pair().await;
        let conn = Arc::new(ConnShared::new(1, 131072));
        conn.set_direct_socket(w);
        assert_eq!(conn.flush_direct(), Flush::Empty);
        conn.append(|b| b.extend_from_slice(b"one "));
        conn.append(|b| b.extend_from_slice(b"two "));
        assert_eq!(conn.flush_direct(), Flush::Written);
        assert_eq!(read_exactly(&mut client, 8).await, b"one two ");
        assert_eq!(conn.io.send_oct.load(Ordering::Relaxed), 8);
        // Nothing left for the writer.
        let mut batch = BytesMut::new();
        conn.take_now(&mut batch);
        assert!(batch.is_empty());
    }

    #[tokio::test]
    async fn the_writer_keeps_what_it_is_writing_and_what_is_large_or_tls() {
        let (w, mut client) = pair().await;
        let conn = Arc::new(ConnShared::new(1, 131072));
        conn.set_direct_socket(w.clone());
        // The writer task took a batch and is writing it: later bytes must wait for it.
        conn.append(|b| b.extend_from_slice(b"first "));
        let mut batch = BytesMut::new();
        conn.take_now(&mut batch);
        conn.append(|b| b.extend_from_slice(b"second"));
        assert_eq!(conn.flush_direct(), Flush::Handed);
        w.try_write(&batch).unwrap();
        conn.write_done();
        assert_eq!(conn.flush_direct(), Flush::Written);
        assert_eq!(read_exactly(&mut client, 12).await, b"first second");
        // Above DIRECT_MAX: the writer task's job.
        conn.append(|b| b.extend_from_slice(&vec![7u8; DIRECT_MAX + 1]));
        assert_eq!(conn.flush_direct(), Flush::Handed);
        conn.take_now(&mut batch);
        assert_eq!(batch.len(), DIRECT_MAX + 1);
        conn.write_done();
        // No socket (TLS), or the writer has ended: always the writer's.
        let tls = Arc::new(ConnShared::new(2, 131072));
        tls.append(|b| b.extend_from_slice(b"x"));
        assert_eq!(tls.flush_direct(), Flush::Handed);
        conn.writer_ended();
        conn.append(|b| b.extend_from_slice(b"y"));
        assert_eq!(conn.flush_direct(), Flush::Handed);
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_stays_for_the_writer() {
        let (w, mut client) = pair().await;
        let conn = Arc::new(ConnShared::new(1, 131072));
        conn.set_direct_socket(w.clone());
        // Fill the socket's send buffer (the client does not read yet).
        let chunk = vec![1u8; 64 * 1024];
        let mut filled = 0usize;
        while let Ok(n) = w.try_write(&chunk) {
            filled += n;
        }
        conn.append(|b| b.extend_from_slice(b"tail"));
        assert_eq!(conn.flush_direct(), Flush::Handed);
        let mut batch = BytesMut::new();
        conn.take_now(&mut batch);
        assert_eq!(&batch[..], b"tail");
        let got = read_exactly(&mut client, filled).await;
        assert!(got.iter().all(|&b| b == 1));
    }
}
