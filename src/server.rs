//! Server lifecycle: wire the plugin layer into the core, bind the listener, accept connections,
//! shut down.

use crate::admin::Admin;
use crate::admin::plugins::PluginControl;
use crate::broker::Broker;
use crate::config::Config;
use crate::plugin::manager::PluginManager;
use crate::protocol::reply::{ErrorKind, ReplyError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info};

/// The shipped OAuth 2.0 backend, configured by `[auth_oauth2]`.
pub const OAUTH2_PLUGIN: &str = "warren_auth_backend_oauth2";

/// A running broker.
pub struct ServerHandle {
    /// The address the AMQP listener is bound to (with the real port when 0 was asked).
    pub amqp_addr: SocketAddr,
    pub broker: Arc<Broker>,
    /// The plugin layer wired into `broker`.
    pub plugins: Arc<PluginManager>,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

/// Starts a broker with `config` on the current tokio runtime.
pub async fn start(config: Config) -> std::io::Result<ServerHandle> {
    let addr = format!("{}:{}", config.amqp.bind, config.amqp.port);
    let data_dir = config.storage.data_dir.clone();
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
    let admin = Admin { broker: broker.clone(), plugins: Some(plugins.clone() as Arc<dyn PluginControl>) };
    crate::admin::control::start(admin, &data_dir)?;
    // First disk check before accepting anyone: a full disk blocks publishers from the start.
    broker.disk.start();
    broker.memory.start();
    let listener = TcpListener::bind(&addr).await?;
    let amqp_addr = listener.local_addr()?;
    info!(%amqp_addr, "started TCP listener for AMQP 0-9-1");
    let (stop, mut stopped) = watch::channel(false);
    let b = broker.clone();
    let accept = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(5);
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((socket, peer)) => {
                        backoff = Duration::from_millis(5);
                        tokio::spawn(crate::connection::serve(b.clone(), socket, peer));
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
    });
    Ok(ServerHandle { amqp_addr, broker, plugins, stop, accept })
}

impl ServerHandle {
    /// Stops listening and closes every connection with 320 CONNECTION_FORCED.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        let err = ReplyError::new(ErrorKind::ConnectionForced, "broker forced connection closure with reason 'shutdown'");
        for c in self.broker.connections.lock().values() {
            let _ = c.close.send(err.clone());
        }
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
