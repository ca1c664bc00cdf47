//! Server lifecycle: bind the listener, accept connections, shut down.

use crate::broker::Broker;
use crate::config::Config;
use crate::protocol::reply::{ErrorKind, ReplyError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info};

/// A running broker.
pub struct ServerHandle {
    /// The address the AMQP listener is bound to (with the real port when 0 was asked).
    pub amqp_addr: SocketAddr,
    pub broker: Arc<Broker>,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

/// Starts a broker with `config` on the current tokio runtime.
pub async fn start(config: Config) -> std::io::Result<ServerHandle> {
    let addr = format!("{}:{}", config.amqp.bind, config.amqp.port);
    let data_dir = config.storage.data_dir.clone();
    // Recovery first, as RabbitMQ: once the port accepts connections, every durable object and
    // message is back and the control socket answers.
    let broker = Broker::open(config).map_err(std::io::Error::other)?;
    let mut extensions: Vec<Arc<dyn crate::admin::Extension>> = Vec::new();
    if let Some(p) = broker.plugins.read().clone() {
        extensions.push(p);
    }
    crate::admin::control::start(broker.clone(), extensions, &data_dir)?;
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
    Ok(ServerHandle { amqp_addr, broker, stop, accept })
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
