//! The authentication/authorization boundary (RabbitMQ's `rabbit_authn_backend` and
//! `rabbit_authz_backend`).
//!
//! The broker asks the backends of `[auth] backends` in order at login: the first that accepts
//! the credentials wins (RabbitMQ's `auth_backends`) and answers every later check for that user
//! (vhost access at `connection.open`, resource access for each channel operation, topic access).
//! The internal users and permissions (`warrenctl add_user`, `set_permissions`) are one backend
//! behind this trait; others plug in at server start.
//!
//! Results are cached by the callers as RabbitMQ does: vhost access once per connection, the
//! publish path's write check per channel until access control changes (`Broker::auth_epoch`).

use std::net::SocketAddr;
use std::sync::Arc;

/// What an operation needs: RabbitMQ's configure, write and read permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Configure,
    Write,
    Read,
}

/// What a client presented at login.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub username: &'a str,
    /// The password, or a token sent in its place.
    pub password: &'a str,
    pub peer: SocketAddr,
}

/// A user accepted by a backend; checks for this user go to that backend.
#[derive(Clone)]
pub struct AuthUser {
    pub username: String,
    pub tags: Vec<String>,
    pub backend: Arc<dyn AuthBackend>,
}

impl std::fmt::Debug for AuthUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthUser").field("username", &self.username).field("tags", &self.tags).field("backend", &self.backend.name()).finish()
    }
}

/// The kind of a resource in a virtual host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Exchange,
    Queue,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Exchange => "exchange",
            ResourceKind::Queue => "queue",
        }
    }
}

/// One authentication and authorization backend.
pub trait AuthBackend: Send + Sync {
    /// The name used in `[auth] backends` and in logs.
    fn name(&self) -> &str;
    /// Checks credentials: the user (name and tags), or why they are refused (for the log only).
    fn login(self: Arc<Self>, c: &Credentials<'_>) -> Result<AuthUser, String>;
    /// Accepts `username` without a password: the name was taken from a client certificate the
    /// TLS layer verified (SASL EXTERNAL; RabbitMQ asks each backend with empty credentials).
    /// A backend that cannot vouch for a user this way refuses (the default).
    fn login_external(self: Arc<Self>, username: &str, _peer: SocketAddr) -> Result<AuthUser, String> {
        Err(format!("{}: user '{username}' - no certificate logins", self.name()))
    }
    /// May `user` open a connection to `vhost`?
    fn check_vhost(&self, user: &AuthUser, vhost: &str, peer: SocketAddr) -> bool;
    /// May `user` use resource `kind` `name` in `vhost` with `access`?
    fn check_resource(&self, user: &AuthUser, vhost: &str, kind: ResourceKind, name: &str, access: Access) -> bool;
    /// May `user` publish (`Write`) or bind (`Read`) with `routing_key` on topic exchange
    /// `exchange`?
    fn check_topic(&self, user: &AuthUser, vhost: &str, exchange: &str, routing_key: &str, access: Access) -> bool;
}

/// The `[auth] backends` chain.
#[derive(Clone)]
pub struct AuthChain {
    backends: Vec<Arc<dyn AuthBackend>>,
}

impl AuthChain {
    pub fn new(backends: Vec<Arc<dyn AuthBackend>>) -> AuthChain {
        AuthChain { backends }
    }

    /// The backends' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.backends.iter().map(|b| b.name().to_string()).collect()
    }

    /// The first backend that accepts `c` wins; `Err` holds every backend's refusal, in order.
    pub fn login(&self, c: &Credentials<'_>) -> Result<AuthUser, Vec<String>> {
        let mut refusals = Vec::new();
        for b in &self.backends {
            match b.clone().login(c) {
                Ok(u) => return Ok(u),
                Err(why) => refusals.push(why),
            }
        }
        Err(refusals)
    }

    /// SASL EXTERNAL: the first backend that accepts `username` (from a verified client
    /// certificate) without a password wins.
    pub fn login_external(&self, username: &str, peer: SocketAddr) -> Result<AuthUser, Vec<String>> {
        let mut refusals = Vec::new();
        for b in &self.backends {
            match b.clone().login_external(username, peer) {
                Ok(u) => return Ok(u),
                Err(why) => refusals.push(why),
            }
        }
        Err(refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts the names in `.1`, refuses others; allows every resource whose name starts with
    /// its own name.
    struct Fake(&'static str, &'static [&'static str]);

    impl AuthBackend for Fake {
        fn name(&self) -> &str {
            self.0
        }
        fn login(self: Arc<Self>, c: &Credentials<'_>) -> Result<AuthUser, String> {
            if self.1.contains(&c.username) {
                Ok(AuthUser { username: c.username.into(), tags: vec![self.0.into()], backend: self.clone() })
            } else {
                Err(format!("{} refuses {}", self.0, c.username))
            }
        }
        fn check_vhost(&self, _u: &AuthUser, _v: &str, _p: SocketAddr) -> bool {
            true
        }
        fn check_resource(&self, _u: &AuthUser, _v: &str, _k: ResourceKind, name: &str, _a: Access) -> bool {
            name.starts_with(self.0)
        }
        fn check_topic(&self, _u: &AuthUser, _v: &str, _x: &str, _rk: &str, _a: Access) -> bool {
            false
        }
    }

    #[test]
    fn first_backend_that_accepts_wins_and_answers_the_checks() {
        let chain = AuthChain::new(vec![Arc::new(Fake("one", &["bob"])), Arc::new(Fake("two", &["alice", "bob"]))]);
        assert_eq!(chain.names(), ["one", "two"]);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let c = |u| Credentials { username: u, password: "pw", peer };
        let bob = chain.login(&c("bob")).unwrap();
        assert_eq!(bob.tags, ["one"]);
        let alice = chain.login(&c("alice")).unwrap();
        assert_eq!((alice.tags.as_slice(), alice.backend.name()), (["two".to_string()].as_slice(), "two"));
        assert!(alice.backend.check_resource(&alice, "/", ResourceKind::Queue, "two-q", Access::Read));
        assert!(!alice.backend.check_resource(&alice, "/", ResourceKind::Queue, "one-q", Access::Read));
        assert_eq!(chain.login(&c("carol")).unwrap_err(), ["one refuses carol", "two refuses carol"]);
    }
}
