//! Server lifecycle: wire the plugin layer into the core, bind the listeners (plain AMQP and
//! AMQPS), accept connections, close and bind them again (`warrenctl stop_app` / `start_app`
//! through [`Listeners`], the admin API's `AppControl`), shut down.

use crate::admin::Admin;
use crate::admin::app::AppControl;
use crate::admin::plugins::PluginControl;
use crate::broker::Broker;
use crate::config::Config;
use crate::connection::transport::Stream;
use crate::plugin::manager::PluginManager;
use crate::protocol::reply::{ErrorKind, ReplyError};
use std::net::SocketAddr;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info};

/// The shipped OAuth 2.0 backend, configured by `[auth_oauth2]`.
pub const OAUTH2_PLUGIN: &str = "warren_auth_backend_oauth2";

/// A running broker.
pub struct ServerHandle {
    /// The address the plain AMQP listener is bound to (with the real port when 0 was asked);
    /// the TLS listener's when `[amqp] tcp_listener = false`.
    pub amqp_addr: SocketAddr,
    /// The TLS (AMQPS) listener's address, with `[amqp.tls]`.
    pub amqps_addr: Option<SocketAddr>,
    /// The TLS configuration in force (reloaded when its files change), with `[amqp.tls]`.
    pub tls: Option<Arc<crate::tls::Tls>>,
    pub broker: Arc<Broker>,
    /// The plugin layer wired into `broker`.
    pub plugins: Arc<PluginManager>,
    /// The listeners (`stop_app` / `start_app`).
    pub listeners: Arc<Listeners>,
}

/// Starts a broker with `config` on the current tokio runtime.
pub async fn start(config: Config) -> std::io::Result<ServerHandle> {
    let addr = format!("{}:{}", config.amqp.bind, config.amqp.port);
    let data_dir = config.storage.data_dir.clone();
    // Configuration faults stop the start before anything is opened.
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    for m in &config.auth.mechanisms {
        if !crate::connection::MECHANISMS.contains(&m.as_str()) {
            return Err(bad(format!(
                "[auth] mechanisms: unknown SASL mechanism '{m}' (Warren has {})",
                crate::connection::MECHANISMS.join(", ")
            )));
        }
    }
    let tls = match &config.amqp.tls {
        Some(t) => Some(crate::tls::Tls::start(t).map_err(bad)?),
        None => None,
    };
    if !config.amqp.tcp_listener && tls.is_none() {
        return Err(bad("[amqp] tcp_listener = false needs an [amqp.tls] listener: the broker would accept no connections".into()));
    }
    // The plugin layer is wired in here: the core sees only its traits (exchange types registered
    // with the broker, `PluginControl` for the admin API).
    // `[auth_oauth2]` is the oauth2 plugin's configuration (RabbitMQ's `auth_oauth2.*`).
    let mut plugin_config = config.clone();
    let oauth2 = config.auth_oauth2.plugin_settings().map_err(std::io::Error::other)?;
    plugin_config.plugins.settings.entry(OAUTH2_PLUGIN.to_string()).or_default().extend(oauth2);
    let plugins = Arc::new(PluginManager::from_config(&plugin_config).map_err(std::io::Error::other)?);
    // The `[auth] backends` that are plugins, loaded (and their configuration checked) first: a
    // backend that cannot load stops the start with its reason.
    let auth_plugins = plugins
        .auth_backends(&config.auth.backends, &crate::broker::internal_auth::NAMES)
        .map_err(std::io::Error::other)?;
    // Recovery first, as RabbitMQ: once the port accepts connections, every durable object and
    // message is back and the control socket answers. Exchange types come before recovery, so
    // exchanges of plugin types come back with their type.
    let broker = Broker::open(config, &auth_plugins, |b| {
        plugins.start(b);
        Ok(())
    })
    .map_err(std::io::Error::other)?;
    let listeners = Arc::new(Listeners {
        broker: broker.clone(),
        plugins: plugins.clone(),
        tls: tls.clone(),
        rt: tokio::runtime::Handle::current(),
        targets: Mutex::new((broker.config.amqp.tcp_listener.then(|| addr.clone()), tls.as_ref().map(|t| format!("{}:{}", broker.config.amqp.bind, t.config.port)))),
        accepting: Mutex::new(None),
        lifecycle: Mutex::new(()),
    });
    let admin = Admin {
        broker: broker.clone(),
        plugins: Some(plugins.clone() as Arc<dyn PluginControl>),
        app: Some(listeners.clone() as Arc<dyn AppControl>),
    };
    crate::admin::control::start(admin, &data_dir)?;
    // First disk check before accepting anyone: a full disk blocks publishers from the start.
    broker.disk.start();
    broker.memory.start();
    let (tcp_addr, amqps_addr) = listeners.bind().await?;
    let amqp_addr = tcp_addr.or(amqps_addr).expect("one listener at least");
    Ok(ServerHandle { amqp_addr, amqps_addr, tls, broker, plugins, listeners })
}

/// The AMQP listeners (plain and TLS) and the plugins' HTTP listeners: bound at start, closed by
/// `stop_app` and at shutdown, bound again by `start_app` on the same ports (the
/// [`AppControl`] the admin API sees).
pub struct Listeners {
    broker: Arc<Broker>,
    plugins: Arc<PluginManager>,
    tls: Option<Arc<crate::tls::Tls>>,
    rt: tokio::runtime::Handle,
    /// Where the plain and the TLS listener bind: the config's addresses at first (port 0: any
    /// free one), then the addresses bound, so that `start_app` takes the same ports again.
    targets: Mutex<(Option<String>, Option<String>)>,
    /// The accept loops while the listeners are open, and how to stop them.
    accepting: Mutex<Option<(watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)>>,
    /// Serialises `stop_app` and `start_app`.
    lifecycle: Mutex<()>,
}

impl Listeners {
    /// Binds the AMQP listeners and starts accepting; returns the plain and the TLS address.
    async fn bind(&self) -> std::io::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
        let (tcp_target, tls_target) = self.targets.lock().clone();
        let (stop, stopped) = watch::channel(false);
        // Bound before any accept loop starts, so a failure leaves nothing open.
        let tcp = match &tcp_target {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let amqps = match (&tls_target, &self.tls) {
            (Some(a), Some(t)) => Some((TcpListener::bind(a).await?, t.clone())),
            _ => None,
        };
        let mut tasks = Vec::new();
        let mut tcp_addr = None;
        if let Some(listener) = tcp {
            let a = listener.local_addr()?;
            info!(amqp_addr = %a, "started TCP listener for AMQP 0-9-1");
            tcp_addr = Some(a);
            tasks.push(self.rt.spawn(accept_loop(listener, self.broker.clone(), None, stopped.clone())));
        }
        let mut amqps_addr = None;
        if let Some((listener, t)) = amqps {
            let a = listener.local_addr()?;
            info!(amqps_addr = %a, "started TLS (SSL) listener for AMQP 0-9-1");
            amqps_addr = Some(a);
            tasks.push(self.rt.spawn(accept_loop(listener, self.broker.clone(), Some(t), stopped.clone())));
        }
        *self.targets.lock() = (tcp_addr.map(|a| a.to_string()), amqps_addr.map(|a| a.to_string()));
        *self.broker.listeners.lock() = [tcp_addr.map(|a| ("amqp", a)), amqps_addr.map(|a| ("amqp/ssl", a))].into_iter().flatten().collect();
        *self.accepting.lock() = Some((stop, tasks));
        Ok((tcp_addr, amqps_addr))
    }

    /// Stops accepting: once this returns, the AMQP ports are closed.
    async fn close(&self) {
        let Some((stop, tasks)) = self.accepting.lock().take() else { return };
        let _ = stop.send(true);
        for t in tasks {
            let _ = t.await;
        }
        self.broker.listeners.lock().clear();
    }

    /// Sends 320 CONNECTION_FORCED "shutdown" to every client connection, as RabbitMQ does when
    /// it stops; returns how many there were.
    fn close_connections(&self) -> usize {
        let err = ReplyError::new(ErrorKind::ConnectionForced, crate::broker::SHUTDOWN_REASON);
        let conns = self.broker.connections.lock();
        for c in conns.values() {
            let _ = c.close.send(err.clone());
        }
        conns.len()
    }
}

impl AppControl for Listeners {
    fn stop(&self) {
        let _g = self.lifecycle.lock();
        if !self.broker.app_running.swap(false, Ordering::AcqRel) {
            return;
        }
        self.rt.block_on(self.close());
        self.plugins.close_http_listeners();
        self.close_connections();
        // Give clients a moment to answer close-ok (a connection that does not is dropped when
        // its close times out).
        for _ in 0..100 {
            if self.broker.connections.lock().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        info!("stopped the rabbit application: listeners closed, connections closed");
    }

    fn start(&self) -> Result<(), String> {
        let _g = self.lifecycle.lock();
        if self.broker.app_running.load(Ordering::Acquire) {
            return Ok(());
        }
        // Running first: the plugin layer opens HTTP listeners only for a running app.
        self.broker.app_running.store(true, Ordering::Release);
        let errors = match self.rt.block_on(self.bind()) {
            Ok(_) => self.plugins.open_http_listeners(),
            Err(e) => vec![format!("cannot start the listeners: {e}")],
        };
        if !errors.is_empty() {
            // All or nothing, as RabbitMQ's app start: the app stays stopped.
            self.broker.app_running.store(false, Ordering::Release);
            self.plugins.close_http_listeners();
            self.rt.block_on(self.close());
            self.close_connections();
            return Err(errors.join("\n"));
        }
        info!("started the rabbit application");
        Ok(())
    }
}

/// Accepts connections until the server stops. With `tls`, each connection's TLS handshake
/// runs in its own task (bounded by the AMQP handshake timeout), never in the accept loop.
async fn accept_loop(listener: TcpListener, broker: Arc<Broker>, tls: Option<Arc<crate::tls::Tls>>, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((socket, peer)) => {
                    backoff = Duration::from_millis(5);
                    match &tls {
                        None => {
                            tokio::spawn(crate::connection::serve(broker.clone(), Stream::Tcp(socket), peer));
                        }
                        Some(tls) => {
                            tokio::spawn(tls_handshake(broker.clone(), tls.clone(), socket, peer));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, then accept again.
                    error!("accept failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            _ = stopped.changed() => break,
        }
    }
}

async fn tls_handshake(broker: Arc<Broker>, tls: Arc<crate::tls::Tls>, socket: tokio::net::TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let timeout = Duration::from_millis(broker.config.amqp.handshake_timeout_ms);
    match tokio::time::timeout(timeout, tls.acceptor().accept(socket)).await {
        Ok(Ok(s)) => {
            let info = tls.peer(s.get_ref().1);
            crate::connection::serve(broker, Stream::Tls(Box::new(s), info), peer).await;
        }
        // RabbitMQ logs failed TLS handshakes at error level with the peer.
        Ok(Err(e)) => error!(peer = %peer, "TLS server: In state handshake: {e}"),
        Err(_) => error!(peer = %peer, "TLS server: handshake timed out"),
    }
}

impl ServerHandle {
    /// Stops listening and closes every connection with 320 CONNECTION_FORCED.
    pub async fn shutdown(self) {
        self.listeners.close().await;
        self.plugins.close_http_listeners();
        self.listeners.close_connections();
        // Give clients a moment to answer close-ok.
        for _ in 0..50 {
            if self.broker.connections.lock().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!("stopped");
    }
}
