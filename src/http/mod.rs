//! The broker's HTTP listeners, for plugins that serve HTTP (the management API, prometheus).
//!
//! The core owns the socket (hyper, HTTP/1.1) and checks HTTP Basic credentials against the
//! auth backend chain with RabbitMQ's management tag rules ([`auth`]); what is served comes from
//! an [`HttpHandler`], a trait the plugin layer fills in at run time (a Wasm component of the
//! `http-handler` world). The core never imports the plugin layer.
//!
//! A listener is opened when such a plugin is enabled and closed when it is disabled
//! ([`HttpListener::open`], dropping the handle closes it).

pub mod auth;
mod listener;

pub use listener::HttpListener;

use crate::auth_backend::AuthUser;

/// One HTTP request, read completely.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// The path without the query, percent-encoding kept.
    pub path: String,
    /// The query without '?'.
    pub query: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// "ip:port" of the client.
    pub peer: String,
    /// The logged-in user, for paths the handler protects (see [`HttpHandler::protected`]).
    pub user: Option<AuthUser>,
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// RabbitMQ's error body `{"error": error, "reason": reason}`.
    pub fn error(status: u16, error: &str, reason: &str) -> HttpResponse {
        let body = serde_json::json!({"error": error, "reason": reason}).to_string().into_bytes();
        HttpResponse { status, headers: vec![("content-type".into(), "application/json".into())], body }
    }
}

/// What serves one HTTP listener. Called on a blocking thread; a handler that fails answers 500
/// itself (the Wasm host turns a trap into one).
pub trait HttpHandler: Send + Sync {
    /// The plugin's name, for logs.
    fn name(&self) -> &str;
    /// Path prefixes whose requests need a logged-in user with a management tag (RabbitMQ:
    /// everything under `/api/`); the listener checks them before `handle` is called.
    fn protected(&self) -> &[String];
    fn handle(&self, req: HttpRequest) -> HttpResponse;
}
