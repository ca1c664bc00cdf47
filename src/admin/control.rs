//! The control socket: a Unix socket in the data directory (owner-only), one JSON request per
//! line, one JSON response per line. `warrenctl` and `warren-plugins` talk to the broker here.

use super::{Admin, Request, Response, handle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "warren.sock";

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Binds the control socket (replacing a stale one) and serves it in the background.
pub fn start(admin: Admin, data_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)?;
    let path = socket_path(data_dir);
    if path.exists() {
        // A live broker answers; a stale socket file from a killed one does not.
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another broker is running with data directory {}", data_dir.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    info!(path = %path.display(), "control socket ready");
    let admin = Arc::new(admin);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(serve(admin.clone(), s));
                }
                Err(e) => {
                    warn!("control socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(path)
}

async fn serve(admin: Arc<Admin>, s: UnixStream) {
    let (rd, mut wr) = s.into_split();
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let a = admin.clone();
                // Commands may block (file writes, plugin compiles): keep them off the reactor.
                tokio::task::spawn_blocking(move || handle(&a, &req)).await.unwrap_or_else(|e| Response::error(e.to_string()))
            }
            Err(e) => Response::error(format!("bad request: {e}")),
        };
        let mut out = serde_json::to_string(&resp).expect("response serialises");
        out.push('\n');
        if wr.write_all(out.as_bytes()).await.is_err() {
            break;
        }
    }
}

/// Client side: sends one request and waits for the answer.
pub fn call(data_dir: &Path, req: &Request) -> std::io::Result<Response> {
    call_within(data_dir, req, None)
}

/// [`call`], giving up after `timeout` (an error of kind `WouldBlock` or `TimedOut`).
pub fn call_within(data_dir: &Path, req: &Request, timeout: Option<std::time::Duration>) -> std::io::Result<Response> {
    use std::io::{BufRead, Write};
    let path = socket_path(data_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&path)?;
    s.set_read_timeout(timeout)?;
    let mut line = serde_json::to_string(req).expect("request serialises");
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    std::io::BufReader::new(s).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
