//! Server lifecycle: bind the listener, accept connections, shut down.
use crate::config::Config;
use std::net::SocketAddr;

/// A running broker. Dropping it does not stop the broker; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    /// The address the AMQP listener is bound to (with the real port when 0 was asked).
    pub amqp_addr: SocketAddr,
}

/// Starts a broker with `config` on the current tokio runtime.
pub async fn start(config: Config) -> std::io::Result<ServerHandle> {
    let _ = config;
    unimplemented!("core in progress")
}

impl ServerHandle {
    /// Closes every connection with 320 CONNECTION_FORCED and stops listening.
    pub async fn shutdown(self) {}
}
