//! Warren: an AMQP 0-9-1 message broker.
pub mod config;
pub mod exchange_type;
pub mod plugin;
pub mod server;
