//! Test harness shared by the integration tests.
//!
//! `TestBroker::start()` gives each test a broker: an in-process Warren on an ephemeral
//! port, or — when `WARREN_TEST_URL` is set — an external broker (e.g. the RabbitMQ
//! reference node) so the same suite validates its own expectations. Tests use
//! [`uniq`] names so they can share an external broker.
//!
//! `RawClient` is a socket-level client for protocol tests: it sends arbitrary bytes and
//! reads/parses frames with `amq-protocol`.
#![allow(dead_code)]

pub mod process;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default wait for anything that should happen "now".
pub const WAIT: Duration = Duration::from_secs(5);
/// Wait used to assert that something does NOT happen.
pub const QUIET: Duration = Duration::from_millis(300);

pub struct TestBroker {
    uri: String,
    addr: SocketAddr,
    server: Option<warren::server::ServerHandle>,
    _dir: Option<tempfile::TempDir>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestBroker::start`], with the in-process broker's config adjusted by `f`.
    pub async fn start_with(f: impl FnOnce(&mut warren::config::Config)) -> TestBroker {
        if let Ok(url) = std::env::var("WARREN_TEST_URL") {
            if !url.is_empty() {
                let addr = addr_of_url(&url);
                return TestBroker { uri: url, addr, server: None, _dir: None };
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = warren::config::Config::for_tests(dir.path());
        f(&mut cfg);
        let server = tokio::time::timeout(WAIT, warren::server::start(cfg))
            .await
            .expect("warren start timed out")
            .expect("warren start failed");
        let addr = server.amqp_addr;
        let uri = format!("amqp://guest:guest@{addr}/%2f");
        TestBroker { uri, addr, server: Some(server), _dir: Some(dir) }
    }

    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The in-process broker (None for an external one).
    pub fn server(&self) -> Option<&warren::server::ServerHandle> {
        self.server.as_ref()
    }

    /// True when running against an external broker (`WARREN_TEST_URL`).
    pub fn is_external(&self) -> bool {
        self.server.is_none()
    }

    /// A URI for the same broker with another vhost (already percent-encoded).
    pub fn uri_with_vhost(&self, vhost_encoded: &str) -> String {
        let base = self.uri.rsplit_once('/').map(|(b, _)| b).unwrap_or(&self.uri);
        format!("{base}/{vhost_encoded}")
    }

    /// Opens a lapin connection (tokio runtime), bounded by a timeout.
    pub async fn connect(&self) -> Connection {
        timeout(Connection::connect(&self.uri, ConnectionProperties::default()))
            .await
            .expect("lapin connect")
    }

    /// Opens a connection and one channel.
    pub async fn channel(&self) -> (Connection, lapin::Channel) {
        let conn = self.connect().await;
        let ch = timeout(conn.create_channel()).await.expect("create_channel");
        (conn, ch)
    }

    pub async fn raw(&self) -> RawClient {
        RawClient::connect(self.addr).await
    }

    /// Raw client that has completed the handshake (heartbeat 0) and opened channel 1.
    pub async fn raw_open(&self) -> RawClient {
        let mut c = RawClient::handshake(self.addr, HandshakeOpts::default()).await;
        c.open_channel(1).await;
        c
    }

    /// The plugin layer of an in-process broker.
    pub fn plugin_manager(&self) -> &std::sync::Arc<warren::plugin::manager::PluginManager> {
        &self.server.as_ref().expect("in-process broker").plugins
    }

    /// `warren-plugins list [-v]` of an in-process broker, as entries.
    pub fn plugin_list(&self, verbose: bool) -> Vec<warren::admin::plugins::PluginEntry> {
        use warren::admin::plugins::PluginControl;
        self.server.as_ref().expect("in-process broker").plugins.list(verbose)
    }

    /// The data directory of an in-process broker (holds the control socket).
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }

    /// Runs an operator command (rabbitmqctl syntax) and returns (exit code, stdout, stderr):
    /// the real `warrenctl` binary against an in-process broker, or `$WARREN_TEST_RABBITMQCTL`
    /// (e.g. `rabbitmqctl -n ref@localhost`) against an external one. None when an external
    /// broker has no such command configured (the caller skips).
    pub async fn ctl(&self, args: &[&str]) -> Option<(i32, String, String)> {
        let mut cmd = match self.data_dir() {
            Some(dir) => {
                let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"));
                c.arg("--data-dir").arg(dir);
                c
            }
            None => {
                let line = std::env::var("WARREN_TEST_RABBITMQCTL").ok().filter(|s| !s.trim().is_empty())?;
                let mut parts = line.split_whitespace();
                let mut c = tokio::process::Command::new(parts.next().unwrap());
                c.args(parts);
                c
            }
        };
        cmd.args(args).stdin(std::process::Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("ctl timed out").expect("run ctl");
        Some((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Like [`ctl`](Self::ctl), but the command must succeed. None: skip (see `ctl`).
    pub async fn ctl_ok(&self, args: &[&str]) -> Option<String> {
        let (code, out, err) = self.ctl(args).await?;
        assert_eq!(code, 0, "ctl {args:?} failed: {out}{err}");
        Some(out)
    }

    /// An amqp URI for `user`/`pass` on `vhost` (percent-encoded here).
    pub fn uri_for(&self, user: &str, pass: &str, vhost: &str) -> String {
        let enc: String = vhost.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        format!("amqp://{user}:{pass}@{}/{enc}", self.addr)
    }

    /// Runs an admin command over the control socket of the in-process broker (as warrenctl does).
    pub async fn admin_call(&self, command: &str, args: &[&str]) -> warren::admin::Response {
        let dir = self._dir.as_ref().expect("ctl needs the in-process broker").path().to_owned();
        let req = warren::admin::Request {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            vhost: None,
        };
        tokio::task::spawn_blocking(move || warren::admin::control::call(&dir, &req))
            .await
            .unwrap()
            .expect("control socket call")
    }

    /// Stops an in-process broker (no-op for an external one).
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(WAIT, s.shutdown()).await;
        }
    }
}

fn addr_of_url(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap();
    let hostport = hostport.rsplit_once('@').map(|(_, h)| h).unwrap_or(hostport);
    let hostport = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:5672") };
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().expect("WARREN_TEST_URL host:port must be an IP address")
}

/// A name unique to this process and call, so tests can share an external broker.
pub fn uniq(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
    format!("{prefix}-{}-{t}-{n}", std::process::id())
}

/// Awaits `f` for at most [`WAIT`]; panics on timeout.
pub async fn timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("operation timed out")
}

/// The (code, text) of an AMQP protocol error, if `e` is one.
pub fn amqp_error(e: &lapin::Error) -> Option<(u16, String)> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => Some((p.get_id(), p.get_message().to_string())),
        _ => None,
    }
}

/// Asserts `r` is an AMQP error with this exact code and text.
#[track_caller]
pub fn assert_amqp_err<T: std::fmt::Debug>(r: Result<T, lapin::Error>, code: u16, text: &str) {
    match r {
        Ok(v) => panic!("expected AMQP error {code} {text:?}, got Ok({v:?})"),
        Err(e) => match amqp_error(&e) {
            Some((c, t)) => {
                assert_eq!((c, t.as_str()), (code, text), "wrong AMQP error");
            }
            None => panic!("expected AMQP error {code} {text:?}, got {e:?}"),
        },
    }
}

/// Runs a lapin call that must fail with an AMQP error; returns (code, text).
pub async fn expect_amqp_err<T: std::fmt::Debug, F>(f: F) -> (u16, String)
where
    F: std::future::Future<Output = Result<T, lapin::Error>>,
{
    match timeout(f).await {
        Ok(v) => panic!("expected an AMQP error, got Ok({v:?})"),
        Err(e) => amqp_error(&e).unwrap_or_else(|| panic!("expected an AMQP error, got {e:?}")),
    }
}

pub fn ft(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

pub fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

// ---------------------------------------------------------------------------------------
// Raw socket client
// ---------------------------------------------------------------------------------------

/// A frame as read off the wire, before method decoding.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub frame_type: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub enum ReadError {
    /// EOF or connection reset: the server closed the socket.
    Closed,
    Timeout,
    Malformed(String),
}

pub struct HandshakeOpts {
    pub user: String,
    pub pass: String,
    pub vhost: String,
    pub mechanism: String,
    pub heartbeat: u16,
    pub frame_max: u32,
    pub channel_max: u16,
    pub capabilities: bool,
}

impl Default for HandshakeOpts {
    fn default() -> Self {
        HandshakeOpts {
            user: "guest".into(),
            pass: "guest".into(),
            vhost: "/".into(),
            mechanism: "PLAIN".into(),
            heartbeat: 0,
            frame_max: 131_072,
            channel_max: 2047,
            capabilities: true,
        }
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The connection.start received during [`RawClient::handshake`].
    pub start: Option<connection::Start>,
    /// The connection.tune received during [`RawClient::handshake`].
    pub tune: Option<connection::Tune>,
    /// A method read by `start_and_tune` that was not connection.tune.
    pub pending: Option<(u16, AMQPClass)>,
}

pub fn encode(frame: &AMQPFrame) -> Vec<u8> {
    let ctx = gen_frame(frame)(WriteContext::from(Vec::new())).expect("gen_frame");
    ctx.write
}

/// Encodes a method frame.
pub fn method_frame(ch: u16, m: AMQPClass) -> Vec<u8> {
    encode(&AMQPFrame::Method(ch, m))
}

/// Builds a frame from raw parts (type, channel, payload) with a custom end octet.
pub fn raw_frame(frame_type: u8, ch: u16, payload: &[u8], end: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.push(frame_type);
    v.extend_from_slice(&ch.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(end);
    v
}

/// The capabilities table a modern client (lapin, pika) sends in start-ok.
pub fn client_capabilities() -> FieldTable {
    let mut caps = FieldTable::default();
    for k in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        caps.insert(k.into(), AMQPValue::Boolean(true));
    }
    caps
}

/// The AMQPLAIN response: a field table body without its 4-byte length prefix.
pub fn amqplain_response(user: &str, pass: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in [("LOGIN", user), ("PASSWORD", pass)] {
        v.push(k.len() as u8);
        v.extend_from_slice(k.as_bytes());
        v.push(b'S');
        v.extend_from_slice(&(val.len() as u32).to_be_bytes());
        v.extend_from_slice(val.as_bytes());
    }
    v
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = timeout(TcpStream::connect(addr)).await.expect("tcp connect");
        stream.set_nodelay(true).ok();
        RawClient { stream, buf: Vec::new(), start: None, tune: None, pending: None }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // A write may fail if the server already closed; tests then observe the close on read.
        let _ = self.stream.write_all(bytes).await;
    }

    pub async fn send_frame(&mut self, f: &AMQPFrame) {
        let b = encode(f);
        self.send(&b).await;
    }

    pub async fn send_method(&mut self, ch: u16, m: AMQPClass) {
        self.send_frame(&AMQPFrame::Method(ch, m)).await;
    }

    /// Sends the AMQP 0-9-1 protocol header.
    pub async fn send_header(&mut self) {
        self.send(b"AMQP\x00\x00\x09\x01").await;
    }

    async fn fill(&mut self, want: usize, deadline: tokio::time::Instant) -> Result<(), ReadError> {
        while self.buf.len() < want {
            let mut tmp = vec![0u8; 65536];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(Err(_)) => return Err(ReadError::Closed),
                Ok(Ok(0)) => return Err(ReadError::Closed),
                Ok(Ok(n)) => n,
            };
            self.buf.extend_from_slice(&tmp[..n]);
        }
        Ok(())
    }

    /// Reads exactly `n` bytes (e.g. a protocol header sent back by the server).
    pub async fn read_bytes(&mut self, n: usize, wait: Duration) -> Result<Vec<u8>, ReadError> {
        let deadline = tokio::time::Instant::now() + wait;
        self.fill(n, deadline).await?;
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one frame (any type) within `wait`.
    pub async fn read_raw_frame(&mut self, wait: Duration) -> Result<RawFrame, ReadError> {
        let deadline = tokio::time::Instant::now() + wait;
        self.fill(7, deadline).await?;
        let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]]) as usize;
        if size > 16 << 20 {
            return Err(ReadError::Malformed(format!("frame size {size}")));
        }
        self.fill(7 + size + 1, deadline).await?;
        let bytes: Vec<u8> = self.buf.drain(..7 + size + 1).collect();
        if bytes[7 + size] != 0xCE {
            return Err(ReadError::Malformed(format!("bad frame end {:#x}", bytes[7 + size])));
        }
        Ok(RawFrame {
            frame_type: bytes[0],
            channel: u16::from_be_bytes([bytes[1], bytes[2]]),
            payload: bytes[7..7 + size].to_vec(),
        })
    }

    /// Reads and decodes one frame within `wait`.
    pub async fn read_frame(&mut self, wait: Duration) -> Result<AMQPFrame, ReadError> {
        let raw = self.read_raw_frame(wait).await?;
        decode(&raw)
    }

    /// Reads frames until a method frame arrives (skipping heartbeats).
    pub async fn read_method(&mut self, wait: Duration) -> Result<(u16, AMQPClass), ReadError> {
        if let Some(p) = self.pending.take() {
            return Ok(p);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await? {
                AMQPFrame::Method(ch, m) => return Ok((ch, m)),
                AMQPFrame::Heartbeat => continue,
                other => return Err(ReadError::Malformed(format!("expected a method, got {other:?}"))),
            }
        }
    }

    /// Reads a method and panics if it is not there in time.
    pub async fn expect_method(&mut self) -> (u16, AMQPClass) {
        match self.read_method(WAIT).await {
            Ok(m) => m,
            Err(e) => panic!("expected a method frame, got {e:?}"),
        }
    }

    /// Full handshake: header, start, start-ok, tune, tune-ok, open, open-ok.
    pub async fn handshake(addr: SocketAddr, o: HandshakeOpts) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        c.start_and_tune(&o).await;
        c.send_open(&o.vhost).await;
        match c.expect_method().await {
            (0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))) => {}
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
        c
    }

    /// Header, start, start-ok and (if the login succeeds) tune + tune-ok.
    /// Panics if connection.start does not arrive; returns after sending start-ok if the
    /// next frame is not tune (the caller then reads it).
    pub async fn start_and_tune(&mut self, o: &HandshakeOpts) -> bool {
        self.send_header().await;
        let start = match self.expect_method().await {
            (0, AMQPClass::Connection(connection::AMQPMethod::Start(s))) => s,
            other => panic!("expected connection.start, got {other:?}"),
        };
        self.start = Some(start);
        self.send_start_ok(o).await;
        let tune = match self.read_method(WAIT).await {
            Ok((0, AMQPClass::Connection(connection::AMQPMethod::Tune(t)))) => t,
            Ok(other) => {
                self.pending = Some(other);
                return false;
            }
            Err(e) => panic!("expected connection.tune, got {e:?}"),
        };
        self.tune = Some(tune);
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: o.channel_max,
                frame_max: o.frame_max,
                heartbeat: o.heartbeat,
            })),
        )
        .await;
        true
    }

    pub async fn send_start_ok(&mut self, o: &HandshakeOpts) {
        let mut props = FieldTable::default();
        props.insert("product".into(), lstr("warren-tests"));
        if o.capabilities {
            props.insert("capabilities".into(), AMQPValue::FieldTable(client_capabilities()));
        }
        let response = if o.mechanism == "AMQPLAIN" {
            amqplain_response(&o.user, &o.pass)
        } else {
            format!("\0{}\0{}", o.user, o.pass).into_bytes()
        };
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: o.mechanism.as_str().into(),
                response: LongString::from(response),
                locale: "en_US".into(),
            })),
        )
        .await;
    }

    pub async fn send_open(&mut self, vhost: &str) {
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: vhost.into(),
            })),
        )
        .await;
    }

    pub async fn open_channel(&mut self, ch: u16) {
        self.send_method(ch, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))).await;
        match self.expect_method().await {
            (c, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))) if c == ch => {}
            other => panic!("expected channel.open-ok on {ch}, got {other:?}"),
        }
    }

    /// Sends basic.publish + header + body frames (body split at `frame_max - 8`).
    pub async fn publish(&mut self, ch: u16, exchange: &str, rk: &str, props: basic::AMQPProperties, body: &[u8]) {
        let mut out = method_frame(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: exchange.into(),
                routing_key: rk.into(),
                mandatory: false,
                immediate: false,
            })),
        );
        out.extend(encode(&AMQPFrame::Header(
            ch,
            AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties: props },
        )));
        for chunk in body.chunks(131_072 - 8) {
            out.extend(encode(&AMQPFrame::Body(ch, chunk.to_vec())));
        }
        self.send(&out).await;
    }

    /// Waits for connection.close; answers close-ok; returns (code, text, class, method).
    pub async fn expect_connection_close(&mut self) -> (u16, String, u16, u16) {
        loop {
            match self.read_method(WAIT).await {
                Ok((0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                    self.send_method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                    )
                    .await;
                    return (c.reply_code, c.reply_text.to_string(), c.class_id, c.method_id);
                }
                Ok(other) => panic!("expected connection.close, got {other:?}"),
                Err(e) => panic!("expected connection.close, got {e:?}"),
            }
        }
    }

    /// Waits for channel.close on `ch`; answers close-ok; returns (code, text, class, method).
    pub async fn expect_channel_close(&mut self, ch: u16) -> (u16, String, u16, u16) {
        match self.read_method(WAIT).await {
            Ok((c, AMQPClass::Channel(channel::AMQPMethod::Close(cl)))) if c == ch => {
                self.send_method(ch, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))).await;
                (cl.reply_code, cl.reply_text.to_string(), cl.class_id, cl.method_id)
            }
            other => panic!("expected channel.close on {ch}, got {other:?}"),
        }
    }

    /// True if the server closes the socket within `wait` (frames before EOF are discarded).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut tmp = vec![0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

pub fn decode(raw: &RawFrame) -> Result<AMQPFrame, ReadError> {
    let mut bytes = Vec::with_capacity(raw.payload.len() + 8);
    bytes.push(raw.frame_type);
    bytes.extend_from_slice(&raw.channel.to_be_bytes());
    bytes.extend_from_slice(&(raw.payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&raw.payload);
    bytes.push(0xCE);
    match parse_frame(bytes.as_slice()) {
        Ok((_, f)) => Ok(f),
        Err(e) => Err(ReadError::Malformed(format!("{e:?}"))),
    }
}

pub fn short(s: &str) -> ShortString {
    s.into()
}

// ---------------------------------------------------------------------------------------
// lapin helpers
// ---------------------------------------------------------------------------------------

/// Runs a fire-and-forget method `f` (publish, ack, ...) that should close the channel or the
/// connection, and returns the AMQP error the server closed it with.
///
/// lapin only reports such errors to pending calls and consumers, and a publish may be
/// written after a later method, so a consumer is registered on `ch` first (on a fresh
/// server-named queue); its stream yields the channel's or connection's error.
pub async fn error_after<T, F>(ch: &lapin::Channel, f: F) -> (u16, String)
where
    F: std::future::Future<Output = Result<T, lapin::Error>>,
{
    use futures_lite::StreamExt;
    let q = temp_queue(ch).await;
    let mut probe = timeout(ch.basic_consume(q.as_str().into(), "".into(), Default::default(), FieldTable::default()))
        .await
        .expect("probe consumer");
    let _ = timeout(f).await;
    loop {
        match tokio::time::timeout(WAIT, probe.next()).await.expect("no error within the timeout") {
            Some(Ok(d)) => panic!("unexpected delivery on the probe consumer: {d:?}"),
            Some(Err(e)) => return amqp_error(&e).unwrap_or_else(|| panic!("expected an AMQP error, got {e:?}")),
            None => panic!("the channel closed without an AMQP error"),
        }
    }
}

/// Asserts that the channel still works (a round trip succeeds).
pub async fn assert_channel_ok(ch: &lapin::Channel) {
    timeout(ch.basic_qos(0, lapin::options::BasicQosOptions::default()))
        .await
        .expect("channel should still be open");
}

/// A channel in confirm mode, for publishes that must be routed before the test checks queues.
pub async fn confirm_channel(conn: &lapin::Connection) -> lapin::Channel {
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.confirm_select(Default::default())).await.unwrap();
    ch
}

/// Publishes and waits for the publisher confirm (the channel must be in confirm mode).
pub async fn publish_c(ch: &lapin::Channel, exchange: &str, rk: &str, body: &[u8], props: lapin::BasicProperties) {
    let confirm = timeout(ch.basic_publish(exchange.into(), rk.into(), Default::default(), body, props))
        .await
        .expect("publish");
    let c = timeout(confirm).await.expect("confirm");
    assert!(c.is_ack(), "publish to {exchange:?}/{rk:?} was not acked: {c:?}");
}

/// Publishes without waiting for anything.
pub async fn publish(ch: &lapin::Channel, exchange: &str, rk: &str, body: &[u8]) {
    timeout(ch.basic_publish(exchange.into(), rk.into(), Default::default(), body, Default::default()))
        .await
        .expect("publish");
}

/// basic.get (no-ack) until the queue is empty; returns the bodies as strings.
pub async fn drain(ch: &lapin::Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let m = timeout(ch.basic_get(q.into(), lapin::options::BasicGetOptions { no_ack: true }))
            .await
            .expect("basic.get");
        match m {
            Some(m) => out.push(String::from_utf8_lossy(&m.delivery.data).to_string()),
            None => return out,
        }
    }
}

/// Declares a server-named exclusive queue and returns its name.
pub async fn temp_queue(ch: &lapin::Channel) -> String {
    let q = timeout(ch.queue_declare("".into(), lapin::options::QueueDeclareOptions::exclusive(), FieldTable::default()))
        .await
        .expect("queue.declare");
    q.name().to_string()
}

/// Declares a named, non-durable, non-exclusive queue.
pub async fn named_queue(ch: &lapin::Channel, name: &str) {
    timeout(ch.queue_declare(name.into(), Default::default(), FieldTable::default()))
        .await
        .expect("queue.declare");
}

/// Next delivery from a consumer within `wait` (None if nothing arrives).
pub async fn next_delivery(c: &mut lapin::Consumer, wait: Duration) -> Option<lapin::message::Delivery> {
    use futures_lite::StreamExt;
    match tokio::time::timeout(wait, c.next()).await {
        Err(_) => None,
        Ok(None) => None,
        Ok(Some(Ok(d))) => Some(d),
        Ok(Some(Err(e))) => panic!("consumer error: {e:?}"),
    }
}

/// The `alarms` of `rabbitmqctl status --formatter json` for these resources ("disk",
/// "memory") on Warren's node: RabbitMQ's CLI gives each as
/// `{"node": …, "resource": …, "type": "resource_limit"}`.
pub fn alarm_objects(resources: &[&str]) -> serde_json::Value {
    serde_json::Value::Array(
        resources.iter().map(|r| serde_json::json!({"node": "warren@localhost", "resource": r, "type": "resource_limit"})).collect(),
    )
}
