//! A connection's writer task: drains the outbound buffer to the socket in batches and sends
//! heartbeats. Small outputs of a reader batch may reach a plain TCP socket without it (see
//! `broker::outbound`); the writer takes whatever they leave.

use super::transport::Writer;
use crate::broker::outbound::{ConnShared, release_written};
use crate::protocol::frame;
use bytes::BytesMut;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Drains the outbound buffer; sends a heartbeat after `heartbeat/2` seconds without output.
pub(super) async fn write_loop(conn: Arc<ConnShared>, mut wr: Writer, heartbeat: u16) {
    if let Some(socket) = wr.direct_socket() {
        conn.set_direct_socket(socket);
    }
    let mut batch = BytesMut::new();
    let idle = if heartbeat == 0 { Duration::from_secs(3600 * 24) } else { Duration::from_millis(heartbeat as u64 * 500) };
    loop {
        let sent_before = conn.io.send_cnt.load(Ordering::Relaxed);
        let got = tokio::time::timeout(idle, conn.next_batch(&mut batch)).await;
        if got.is_err() {
            if conn.is_closed() {
                break;
            }
            if conn.io.send_cnt.load(Ordering::Relaxed) != sent_before {
                // Direct writes went out meanwhile: the peer heard from us.
                continue;
            }
            conn.take_now(&mut batch);
            frame::write_heartbeat(&mut batch);
        }
        // flush: a no-op on TCP; TLS sends the records still buffered in the session.
        if wr.write_all(&batch).await.is_err() || wr.flush().await.is_err() {
            conn.close();
            break;
        }
        conn.io.sent(batch.len());
        conn.write_done();
        release_written(&mut batch);
        conn.after_write();
        if conn.is_closed() {
            conn.take_now(&mut batch);
            let _ = wr.write_all(&batch).await;
            let _ = wr.flush().await;
            break;
        }
    }
    // No more direct writes: the socket closes with this task (shutdown, then the last Arc drops).
    conn.writer_ended();
    let _ = wr.shutdown().await;
}
