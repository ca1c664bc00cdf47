//! A real `warren-server` process on a data folder, for tests that kill and restart it.

use lapin::{Connection, ConnectionProperties};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub port: u16,
}

/// A port that is free now, for a `warren-server` started next. Taken from 20000–31999, below
/// the kernel's ephemeral range (32768–60999 on Linux): a port from the ephemeral range, once
/// released here, could be handed to another test's bind to port 0 before the server binds it,
/// and the test would then talk to that other broker. Ports are handed out in turn from a
/// per-process starting point, so two calls in this test process never return the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id().wrapping_mul(7_919) % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Server {
    /// Starts `warren-server` on `data` and `port` (plus `extra` arguments) and waits until it
    /// listens.
    pub async fn start_with(data: &Path, port: u16, extra: &[&str]) -> Server {
        Self::start_logging(data, port, extra, "warn").await
    }

    /// As `start_with`, logging only errors, and not the channel errors (which RabbitMQ logs at
    /// error level): for tests whose storm of refused operations would fill the test output.
    pub async fn start_quiet(data: &Path, port: u16) -> Server {
        Self::start_logging(data, port, &[], "error,warren::connection::dispatch=off").await
    }

    async fn start_logging(data: &Path, port: u16, extra: &[&str], level: &str) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_warren-server"))
            .args(["--amqp-port", &port.to_string(), "--bind", "127.0.0.1", "--data-dir"])
            .arg(data)
            .args(extra)
            .env("WARREN_LOG", level)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn warren-server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "warren-server did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server { child, port }
    }

    pub async fn connect(&self) -> Connection {
        let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port);
        super::timeout(Connection::connect(&uri, ConnectionProperties::default())).await.unwrap()
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
