//! One AMQP connection: a reader task that parses frames and runs channel methods, and a writer
//! task that drains the connection's outbound buffer to the socket in batches and sends heartbeats.

mod channel;
mod dispatch;
mod errlog;
mod handshake;
pub mod transport;
mod writer;

pub use handshake::MECHANISMS;

use crate::broker::counters;
use crate::broker::delivery::ChannelShared;
use crate::broker::outbound::ConnShared;
use crate::broker::queue::Queue;
use crate::broker::{Broker, ConnectionEntry, Vhost};
use crate::protocol::frame::{self, Frame, FrameError, parse_frame};
use crate::protocol::reply::{ErrorKind, ReplyError};
use crate::protocol::{AMQPClass, channel as chan, connection};
use bytes::BytesMut;
use channel::Channel;
use dispatch::frame_error;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transport::{Reader, Stream};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// The 0-9-1 protocol header, also sent back to a client that offers another protocol.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Read buffer sizes: idle connections keep a small buffer (1,000 idle connections must stay
/// cheap); a connection whose reads fill the buffer gets a large one.
const READ_CHUNK_IDLE: usize = 4 * 1024;
const READ_CHUNK_BUSY: usize = 64 * 1024;
/// A reader samples the broker's memory (one `pread` of /proc/self/statm) after this many bytes.
const MEMORY_SAMPLE_BYTES: usize = 4 << 20;

/// What ends the reader loop.
enum Stop {
    /// Orderly end after close / close-ok.
    Done,
}

/// State shared by the channel code of one connection.
pub(crate) struct ConnCtx {
    pub broker: Arc<Broker>,
    pub conn: Arc<ConnShared>,
    pub vhost: Arc<Vhost>,
    pub user: String,
    /// The user as its auth backend accepted it (permission checks go there).
    pub auth: crate::auth_backend::AuthUser,
    /// Bumped by each accepted `connection.update-secret` (channels' permission caches are
    /// stamped with it).
    pub auth_gen: u64,
    pub id: u64,
    /// Exclusive queues declared by this connection, deleted when it closes.
    pub exclusive: Vec<Arc<Queue>>,
    /// Set by a publish that found a destination queue in flow (see `broker/flow.rs`); the
    /// reader pauses after the current content frame until the queue is relieved.
    pub flow: Option<Arc<Queue>>,
}

impl ConnCtx {
    /// What the channels' permission caches are valid for: the broker's access-control epoch and
    /// this connection's secret generation. None while the login is expired (a token past its
    /// `exp`): then nothing is answered from a cache.
    pub fn auth_stamp(&self) -> Option<(u64, u64)> {
        if self.auth.expires_at.is_some() && self.auth.expired() {
            return None;
        }
        Some((self.broker.auth_epoch(), self.auth_gen))
    }
}

/// What a reader paused by publisher flow control waits for.
enum FlowWait {
    Queue(Arc<Queue>),
    Store,
}

/// `[amqp] tcp_recbuf` / `tcp_sndbuf` (RabbitMQ's `tcp_listen_options.recbuf` / `sndbuf`).
/// A fixed size turns the kernel's autotuning off for that direction: what a paused publisher
/// has sent waits in at most `tcp_recbuf` bytes here (autotuned loopback buffers grow to
/// `net.ipv4.tcp_rmem`'s maximum, 32 MiB on many machines, i.e. hundreds of milliseconds of
/// messages).
fn set_buffers(socket: &tokio::net::TcpStream, cfg: &crate::config::AmqpConfig) {
    use rustix::net::sockopt;
    if cfg.tcp_recbuf > 0
        && let Err(e) = sockopt::set_socket_recv_buffer_size(socket, cfg.tcp_recbuf as usize)
    {
        tracing::warn!("cannot set SO_RCVBUF to {}: {e}", cfg.tcp_recbuf);
    }
    if cfg.tcp_sndbuf > 0
        && let Err(e) = sockopt::set_socket_send_buffer_size(socket, cfg.tcp_sndbuf as usize)
    {
        tracing::warn!("cannot set SO_SNDBUF to {}: {e}", cfg.tcp_sndbuf);
    }
}

/// Serves one accepted socket (plain, or TLS after its handshake) until it closes.
pub async fn serve(broker: Arc<Broker>, socket: Stream, peer: SocketAddr) {
    let local = socket.tcp().local_addr().ok();
    let _ = socket.tcp().set_nodelay(true);
    set_buffers(socket.tcp(), &broker.config.amqp);
    let id = broker.next_id();
    let (mut rd, mut wr, tls) = socket.split();
    let mut buf = BytesMut::with_capacity(READ_CHUNK_IDLE);
    let hs_timeout = Duration::from_millis(broker.config.amqp.handshake_timeout_ms);

    // Protocol header.
    let mut header = [0u8; 8];
    match tokio::time::timeout(hs_timeout, rd.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let ok = &header == PROTOCOL_HEADER || &header == b"AMQP\x01\x01\x00\x09";
    if !ok {
        let _ = wr.write_all(PROTOCOL_HEADER).await;
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
        return;
    }
    info!(peer = %peer, "accepting AMQP connection");

    let conn = Arc::new(ConnShared::new(id, broker.config.amqp.frame_max));
    let hs = match tokio::time::timeout(
        hs_timeout,
        handshake::run(&broker, &conn, &mut rd, &mut wr, &mut buf, peer, local, tls.as_ref()),
    )
    .await
    {
        Ok(Ok(h)) => h,
        Ok(Err(())) | Err(_) => return,
    };
    info!(peer = %peer, user = %hs.user, vhost = %hs.vhost.name, "user '{}' authenticated and granted access to vhost '{}'", hs.user, hs.vhost.name);

    conn.cancel_notify.store(hs.cancel_notify, std::sync::atomic::Ordering::Relaxed);
    let (close_tx, close_rx) = mpsc::unbounded_channel();
    let blocked = Arc::new(AtomicBool::new(false));
    let channel_count = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let flow_state = Arc::new(crate::broker::flow::FlowState::default());
    let channel_list = Arc::new(parking_lot::Mutex::new(std::collections::BTreeMap::new()));
    counters::bump(&broker.counters.connections_opened);
    broker.connections.lock().insert(
        id,
        ConnectionEntry {
            id,
            peer,
            user: hs.user.clone(),
            vhost: hs.vhost.name.clone(),
            close: close_tx.clone(),
            blocked: blocked.clone(),
            channels: channel_count.clone(),
            flow: flow_state.clone(),
            ssl: tls.clone(),
            client_properties: Arc::new(hs.client_properties.clone()),
            channel_list: channel_list.clone(),
            shared: conn.clone(),
            tuned: (hs.channel_max, hs.frame_max, hs.heartbeat),
            auth_mechanism: hs.mechanism.clone(),
            connected_at: crate::broker::ttl::now_ms(),
        },
    );
    // A user or vhost deleted during the handshake closes the connection it just missed.
    if hs.auth.backend.name() == "internal" && broker.user(&hs.user).is_none() {
        let _ = close_tx.send(ReplyError::new(ErrorKind::ConnectionForced, format!("user '{}' is deleted", hs.user)));
    } else if hs.vhost.is_deleted() {
        let _ = close_tx.send(ReplyError::new(ErrorKind::ConnectionForced, format!("vhost '{}' is deleted", hs.vhost.name)));
    } else if !broker.app_running.load(std::sync::atomic::Ordering::Acquire) {
        // Accepted before `stop_app` closed the listener: closed as the others were.
        let _ = close_tx.send(ReplyError::new(ErrorKind::ConnectionForced, crate::broker::SHUTDOWN_REASON));
    }
    drop(close_tx);
    let writer = tokio::spawn(writer::write_loop(conn.clone(), wr, hs.heartbeat));
    let label = errlog::ConnLabel {
        id,
        name: match local {
            Some(l) => format!("{peer} -> {l}"),
            None => peer.to_string(),
        },
        vhost: hs.vhost.name.clone(),
        user: hs.user.clone(),
    };
    let mut c = Connection {
        ctx: ConnCtx {
            broker: broker.clone(),
            conn: conn.clone(),
            vhost: hs.vhost,
            user: hs.user,
            auth: hs.auth,
            auth_gen: 0,
            id,
            exclusive: Vec::new(),
            flow: None,
        },
        channels: HashMap::default(),
        channel_count,
        channel_list,
        channel_max: hs.channel_max,
        frame_max: hs.frame_max,
        closing: false,
        max_message_size: broker.config.amqp.max_message_size,
        blocked,
        blocked_notify: hs.blocked_notify,
        blocked_sent: false,
        flow: None,
        flow_state,
        label,
    };
    let alarm = broker.alarms.subscribe();
    let reason = c.run(rd, buf, hs.heartbeat, close_rx, alarm).await;
    c.cleanup();
    broker.connections.lock().remove(&id);
    counters::bump(&broker.counters.connections_closed);
    conn.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    info!(peer = %peer, user = %c.ctx.user, vhost = %c.ctx.vhost.name, "closing AMQP connection ({reason})");
}

pub(crate) struct Connection {
    ctx: ConnCtx,
    /// Looked up for every frame: a fast seeded hasher (foldhash), not SipHash.
    channels: HashMap<u16, Channel, foldhash::fast::RandomState>,
    /// `channels.len()`, shared with the connection's `ConnectionEntry` (user channel limits).
    channel_count: Arc<std::sync::atomic::AtomicU32>,
    /// The open channels' shared parts, shared with the `ConnectionEntry` (the admin API's
    /// channel registry): changed at channel.open and close only.
    channel_list: Arc<parking_lot::Mutex<std::collections::BTreeMap<u16, Arc<ChannelShared>>>>,
    /// The most channels open at once (RabbitMQ counts them; channel numbers are free).
    channel_max: u16,
    frame_max: u32,
    /// connection.close sent by the server; waiting for close-ok.
    closing: bool,
    max_message_size: u64,
    /// Resource alarm flow control (RabbitMQ's `throttle`): set when the connection published
    /// during an alarm; the reader then stops reading and parsing until the alarm clears.
    blocked: Arc<AtomicBool>,
    /// The client advertised the `connection.blocked` capability.
    blocked_notify: bool,
    /// connection.blocked was sent and connection.unblocked is owed.
    blocked_sent: bool,
    /// Publisher flow control: the reader is paused until this is relieved.
    flow: Option<FlowWait>,
    flow_state: Arc<crate::broker::flow::FlowState>,
    /// Names the connection in error logs.
    label: errlog::ConnLabel,
}

impl Connection {
    async fn run(
        &mut self,
        mut rd: Reader,
        mut buf: BytesMut,
        heartbeat: u16,
        mut close_rx: mpsc::UnboundedReceiver<ReplyError>,
        mut alarm: watch::Receiver<u8>,
    ) -> String {
        // Receive silence is checked once per heartbeat interval, as RabbitMQ's heartbeat
        // receiver does: the second check in a row that finds nothing read since the one before
        // drops the peer, 2–3 intervals after its last bytes. One long-lived timer serves the
        // connection (reset once per interval), instead of a timeout armed and cancelled around
        // every read. The same timer ends a closing connection's wait for close-ok.
        let interval = if heartbeat == 0 { Duration::from_secs(3600 * 24 * 365) } else { Duration::from_secs(heartbeat as u64) };
        let tick = tokio::time::sleep(interval);
        tokio::pin!(tick);
        let mut heard = false;
        let mut silent_checks = 0u8;
        let mut close_deadline: Option<tokio::time::Instant> = None;
        let mut busy = false;
        let mut read_since_sample = 0usize;
        // Bytes of the read that starts the next batch.
        let mut last_read = 0usize;
        loop {
            // Writers of the connections this batch of frames delivers to are woken once, at the
            // end of the batch (before any wait).
            let wakes = crate::broker::outbound::DeferWakes::begin();
            let mut batch_read = std::mem::take(&mut last_read);
            // While blocked, frames already buffered wait too (RabbitMQ's recvloop stops at once).
            while !self.reading_paused() {
                match parse_frame(&mut buf, self.frame_max) {
                    Ok(Some(f)) => {
                        let content = match f {
                            // A publish whose content follows whole in the buffer (most of
                            // them) is handled as one unit: one pass of this loop and one channel
                            // lookup instead of three. Not during an alarm: the connection then
                            // blocks after the header, as RabbitMQ's does.
                            Frame::Publish { channel, publish } if !self.closing => {
                                let whole = match self.ctx.broker.alarms.any() {
                                    false => frame::take_content(&mut buf, channel, self.frame_max),
                                    true => None,
                                };
                                let content = whole.is_some();
                                self.channel_publish(channel, publish, whole);
                                content
                            }
                            f => {
                                let content = matches!(f, Frame::Header { .. } | Frame::Body { .. });
                                match self.handle(f) {
                                    Ok(()) => {}
                                    Err(Stop::Done) => {
                                        self.flush();
                                        return "client closed".into();
                                    }
                                }
                                content
                            }
                        };
                        if content {
                            // One atomic load per content frame (two with a store).
                            self.publish_received(self.ctx.broker.alarms.any());
                            self.check_flow();
                        }
                    }
                    Ok(None) => {
                        // The last read filled the buffer, so more is likely waiting: read it
                        // now, without waiting, into the same batch, so that its deliveries
                        // leave with these in one write per connection (a 7 KiB burst read as
                        // 4 + 3 KiB would otherwise be flushed twice).
                        // Only after a read into an idle connection's small buffer: a busy
                        // connection's batches stay one read long (longer batches cost the
                        // pipelined flow its reader/writer overlap: 0.56–0.65 → 0.72–0.74 µs/msg).
                        if busy && !self.closing && batch_read <= READ_CHUNK_IDLE {
                            let want = READ_CHUNK_BUSY;
                            if let Some(Ok((n, filled))) = futures_util::FutureExt::now_or_never(rd.read_some(&mut buf, want))
                                && n > 0
                            {
                                busy = filled;
                                batch_read += n;
                                self.account_read(n, &mut read_since_sample);
                                continue;
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        let err = frame_error(e);
                        self.hard_close(err);
                        buf.clear();
                        break;
                    }
                }
            }
            self.flush();
            drop(wakes);
            if self.flow.is_some() && !self.closing && !self.blocked.load(Ordering::Relaxed) {
                // Flow control: no reads until the pressure is relieved (or the broker closes
                // the connection). Heartbeat monitoring starts afresh afterwards.
                let queue = match &self.flow {
                    Some(FlowWait::Queue(q)) => Some(q.clone()),
                    _ => None,
                };
                let store = self.ctx.broker.store.clone();
                let limit = self.ctx.broker.config.flow.store_pending_bytes;
                let relieved = async move {
                    match queue {
                        Some(q) => q.flow.relieved(|| q.recheck_flow()).await,
                        None => crate::broker::flow::store_relieved(|| store.as_ref().map_or(0, |s| s.pending_bytes()), limit).await,
                    }
                };
                tokio::select! {
                    _ = relieved => {
                        self.flow = None;
                        self.flow_state.resume();
                    }
                    Some(err) = close_rx.recv() => {
                        self.flow = None;
                        self.flow_state.resume();
                        self.hard_close(err);
                        self.flush();
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if self.ctx.conn.is_closed() {
                            return "client closed TCP connection".into();
                        }
                        // At most a second per pause: connections that feed each other's
                        // queues (A consumes what B publishes and the reverse) would otherwise
                        // wait for each other's acks for ever. Each resume reads on to the next
                        // publish, which pauses again while the pressure lasts.
                        self.flow = None;
                        self.flow_state.resume();
                    }
                }
                // A pause is not the peer's silence.
                heard = true;
                continue;
            }
            if self.reading_paused() {
                // Blocked: no reads, no heartbeat timeout, until the alarm clears or the broker
                // closes the connection. A dead peer shows up as the writer failing (heartbeats).
                tokio::select! {
                    r = async { alarm.wait_for(|set| *set == 0).await.map(|_| ()) } => {
                        if r.is_err() {
                            return "broker stopped".into();
                        }
                        self.unblock();
                    }
                    Some(err) = close_rx.recv() => {
                        self.blocked.store(false, Ordering::Relaxed);
                        self.hard_close(err);
                        self.flush();
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if self.ctx.conn.is_closed() {
                            return "client closed TCP connection".into();
                        }
                    }
                }
                heard = true;
                continue;
            }
            if self.closing && close_deadline.is_none() {
                // From now on only the wait for close-ok counts (3 s, as RabbitMQ's).
                let d = tokio::time::Instant::now() + Duration::from_secs(3);
                close_deadline = Some(d);
                tick.as_mut().reset(d);
            }
            // An idle connection holds no read buffer while it waits: wait for readability
            // first, then read into a buffer sized by how busy the connection is (a spare one of
            // this thread's when there is one).
            if buf.is_empty() && !busy {
                transport::recycle(std::mem::take(&mut buf), READ_CHUNK_IDLE);
            }
            let want = if busy { READ_CHUNK_BUSY } else { READ_CHUNK_IDLE };
            tokio::select! {
                r = rd.read_some(&mut buf, want) => match r {
                    Ok((0, _)) | Err(_) => return "client closed TCP connection".into(),
                    Ok((n, filled)) => {
                        busy = filled;
                        last_read = n;
                        heard = true;
                        self.account_read(n, &mut read_since_sample);
                    }
                },
                _ = &mut tick => {
                    if close_deadline.is_some() {
                        return "close-ok not received".into();
                    }
                    silent_checks = if std::mem::take(&mut heard) { 0 } else { silent_checks + 1 };
                    if silent_checks >= 2 {
                        warn!(conn = self.ctx.id, "missed heartbeats from client, timeout: {}s", heartbeat);
                        return "missed heartbeats".into();
                    }
                    tick.as_mut().reset(tokio::time::Instant::now() + interval);
                }
                Some(err) = close_rx.recv() => {
                    if !self.closing {
                        self.hard_close(err);
                        self.flush();
                    }
                    continue;
                }
            }
        }
    }

    /// The socket is not read: blocked by an alarm or paused by flow control (a closing
    /// connection reads its close-ok).
    fn reading_paused(&self) -> bool {
        !self.closing && (self.blocked.load(Ordering::Relaxed) || self.flow.is_some())
    }

    /// After a content frame: pause reading if the publish found a queue in flow or the store
    /// writer is too far behind.
    fn check_flow(&mut self) {
        if self.flow.is_some() || self.closing {
            return;
        }
        let wait = if let Some(q) = self.ctx.flow.take()
            && !q.consumed_by(&self.ctx.conn)
        {
            FlowWait::Queue(q)
        } else if let Some(store) = &self.ctx.broker.store
            && store.pending_bytes() > self.ctx.broker.config.flow.store_pending_bytes
        {
            FlowWait::Store
        } else {
            return;
        };
        tracing::trace!(conn = self.ctx.id, "flow control: reader paused");
        self.flow_state.pause();
        self.flow = Some(wait);
    }

    /// A content header or body was handled (RabbitMQ's `publish_received`): during an alarm the
    /// connection becomes blocked after this frame, and is told so once if it asked to be.
    fn publish_received(&mut self, alarm_set: bool) {
        if !alarm_set || self.closing || self.blocked.load(Ordering::Relaxed) {
            return;
        }
        self.blocked.store(true, Ordering::Relaxed);
        let reason = self.ctx.broker.alarms.blocked_reason();
        tracing::debug!(conn = self.ctx.id, "blocked: {reason}");
        if self.blocked_notify && !self.blocked_sent {
            self.blocked_sent = true;
            let m = AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked {
                reason: reason.as_str().into(),
            }));
            self.ctx.conn.append(|out| frame::write_method(out, 0, m));
        }
    }

    /// The alarm cleared: resume reading; connection.unblocked if connection.blocked was sent.
    fn unblock(&mut self) {
        self.blocked.store(false, Ordering::Relaxed);
        tracing::debug!(conn = self.ctx.id, "unblocked");
        if std::mem::take(&mut self.blocked_sent) {
            let m = AMQPClass::Connection(connection::AMQPMethod::Unblocked(connection::Unblocked {}));
            self.ctx.conn.append(|out| frame::write_method(out, 0, m));
        }
        self.ctx.conn.wake();
    }

    /// Counts `n` bytes read. Memory grows with what publishers send: it is sampled every few MiB
    /// read as well as on the monitor's timer (which a loaded runtime may run late), so the
    /// alarm's overshoot is bounded by data volume, not by scheduling.
    fn account_read(&self, n: usize, read_since_sample: &mut usize) {
        self.ctx.conn.io.received(n);
        *read_since_sample += n;
        if *read_since_sample >= MEMORY_SAMPLE_BYTES {
            *read_since_sample = 0;
            self.ctx.broker.memory.check();
        }
    }

    /// End of a batch: the connection's own replies and confirms go out (a small output with one
    /// direct send from this task, see `broker::outbound`; otherwise by the writer task).
    fn flush(&mut self) {
        for ch in self.channels.values_mut() {
            ch.flush_confirms(&self.ctx);
        }
        self.ctx.conn.flush_direct();
    }

    /// Sends connection.close and ignores everything but close / close-ok from now on; logs the
    /// error as RabbitMQ does (a forced close is logged by whoever forced it).
    fn hard_close(&mut self, err: ReplyError) {
        self.hard_close_on(0, err);
    }

    fn hard_close_on(&mut self, channel: u16, err: ReplyError) {
        if self.closing {
            return;
        }
        if err.kind != ErrorKind::ConnectionForced {
            tracing::error!("{}", errlog::connection_error(&self.label, channel, &err));
        }
        self.closing = true;
        self.close_channels();
        let m = AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: err.code(),
            reply_text: err.wire_text(),
            class_id: err.class_id,
            method_id: err.method_id,
        }));
        self.ctx.conn.append(|out| frame::write_method(out, 0, m));
    }

    fn count_channels(&self) {
        self.channel_count.store(self.channels.len() as u32, std::sync::atomic::Ordering::Relaxed);
    }

    /// A channel leaves the registry: its counters go to the broker's and its vhost's retired
    /// totals, and it counts as closed.
    fn unregister_channel(&self, number: u16) {
        let retired = &self.ctx.broker.retired;
        let _moving = retired.moving();
        if let Some(shared) = self.channel_list.lock().remove(&number) {
            let snap = shared.stats_snapshot();
            retired.channels.absorb(&snap);
            self.ctx.vhost.closed_channels.absorb(&snap);
        }
        counters::bump(&self.ctx.broker.counters.channels_closed);
    }

    fn close_channels(&mut self) {
        let open: Vec<_> = self.channels.drain().collect();
        for (n, mut ch) in open {
            ch.close(&mut self.ctx);
            self.unregister_channel(n);
        }
        self.count_channels();
    }

    fn cleanup(&mut self) {
        self.close_channels();
        self.drop_exclusive_queues();
    }

    fn drop_exclusive_queues(&mut self) {
        for q in std::mem::take(&mut self.ctx.exclusive) {
            self.ctx.vhost.remove_queue(&q);
        }
    }
}
