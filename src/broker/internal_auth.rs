//! The internal users and permissions (`warrenctl add_user`, `set_permissions`) as an
//! authentication/authorization backend (RabbitMQ's `rabbit_auth_backend_internal`).

use super::Broker;
use super::auth::check_password;
use crate::auth_backend::{Access, AuthBackend, AuthUser, Credentials, Decision, ResourceKind};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

/// Names `[auth] backends` accepts for this backend.
pub const NAMES: [&str; 2] = ["internal", "rabbit_auth_backend_internal"];

pub struct InternalBackend {
    pub(super) broker: Weak<Broker>,
    /// The broker's topic permissions (held directly: the publish path asks `any()`).
    pub(super) topics: Arc<super::topic_permissions::TopicPermissions>,
}

impl AuthBackend for InternalBackend {
    fn name(&self) -> &str {
        "internal"
    }

    fn login(self: Arc<Self>, c: &Credentials<'_>) -> Result<AuthUser, String> {
        let refused = || format!("user '{}' - invalid credentials", c.username);
        let broker = self.broker.upgrade().ok_or_else(refused)?;
        match broker.user(c.username) {
            Some(u) if check_password(&u.password_hash, c.password) => {
                Ok(AuthUser::new(u.name, u.tags, self.clone()))
            }
            _ => Err(refused()),
        }
    }

    /// SASL EXTERNAL: a user that exists is accepted without a password (RabbitMQ's internal
    /// backend with empty credentials).
    fn login_external(self: Arc<Self>, username: &str, _peer: SocketAddr) -> Result<AuthUser, String> {
        let broker = self.broker.upgrade().ok_or_else(|| format!("user '{username}' - invalid credentials"))?;
        match broker.user(username) {
            Some(u) => Ok(AuthUser::new(u.name, u.tags, self.clone())),
            None => Err(format!("user '{username}' - invalid credentials")),
        }
    }

    fn check_vhost(&self, user: &AuthUser, vhost: &str, _peer: SocketAddr) -> Decision {
        Decision::from_bool(self.broker.upgrade().is_some_and(|b| b.permission(vhost, &user.username).is_some()))
    }

    fn check_resource(&self, user: &AuthUser, vhost: &str, _kind: ResourceKind, name: &str, access: Access) -> Decision {
        Decision::from_bool(
            self.broker.upgrade().and_then(|b| b.permission(vhost, &user.username)).is_some_and(|p| p.allows(access, name)),
        )
    }

    /// Only while some topic permission (`set_topic_permissions`) exists: without any, every
    /// routing key is allowed and the publish path skips the check.
    fn restricts_topics(&self) -> bool {
        self.topics.any()
    }

    /// RabbitMQ's `check_topic_access`: the user's row for the exchange decides; no row, allowed.
    fn check_topic(&self, user: &AuthUser, vhost: &str, exchange: &str, routing_key: &str, access: Access) -> Decision {
        Decision::from_bool(self.topics.allows(vhost, &user.username, exchange, routing_key, access))
    }
}
