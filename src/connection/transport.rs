//! The byte stream under one connection: plain TCP, or TLS over TCP (AMQPS). The reader and
//! writer halves are enums rather than trait objects, so the plain path stays as it was (split
//! TCP halves, readiness-then-read for idle connections that hold no buffer).

use crate::broker::spares::Spares;
use bytes::BytesMut;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

type Tls = TlsStream<TcpStream>;

/// An accepted connection's stream.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<Tls>, crate::tls::PeerTls),
}

pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<Tls>),
}

/// The plain half is shared with the connection's `ConnShared`, which may write small outputs
/// directly (see `broker::outbound`); the socket closes when the last holder drops it.
pub(crate) enum Writer {
    Tcp(Arc<OwnedWriteHalf>),
    Tls(tokio::io::WriteHalf<Tls>),
}

impl Stream {
    pub(crate) fn split(self) -> (Reader, Writer, Option<crate::tls::PeerTls>) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (Reader::Tcp(r), Writer::Tcp(Arc::new(w)), None)
            }
            Stream::Tls(s, peer) => {
                let (r, w) = tokio::io::split(*s);
                (Reader::Tls(r), Writer::Tls(w), Some(peer))
            }
        }
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s, _) => s.get_ref().0,
        }
    }
}

impl Reader {
    /// Waits for data and appends what is there to `buf`, growing it by `want` first when less
    /// than half of that is free: `Ok(0)` at end of stream, else the bytes read and whether they
    /// filled the room (the connection is busy). Cancel-safe: nothing is consumed unless it
    /// returns. A plain socket waits for readiness before `buf` grows, so an idle connection holds
    /// no buffer.
    pub(crate) async fn read_some(&mut self, buf: &mut BytesMut, want: usize) -> io::Result<(usize, bool)> {
        let reserve = |buf: &mut BytesMut| {
            Spares::fill(&SPARE, buf);
            if buf.capacity() - buf.len() < want / 2 {
                buf.reserve(want);
            }
            buf.capacity() - buf.len()
        };
        match self {
            Reader::Tcp(r) => loop {
                r.readable().await?;
                let room = reserve(buf);
                // Polled once (not `try_read_buf`): tokio's poll_read marks the socket drained
                // after a short read, which saves the read that would only return EWOULDBLOCK
                // (one syscall per wake-up).
                match futures_util::FutureExt::now_or_never(r.read_buf(buf)) {
                    Some(Ok(n)) => return Ok((n, n >= room)),
                    Some(Err(e)) => return Err(e),
                    None => continue,
                }
            },
            Reader::Tls(r) => {
                let room = reserve(buf);
                let n = r.read_buf(buf).await?;
                Ok((n, n >= room))
            }
        }
    }
}

thread_local! {
    /// Empty read buffers that connections going idle gave back ([`recycle`]), for the next read
    /// on this worker thread: a connection that wakes for a message or two a time reuses one
    /// instead of allocating and freeing 4 KiB per wake-up (above glibc's thread cache, so
    /// through its slower paths: ~650 of the 8,400 user-space instructions of a lone message).
    static SPARE: Spares = const { Spares::new() };
}

/// Gives the read buffer of a connection about to wait back to this thread's spares, if nothing
/// else holds a part of it (message bodies are slices of it) and it is small; otherwise it is
/// dropped. Either way the connection holds no buffer while it waits.
pub(crate) fn recycle(mut buf: BytesMut, size: usize) {
    if buf.is_empty() && buf.try_reclaim(size) && buf.capacity() <= 2 * size {
        SPARE.with(|s| s.put(buf));
    }
}

impl AsyncRead for Reader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl Writer {
    /// The plain TCP half, for direct writes (None for TLS).
    pub(crate) fn direct_socket(&self) -> Option<Arc<OwnedWriteHalf>> {
        match self {
            Writer::Tcp(w) => Some(w.clone()),
            Writer::Tls(_) => None,
        }
    }
}

/// A shared plain half writes through `&TcpStream`: wait for writability, then a non-blocking
/// `send` (which clears tokio's readiness when it would block).
fn poll_write_shared(w: &OwnedWriteHalf, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    let s: &TcpStream = w.as_ref();
    loop {
        std::task::ready!(s.poll_write_ready(cx))?;
        match s.try_write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => poll_write_shared(w, cx, buf),
            Writer::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(_) => Poll::Ready(Ok(())),
            Writer::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => {
                let s: &TcpStream = (**w).as_ref();
                Poll::Ready(rustix::net::shutdown(s, rustix::net::Shutdown::Write).map_err(io::Error::from))
            }
            Writer::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spares() -> Vec<usize> {
        SPARE.with(Spares::capacities)
    }

    #[test]
    fn only_unshared_small_buffers_become_spares_and_at_most_four() {
        SPARE.with(Spares::clear);
        // A buffer whose message body is still alive elsewhere is not reused.
        let mut b = BytesMut::with_capacity(4096);
        b.extend_from_slice(b"body");
        let body = b.split_to(4).freeze();
        recycle(b, 4096);
        assert!(spares().is_empty());
        // Once nothing holds a part of it, the whole allocation is reclaimed.
        let mut b = BytesMut::with_capacity(4096);
        b.extend_from_slice(b"body");
        let body2 = b.split_to(4).freeze();
        drop(body2);
        recycle(b, 4096);
        assert_eq!(spares(), vec![4096]);
        // A busy connection's large buffer is freed, not kept.
        recycle(BytesMut::with_capacity(64 * 1024), 4096);
        assert_eq!(spares().len(), 1);
        for _ in 0..10 {
            recycle(BytesMut::with_capacity(4096), 4096);
        }
        assert_eq!(spares().len(), crate::broker::spares::SPARE_MAX);
        drop(body);
    }
}
