//! Warren: an AMQP 0-9-1 message broker.
pub mod config;
pub mod admin;
pub mod alarm;
pub mod auth_backend;
pub mod broker;
pub mod connection;
pub mod exchange_type;
pub mod http;
pub mod logging;
pub mod protocol;
pub mod plugin;
pub mod server;
pub mod store;
pub mod tls;
