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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts `warren-server` on `data` and `port` (plus `extra` arguments) and waits until it
    /// listens.
    pub async fn start_with(data: &Path, port: u16, extra: &[&str]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_warren-server"))
            .args(["--amqp-port", &port.to_string(), "--bind", "127.0.0.1", "--data-dir"])
            .arg(data)
            .args(extra)
            .env("WARREN_LOG", "warn")
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
