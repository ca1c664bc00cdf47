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
    /// Opaque data the backend keeps about this login (RabbitMQ's `impl`, e.g. a token's
    /// claims), handed back with every check.
    pub state: Arc<[u8]>,
    /// When this login stops being valid, in milliseconds since the Unix epoch (a token's `exp`):
    /// from then on no check is answered from a cache.
    pub expires_at: Option<u64>,
}

impl AuthUser {
    /// A user whose login never expires and who carries no backend state.
    pub fn new(username: String, tags: Vec<String>, backend: Arc<dyn AuthBackend>) -> AuthUser {
        AuthUser { username, tags, backend, state: Arc::from(Vec::new()), expires_at: None }
    }

    /// Whether the login has expired at `now_ms` (milliseconds since the Unix epoch).
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|e| now_ms >= e)
    }

    /// Whether the login has expired now.
    pub fn expired(&self) -> bool {
        self.expires_at.is_some() && self.expired_at(now_millis())
    }
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl std::fmt::Debug for AuthUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthUser")
            .field("username", &self.username)
            .field("tags", &self.tags)
            .field("backend", &self.backend.name())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A backend's answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// The backend could not decide (e.g. an expired token, a failed plugin call): refused, and
    /// the text is added to the client's error as RabbitMQ does
    /// ("…, backend NAME returned an error: TEXT").
    Error(String),
}

impl Decision {
    pub fn from_bool(allowed: bool) -> Decision {
        if allowed { Decision::Allow } else { Decision::Deny }
    }

    pub fn allowed(&self) -> bool {
        *self == Decision::Allow
    }

    /// The client's error text for a refusal: `base`, plus the backend's error if there is one
    /// (RabbitMQ's `rabbit_access_control:check_access`).
    pub fn refusal_text(&self, base: String, backend: &str) -> String {
        match self {
            Decision::Error(e) => format!("{base}, backend {backend} returned an error: {e:?}"),
            _ => base,
        }
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

    /// `connection.update-secret`: the user with its new secret (name kept; tags, state and
    /// expiry may change), or why it is refused. Backends whose logins never expire (RabbitMQ's
    /// `state_can_expire() -> false`, the internal users) keep the user as it is.
    fn update_secret(&self, user: &AuthUser, _secret: &str) -> Result<AuthUser, String> {
        Ok(user.clone())
    }
    /// May `user` open a connection to `vhost`?
    fn check_vhost(&self, user: &AuthUser, vhost: &str, peer: SocketAddr) -> Decision;
    /// May `user` use resource `kind` `name` in `vhost` with `access`?
    fn check_resource(&self, user: &AuthUser, vhost: &str, kind: ResourceKind, name: &str, access: Access) -> Decision;
    /// Whether `check_topic` can ever refuse. A backend that allows every routing key says
    /// false, and the publish path then skips the check and its per-channel cache entirely
    /// (no lookup, no allocation per new routing key).
    fn restricts_topics(&self) -> bool {
        true
    }
    /// May `user` publish (`Write`) or bind (`Read`) with `routing_key` on topic exchange
    /// `exchange`?
    fn check_topic(&self, user: &AuthUser, vhost: &str, exchange: &str, routing_key: &str, access: Access) -> Decision;
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
                Ok(AuthUser::new(c.username.into(), vec![self.0.into()], self.clone()))
            } else {
                Err(format!("{} refuses {}", self.0, c.username))
            }
        }
        fn check_vhost(&self, _u: &AuthUser, _v: &str, _p: SocketAddr) -> Decision {
            Decision::Allow
        }
        fn check_resource(&self, _u: &AuthUser, _v: &str, _k: ResourceKind, name: &str, _a: Access) -> Decision {
            Decision::from_bool(name.starts_with(self.0))
        }
        fn check_topic(&self, _u: &AuthUser, _v: &str, _x: &str, _rk: &str, _a: Access) -> Decision {
            Decision::Deny
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
        assert!(alice.backend.check_resource(&alice, "/", ResourceKind::Queue, "two-q", Access::Read).allowed());
        assert!(!alice.backend.check_resource(&alice, "/", ResourceKind::Queue, "one-q", Access::Read).allowed());
        assert_eq!(chain.login(&c("carol")).unwrap_err(), ["one refuses carol", "two refuses carol"]);
    }
}
