//! Durable definitions: plain serde structs, stored as JSON values in the
//! `v1.*` definition tables. Definition writes are rare, so a self-describing,
//! extensible encoding (new fields get `#[serde(default)]`) beats compactness.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostDef {
    pub name: String,
    /// `add_vhost --description` / the management API's `description`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The vhost's tags (metadata only, as RabbitMQ's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// `set_vhost_limits`: `max-connections`, `max-queues` (negative: unlimited).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, i64>,
    /// `set_policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyDef>,
    /// `set_operator_policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_policies: Vec<PolicyDef>,
}

/// A policy or operator policy of a vhost (validated before it is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub name: String,
    pub pattern: String,
    /// `queues`, `exchanges` or `all`.
    pub apply_to: String,
    pub priority: i64,
    /// The definition, keys sorted (`{"max-length":5}`).
    pub definition: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDef {
    pub name: String,
    /// RabbitMQ's format: base64(salt(4 bytes) ++ sha256(salt ++ password)).
    pub password_hash: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// `set_user_limits`: `max-connections`, `max-channels` (negative: unlimited).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// `set_topic_permissions`: the write and read patterns of a user on one exchange of a vhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermissionDef {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub vhost: String,
    pub name: String,
    /// Exchange type name ("direct", "topic", a plugin's type, ...).
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    /// AMQP-encoded field table, opaque to the store.
    #[serde(default)]
    pub arguments: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDef {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    /// AMQP-encoded field table, opaque to the store.
    #[serde(default)]
    pub arguments: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BindingDef {
    pub vhost: String,
    /// Source exchange name.
    pub source: String,
    /// Destination queue or exchange name (see `destination_is_exchange`).
    pub destination: String,
    pub destination_is_exchange: bool,
    pub routing_key: String,
    /// AMQP-encoded field table, opaque to the store (part of the binding's identity).
    #[serde(default)]
    pub arguments: Vec<u8>,
}

impl BindingDef {
    /// The binding's identity as a table key: every field, length-prefixed,
    /// so that two bindings differing in any field never collide.
    pub(crate) fn key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            24 + self.vhost.len()
                + self.source.len()
                + self.destination.len()
                + self.routing_key.len()
                + self.arguments.len(),
        );
        for part in [
            self.vhost.as_bytes(),
            self.source.as_bytes(),
            &[self.destination_is_exchange as u8][..],
            self.destination.as_bytes(),
            self.routing_key.as_bytes(),
            &self.arguments[..],
        ] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }
}

/// A durable queue as stored: its definition and the store-assigned id under
/// which its messages are kept. The id is stable across restarts and is never
/// reused, even after the queue is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    pub queue_id: u64,
    pub def: QueueDef,
}

/// Everything `Store::load_definitions` returns, each list in key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Definitions {
    pub vhosts: Vec<VhostDef>,
    pub users: Vec<UserDef>,
    pub permissions: Vec<PermissionDef>,
    pub topic_permissions: Vec<TopicPermissionDef>,
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueRecord>,
    pub bindings: Vec<BindingDef>,
    /// Global parameters: (name, JSON value).
    pub global_parameters: Vec<(String, serde_json::Value)>,
}
