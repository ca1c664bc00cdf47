//! One AMQP connection with one channel over a plain socket: the handshake and setup calls are
//! synchronous (generated method types), then the socket turns non-blocking and the producer or
//! consumer loop drives it with `poll(2)`: no runtime, task or future per message.

use super::wire::{Event, next_event};
use crate::topology::BoxError;
use amq_protocol::uri::AMQPUri;
use bytes::{Buf, BytesMut};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use warren::protocol::frame::{Frame, parse_frame, write_method};
use warren::protocol::{AMQPClass, AMQPValue, FieldTable, basic, channel, connection};

/// The channel every raw connection uses.
pub const CHANNEL: u16 = 1;
/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 256 * 1024;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RawConn {
    sock: TcpStream,
    scratch: Vec<u8>,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub frame_max: u32,
    /// connection.blocked received and not yet unblocked.
    pub blocked: bool,
}

fn table(pairs: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(k.into(), v);
    }
    t
}

/// Describes a close the broker sent (`404 NOT_FOUND - ...`).
fn describe_close(m: &AMQPClass) -> Option<String> {
    match m {
        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => Some(format!("connection closed by the broker: {} {}", c.reply_code, c.reply_text)),
        AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Some(format!("channel closed by the broker: {} {}", c.reply_code, c.reply_text)),
        _ => None,
    }
}

impl RawConn {
    /// Connects, authenticates with PLAIN, opens the vhost and channel 1.
    pub fn open(uri: &str, name: &str) -> Result<RawConn, BoxError> {
        let uri: AMQPUri = uri.parse().map_err(|e| format!("bad URI {uri}: {e}"))?;
        let sock = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port))?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(SETUP_TIMEOUT))?;
        let mut c = RawConn { sock, scratch: vec![0; READ_CHUNK], rbuf: BytesMut::with_capacity(READ_CHUNK), wbuf: BytesMut::new(), frame_max: 131072, blocked: false };
        c.sock.write_all(b"AMQP\x00\x00\x09\x01")?;
        match c.recv_method()? {
            AMQPClass::Connection(connection::AMQPMethod::Start(_)) => {}
            other => return Err(format!("expected connection.start, got {other:?}").into()),
        }
        let capabilities = table(vec![
            ("publisher_confirms", AMQPValue::Boolean(true)),
            ("basic.nack", AMQPValue::Boolean(true)),
            ("consumer_cancel_notify", AMQPValue::Boolean(true)),
            ("connection.blocked", AMQPValue::Boolean(true)),
            ("authentication_failure_close", AMQPValue::Boolean(true)),
        ]);
        let client_properties = table(vec![
            ("product", AMQPValue::LongString("warren-perf".into())),
            ("connection_name", AMQPValue::LongString(name.into())),
            ("capabilities", AMQPValue::FieldTable(capabilities)),
        ]);
        let response = format!("\0{}\0{}", uri.authority.userinfo.username, uri.authority.userinfo.password);
        c.send(CHANNEL_ZERO, AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties,
            mechanism: "PLAIN".into(),
            response: response.into(),
            locale: "en_US".into(),
        })))?;
        let tune = match c.recv_method()? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => return Err(describe_close(&other).unwrap_or_else(|| format!("expected connection.tune, got {other:?}")).into()),
        };
        let wanted = uri.query.frame_max.unwrap_or(131072);
        c.frame_max = if tune.frame_max == 0 { wanted } else { wanted.min(tune.frame_max) };
        c.send(CHANNEL_ZERO, AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: if tune.channel_max == 0 { 2047 } else { tune.channel_max },
            frame_max: c.frame_max,
            heartbeat: 0,
        })))?;
        c.send(CHANNEL_ZERO, AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open { virtual_host: uri.vhost.as_str().into() })))?;
        match c.recv_method()? {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => {}
            other => return Err(describe_close(&other).unwrap_or_else(|| format!("expected connection.open-ok, got {other:?}")).into()),
        }
        c.call(AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})))?;
        Ok(c)
    }

    fn send(&mut self, channel: u16, m: AMQPClass) -> io::Result<()> {
        let mut out = BytesMut::new();
        write_method(&mut out, channel, m);
        self.sock.write_all(&out)
    }

    /// Blocking: the next method frame (heartbeats skipped).
    fn recv_method(&mut self) -> Result<AMQPClass, BoxError> {
        loop {
            match parse_frame(&mut self.rbuf, self.frame_max).map_err(|e| e.to_string())? {
                Some(Frame::Method { method, .. }) => return Ok(method),
                Some(Frame::Heartbeat { .. }) => continue,
                Some(other) => return Err(format!("unexpected frame during setup: {other:?}").into()),
                None => {}
            }
            let n = read_into(&mut self.sock, &mut self.scratch, &mut self.rbuf)?;
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
        }
    }

    /// Synchronous request on channel 1: sends `m` and returns the broker's reply.
    pub fn call(&mut self, m: AMQPClass) -> Result<AMQPClass, BoxError> {
        self.send(CHANNEL, m)?;
        let reply = self.recv_method()?;
        match describe_close(&reply) {
            Some(e) => Err(e.into()),
            None => Ok(reply),
        }
    }

    /// From here on the socket is non-blocking; the loops use `fill`, `flush` and `wait`.
    pub fn go_nonblocking(&mut self) -> io::Result<()> {
        self.sock.set_nonblocking(true)
    }

    /// Reads what the kernel has (non-blocking). `Ok(0)`: nothing yet; an error on EOF.
    pub fn fill(&mut self) -> Result<usize, BoxError> {
        match read_into(&mut self.sock, &mut self.scratch, &mut self.rbuf) {
            Ok(0) => Err("the broker closed the connection".into()),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes as much of `wbuf` as the kernel takes. Returns true when `wbuf` is empty.
    pub fn flush(&mut self) -> Result<bool, BoxError> {
        while !self.wbuf.is_empty() {
            match self.sock.write(&self.wbuf) {
                Ok(0) => return Err("socket closed while writing".into()),
                Ok(n) => self.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Sleeps until the socket is readable (or writable, when `wbuf` holds bytes) or `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let mut events = libc::POLLIN;
        if !self.wbuf.is_empty() {
            events |= libc::POLLOUT;
        }
        let mut fd = libc::pollfd { fd: self.sock.as_raw_fd(), events, revents: 0 };
        // ppoll: nanosecond timeouts, so a rate-limited producer sleeps until the next message
        // is due instead of spinning on a 0 ms poll.
        let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
        // SAFETY: `fd` is one valid pollfd and `ts` a valid timespec, both outliving the call;
        // nfds is 1 and a null signal mask leaves the mask unchanged.
        unsafe { libc::ppoll(&mut fd, 1, &ts, std::ptr::null()) };
    }

    /// The next frame already read, with connection.blocked/unblocked handled here and a
    /// connection.close or channel.close turned into an error.
    pub fn next(&mut self) -> Result<Option<Event>, BoxError> {
        loop {
            let ev = next_event(&mut self.rbuf, self.frame_max)?;
            if let Some(Event::Other(Frame::Method { method, .. })) = &ev {
                match method {
                    AMQPClass::Connection(connection::AMQPMethod::Blocked(_)) => {
                        self.blocked = true;
                        continue;
                    }
                    AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)) => {
                        self.blocked = false;
                        continue;
                    }
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) => return Err("the broker cancelled the consumer".into()),
                    m => {
                        if let Some(e) = describe_close(m) {
                            return Err(e.into());
                        }
                    }
                }
            }
            return Ok(ev);
        }
    }

    /// Closes the connection politely, waiting at most `within` for close-ok.
    pub fn close(mut self, within: Duration) {
        let _ = self.sock.set_nonblocking(false);
        let _ = self.sock.set_read_timeout(Some(Duration::from_millis(100)));
        let _ = self.sock.set_write_timeout(Some(within));
        let mut out = BytesMut::new();
        write_method(&mut out, CHANNEL_ZERO, AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "done".into(),
            class_id: 0,
            method_id: 0,
        })));
        // Unsent publishes are dropped: the run is over.
        if self.sock.write_all(&out).is_err() {
            return;
        }
        let end = Instant::now() + within;
        self.rbuf.clear();
        while Instant::now() < end {
            loop {
                match parse_frame(&mut self.rbuf, u32::MAX) {
                    Ok(Some(Frame::Method { method: AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)), .. })) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            match read_into(&mut self.sock, &mut self.scratch, &mut self.rbuf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
                Err(_) => return,
            }
        }
    }
}

const CHANNEL_ZERO: u16 = 0;

/// One read (at most READ_CHUNK bytes) appended to `buf`, through a reusable scratch buffer (a copy
/// of what was read is cheaper than zeroing the spare capacity before every read).
fn read_into(sock: &mut TcpStream, scratch: &mut Vec<u8>, buf: &mut BytesMut) -> io::Result<usize> {
    scratch.resize(READ_CHUNK, 0);
    let n = sock.read(scratch)?;
    buf.extend_from_slice(&scratch[..n]);
    Ok(n)
}
