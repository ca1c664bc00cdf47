//! The channel's caches of allowed permission checks: RabbitMQ's `permission_cache` and
//! `topic_permission_cache` (the last 12 allowed checks of each kind, per channel), so that the
//! auth backend (possibly a Wasm plugin) is not asked again for every operation. Both are
//! emptied when the stamp changes: access control changed (`Broker::auth_epoch`) or the
//! connection's secret was updated; while the login is expired nothing is cached (RabbitMQ
//! clears the caches of users whose backend state can expire).

use crate::auth_backend::{Access, ResourceKind};
use std::collections::VecDeque;

/// Entries kept per cache (RabbitMQ's `?MAX_PERMISSION_CACHE_SIZE`).
const SIZE: usize = 12;

#[derive(Default)]
pub(super) struct AuthzCache {
    stamp: (u64, u64),
    resources: VecDeque<(ResourceKind, Access, String)>,
    /// (permission, exchange, routing key)
    topics: VecDeque<(Access, String, String)>,
}

impl AuthzCache {
    /// Whether the cache may answer under `stamp` (None: the login has expired); empties it when
    /// the stamp changed.
    fn usable(&mut self, stamp: Option<(u64, u64)>) -> bool {
        match stamp {
            None => {
                self.resources.clear();
                self.topics.clear();
                false
            }
            Some(s) => {
                if s != self.stamp {
                    self.stamp = s;
                    self.resources.clear();
                    self.topics.clear();
                }
                true
            }
        }
    }

    pub(super) fn has_resource(&mut self, stamp: Option<(u64, u64)>, kind: ResourceKind, access: Access, name: &str) -> bool {
        self.usable(stamp) && self.resources.iter().any(|(k, a, n)| *k == kind && *a == access && n == name)
    }

    pub(super) fn add_resource(&mut self, stamp: Option<(u64, u64)>, kind: ResourceKind, access: Access, name: &str) {
        if self.usable(stamp) {
            if self.resources.len() == SIZE {
                self.resources.pop_back();
            }
            self.resources.push_front((kind, access, name.to_string()));
        }
    }

    pub(super) fn has_topic(&mut self, stamp: Option<(u64, u64)>, access: Access, exchange: &str, routing_key: &str) -> bool {
        self.usable(stamp) && self.topics.iter().any(|(a, x, k)| *a == access && x == exchange && k == routing_key)
    }

    pub(super) fn add_topic(&mut self, stamp: Option<(u64, u64)>, access: Access, exchange: &str, routing_key: &str) {
        if self.usable(stamp) {
            if self.topics.len() == SIZE {
                self.topics.pop_back();
            }
            self.topics.push_front((access, exchange.to_string(), routing_key.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_twelve_and_forgets_on_a_new_stamp_or_expiry() {
        let mut c = AuthzCache::default();
        let s = Some((1, 0));
        for i in 0..13 {
            c.add_resource(s, ResourceKind::Queue, Access::Read, &format!("q{i}"));
        }
        assert!(!c.has_resource(s, ResourceKind::Queue, Access::Read, "q0"));
        assert!(c.has_resource(s, ResourceKind::Queue, Access::Read, "q12"));
        assert!(!c.has_resource(s, ResourceKind::Queue, Access::Write, "q12"));
        assert!(!c.has_resource(s, ResourceKind::Exchange, Access::Read, "q12"));
        c.add_topic(s, Access::Write, "amq.topic", "a.b");
        assert!(c.has_topic(s, Access::Write, "amq.topic", "a.b"));
        assert!(!c.has_topic(s, Access::Read, "amq.topic", "a.b"));
        // a secret update (or a permission change) empties both
        assert!(!c.has_resource(Some((1, 1)), ResourceKind::Queue, Access::Read, "q12"));
        assert!(!c.has_topic(Some((1, 1)), Access::Write, "amq.topic", "a.b"));
        // an expired login is never answered from the cache, nor cached
        c.add_topic(None, Access::Write, "amq.topic", "a.b");
        assert!(!c.has_topic(None, Access::Write, "amq.topic", "a.b"));
        assert!(!c.has_topic(Some((1, 1)), Access::Write, "amq.topic", "a.b"));
    }
}
