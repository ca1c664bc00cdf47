//! Global runtime parameters (RabbitMQ's `global_parameters` of a definitions file): the ones
//! Warren acts on, `cluster_name` (shown by the management API and sent in connection.start)
//! and `internal_cluster_id` (made at first start, as RabbitMQ does). Stored in the store's
//! `v1.global_parameters` table; any other name is refused, never stored and ignored.

use super::Broker;
use crate::store::Store;
use serde_json::Value;

/// The global parameters Warren has.
pub const KNOWN: [&str; 2] = ["cluster_name", "internal_cluster_id"];

/// A refused global parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl Broker {
    /// The cluster name: the `cluster_name` global parameter, else the node name.
    pub fn cluster_name(&self) -> String {
        match self.global_parameters.read().get("cluster_name") {
            Some(Value::String(s)) => s.clone(),
            _ => crate::alarm::NODE_NAME.to_string(),
        }
    }

    /// Every global parameter, by name.
    pub fn global_parameters(&self) -> Vec<(String, Value)> {
        self.global_parameters.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Sets global parameter `name` (store first, then memory).
    pub fn set_global_parameter(&self, name: &str, value: Value) -> Result<(), Refused> {
        if !KNOWN.contains(&name) {
            return Err(Refused(format!("global parameter '{name}' is not supported by Warren (supported: {})", KNOWN.join(", "))));
        }
        if !value.is_string() {
            return Err(Refused(format!("{name} should be a string, actually was {value}")));
        }
        if let Some(store) = &self.store {
            store.put_global_parameter(name, &value).map_err(|e| Refused(e.to_string()))?;
        }
        self.global_parameters.write().insert(name.to_string(), value);
        Ok(())
    }

    /// Clears global parameter `name` (store first, then memory); false if it was not set.
    pub fn clear_global_parameter(&self, name: &str) -> Result<bool, Refused> {
        if !self.global_parameters.read().contains_key(name) {
            return Ok(false);
        }
        if let Some(store) = &self.store {
            store.delete_global_parameter(name).map_err(|e| Refused(e.to_string()))?;
        }
        Ok(self.global_parameters.write().remove(name).is_some())
    }

    /// At start: the stored global parameters, and an `internal_cluster_id` if there is none
    /// yet (RabbitMQ's form: `rabbitmq-cluster-id-` and 22 base64url characters).
    pub(super) fn recover_global_parameters(&self, stored: Vec<(String, Value)>, store: &Store) -> Result<(), crate::store::StoreError> {
        let mut g = self.global_parameters.write();
        g.extend(stored);
        if !g.contains_key("internal_cluster_id") {
            use base64::Engine as _;
            let bytes: [u8; 16] = rand::random();
            let id = Value::String(format!("rabbitmq-cluster-id-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)));
            store.put_global_parameter("internal_cluster_id", &id)?;
            g.insert("internal_cluster_id".into(), id);
        }
        Ok(())
    }
}
