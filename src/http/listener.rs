//! One HTTP/1.1 listener (hyper) serving one [`HttpHandler`].

use super::{HttpHandler, HttpRequest, HttpResponse};
use crate::broker::Broker;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{error, info};

/// Largest request body accepted (a definitions file of a large broker fits).
pub const MAX_BODY: usize = 64 << 20;

/// An open HTTP listener; dropping it (or [`HttpListener::close`]) stops accepting and closes
/// idle keep-alive connections.
pub struct HttpListener {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// A second descriptor of the listening socket: shutting it down on drop stops the listening
    /// at once (new connections are refused before `disable` returns), not when the accept task
    /// next runs.
    socket: std::net::TcpListener,
    handler: Arc<ArcSwap<Arc<dyn HttpHandler>>>,
}

impl HttpListener {
    /// Binds `bind:port` now (so a port in use is reported to whoever enables the plugin) and
    /// serves it on `rt`.
    pub fn open(
        rt: &tokio::runtime::Handle,
        bind: &str,
        port: u16,
        broker: Weak<Broker>,
        handler: Arc<dyn HttpHandler>,
    ) -> std::io::Result<HttpListener> {
        let std_listener = std::net::TcpListener::bind((bind, port))
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {bind}:{port}: {e}")))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let socket = std_listener.try_clone()?;
        let (stop, stopped) = watch::channel(false);
        let name = handler.name().to_string();
        let _guard = rt.enter();
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        info!(plugin = %name, %addr, "started HTTP listener");
        let handler = Arc::new(ArcSwap::from_pointee(handler));
        rt.spawn(accept(listener, broker, handler.clone(), stopped));
        Ok(HttpListener { addr, stop, socket, handler })
    }

    /// Serves the next requests with `handler` (hot reload of the plugin); requests under way
    /// finish with the old one.
    pub fn set_handler(&self, handler: Arc<dyn HttpHandler>) {
        self.handler.store(Arc::new(handler));
    }

    pub fn close(self) {}
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // On Linux, shutdown of a listening socket stops it listening (pending and new
        // connection attempts are refused); the accept task then ends on `stop`.
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on a descriptor this listener owns.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR) };
        info!(addr = %self.addr, "stopped HTTP listener");
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    broker: Weak<Broker>,
    handler: Arc<ArcSwap<Arc<dyn HttpHandler>>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((socket, peer)) => {
                    let local = socket.local_addr().unwrap_or(peer);
                    let (b, h, mut st) = (broker.clone(), handler.clone(), stopped.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| serve(b.clone(), h.load_full().as_ref().clone(), peer, local, req));
                        let conn = http1::Builder::new().serve_connection(TokioIo::new(socket), svc);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = st.changed() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    });
                }
                Err(_) if *stopped.borrow() => break,
                Err(e) => {
                    error!("HTTP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stopped.changed() => break,
        }
    }
}

async fn serve(
    broker: Weak<Broker>,
    handler: Arc<dyn HttpHandler>,
    peer: SocketAddr,
    local: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let resp = match read(req, peer).await {
        Err(r) => r,
        Ok((mut req, auth)) => match broker.upgrade() {
            None => HttpResponse::error(503, "unavailable", "the broker is stopping"),
            Some(broker) => {
                let protected = handler.protected().iter().any(|p| req.path.starts_with(p.as_str()));
                let login = if protected { super::auth::login(&broker, auth.as_deref(), peer, local).map(Some) } else { Ok(None) };
                match login {
                    Err(r) => r,
                    Ok(user) => {
                        req.user = user;
                        let h = handler.clone();
                        tokio::task::spawn_blocking(move || h.handle(req))
                            .await
                            .unwrap_or_else(|_| HttpResponse::error(500, "internal_error", "the handler failed"))
                    }
                }
            }
        },
    };
    let mut b = hyper::Response::builder().status(resp.status);
    let mut has_type = false;
    for (k, v) in &resp.headers {
        has_type |= k.eq_ignore_ascii_case("content-type");
        b = b.header(k.as_str(), v.as_str());
    }
    if !has_type && !resp.body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    Ok(b.body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| hyper::Response::builder().status(500).body(Full::new(Bytes::new())).expect("static response")))
}

/// The request, read completely, and its `authorization` header.
async fn read(req: hyper::Request<Incoming>, peer: SocketAddr) -> Result<(HttpRequest, Option<String>), HttpResponse> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return Err(HttpResponse::error(413, "bad_request", "request body too large or unreadable")),
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let auth = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone());
    Ok((
        HttpRequest {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers,
            body,
            peer: peer.to_string(),
            user: None,
        },
        auth,
    ))
}
