//! RabbitMQ's topic permissions (`set_topic_permissions`, `rabbit_auth_backend_internal`'s
//! `check_topic_access`): per user, vhost and exchange, a write and a read pattern that the
//! routing key of a publish (write) or the binding key of a bind/unbind (read) on that topic
//! exchange must match. No row for the exchange: every key is allowed.
//!
//! As in RabbitMQ 3.10, `{username}` and `{vhost}` in a pattern stand for the user's name and
//! the vhost (inserted as they are, not escaped); AMQP 0-9-1 connections have no other
//! variables (`{client_id}` is MQTT's), so other `{...}` stay literal text. An empty pattern
//! means `^$`. Patterns are matched unanchored (`re:run`). Since a row belongs to one user and
//! one vhost, its patterns are expanded and compiled once, when set or loaded.
//!
//! Checks read an in-memory table; `any()` tells the publish path whether a check can refuse
//! at all, so a broker without topic permissions does no lookup per publish.

use super::Broker;
use super::access::AccessError;
use crate::auth_backend::Access;
use crate::store::TopicPermissionDef;
use parking_lot::RwLock;
use super::auth::pcre_compatible;
use regex::Regex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One row: the patterns as given, and compiled with the variables expanded (None: the
/// expanded pattern does not compile, e.g. a user name with regex syntax in it; refused).
#[derive(Debug)]
pub struct TopicPermission {
    pub write: String,
    pub read: String,
    write_re: Option<Regex>,
    read_re: Option<Regex>,
}

impl TopicPermission {
    fn new(user: &str, vhost: &str, write: &str, read: &str) -> TopicPermission {
        let compile = |p: &str| {
            let p = if p.is_empty() { "^$".to_string() } else { p.replace("{username}", user).replace("{vhost}", vhost) };
            Regex::new(&pcre_compatible(&p)).ok()
        };
        TopicPermission { write: write.into(), read: read.into(), write_re: compile(write), read_re: compile(read) }
    }

    fn allows(&self, access: Access, routing_key: &str) -> bool {
        let re = match access {
            Access::Write => &self.write_re,
            Access::Read => &self.read_re,
            Access::Configure => return false,
        };
        re.as_ref().is_some_and(|r| r.is_match(routing_key))
    }
}

/// A row as listed: (vhost, user, exchange, write, read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermissionRow {
    pub vhost: String,
    pub user: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

type Rows = HashMap<String, HashMap<String, BTreeMap<String, Arc<TopicPermission>>>>;

/// The topic permissions of every user: vhost → user → exchange → row.
#[derive(Default)]
pub struct TopicPermissions {
    rows: RwLock<Rows>,
    /// Whether any row exists (read on the publish path without a lock).
    any: AtomicBool,
}

impl TopicPermissions {
    /// Whether some topic permission exists (otherwise every check allows).
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// May `user` use `routing_key` on `exchange` of `vhost` with `access`?
    pub fn allows(&self, vhost: &str, user: &str, exchange: &str, routing_key: &str, access: Access) -> bool {
        let rows = self.rows.read();
        match rows.get(vhost).and_then(|u| u.get(user)).and_then(|x| x.get(exchange)) {
            None => true,
            Some(p) => p.allows(access, routing_key),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Rows)) {
        let mut rows = self.rows.write();
        f(&mut rows);
        rows.retain(|_, users| {
            users.retain(|_, xs| !xs.is_empty());
            !users.is_empty()
        });
        self.any.store(!rows.is_empty(), Ordering::Release);
    }

    pub(super) fn insert(&self, d: &TopicPermissionDef) {
        let p = Arc::new(TopicPermission::new(&d.user, &d.vhost, &d.write, &d.read));
        self.update(|rows| {
            rows.entry(d.vhost.clone()).or_default().entry(d.user.clone()).or_default().insert(d.exchange.clone(), p);
        });
    }

    fn remove(&self, vhost: &str, user: &str, exchange: Option<&str>) {
        self.update(|rows| {
            if let Some(xs) = rows.get_mut(vhost).and_then(|u| u.get_mut(user)) {
                match exchange {
                    Some(x) => {
                        xs.remove(x);
                    }
                    None => xs.clear(),
                }
            }
        });
    }

    /// Drops every row of `user` (`delete_user`).
    pub(super) fn remove_user(&self, user: &str) {
        self.update(|rows| {
            for users in rows.values_mut() {
                users.remove(user);
            }
        });
    }

    /// Drops every row of `vhost` (`delete_vhost`).
    pub(super) fn remove_vhost(&self, vhost: &str) {
        self.update(|rows| {
            rows.remove(vhost);
        });
    }

    /// Whether `user` has any topic permission in `vhost`.
    fn has(&self, vhost: &str, user: &str) -> bool {
        self.rows.read().get(vhost).is_some_and(|u| u.contains_key(user))
    }

    /// Every row, sorted by vhost, user and exchange.
    pub fn rows(&self) -> Vec<TopicPermissionRow> {
        let rows = self.rows.read();
        let mut out = Vec::new();
        for (vhost, users) in rows.iter() {
            for (user, xs) in users {
                for (exchange, p) in xs {
                    out.push(TopicPermissionRow {
                        vhost: vhost.clone(),
                        user: user.clone(),
                        exchange: exchange.clone(),
                        write: p.write.clone(),
                        read: p.read.clone(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.vhost, &a.user, &a.exchange).cmp(&(&b.vhost, &b.user, &b.exchange)));
        out
    }
}

impl Broker {
    /// `set_topic_permissions`: the patterns are checked (write, then read), then the user, then
    /// the vhost, as RabbitMQ does. The exchange need not exist. Open channels re-check from
    /// their next operation on.
    pub fn set_topic_permissions(&self, user: &str, vhost: &str, exchange: &str, write: &str, read: &str) -> Result<(), AccessError> {
        for p in [write, read] {
            check_pattern(p)?;
        }
        let _g = self.admin_lock.lock();
        self.check_user_and_vhost(user, vhost)?;
        let def = TopicPermissionDef { user: user.into(), vhost: vhost.into(), exchange: exchange.into(), write: write.into(), read: read.into() };
        self.write(|s| s.put_topic_permission(&def))?;
        self.topic_permissions.insert(&def);
        self.bump_auth_epoch();
        Ok(())
    }

    /// `clear_topic_permissions`: the user's topic permissions in the vhost, all or those of
    /// `exchange`. Returns whether the user had any in the vhost before.
    pub fn clear_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) -> Result<bool, AccessError> {
        let _g = self.admin_lock.lock();
        self.check_user_and_vhost(user, vhost)?;
        let had = self.topic_permissions.has(vhost, user);
        self.write(|s| s.delete_topic_permissions(user, vhost, exchange).map(|_| ()))?;
        self.topic_permissions.remove(vhost, user, exchange);
        self.bump_auth_epoch();
        Ok(had)
    }

    /// Every topic permission, sorted by vhost, user and exchange.
    pub fn topic_permissions(&self) -> Vec<TopicPermissionRow> {
        self.topic_permissions.rows()
    }

    /// Whether `user` has any topic permission in `vhost`.
    pub fn has_topic_permissions(&self, vhost: &str, user: &str) -> bool {
        self.topic_permissions.has(vhost, user)
    }
}

/// A topic permission pattern must compile (as RabbitMQ's `re:compile`).
fn check_pattern(p: &str) -> Result<(), AccessError> {
    let translated = pcre_compatible(p);
    match Regex::new(&translated) {
        Ok(_) => Ok(()),
        Err(e) => {
            let (why, at) = super::access::pcre_reason(&translated, &e);
            Err(AccessError::InvalidRegex(p.into(), why, at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(user: &str, vhost: &str, exchange: &str, write: &str, read: &str) -> TopicPermissionDef {
        TopicPermissionDef { user: user.into(), vhost: vhost.into(), exchange: exchange.into(), write: write.into(), read: read.into() }
    }

    #[test]
    fn rows_decide_per_user_vhost_and_exchange() {
        let t = TopicPermissions::default();
        assert!(!t.any());
        assert!(t.allows("/", "u", "amq.topic", "anything", Access::Write), "no row: allowed");
        t.insert(&def("u", "/", "amq.topic", "^a\\.", ""));
        assert!(t.any());
        assert!(t.allows("/", "u", "amq.topic", "a.b", Access::Write));
        assert!(!t.allows("/", "u", "amq.topic", "b.a", Access::Write));
        assert!(t.allows("/", "u", "amq.topic", "", Access::Read), "empty pattern is ^$");
        assert!(!t.allows("/", "u", "amq.topic", "a.b", Access::Read));
        assert!(t.allows("/", "u", "other", "b.a", Access::Write), "other exchanges are not restricted");
        assert!(t.allows("v", "u", "amq.topic", "b.a", Access::Write), "other vhosts neither");
        assert!(t.allows("/", "w", "amq.topic", "b.a", Access::Write), "nor other users");
        // unanchored, as re:run
        t.insert(&def("u", "/", "x", "mid", "mid"));
        assert!(t.allows("/", "u", "x", "a.mid.b", Access::Write));
        t.remove("/", "u", Some("amq.topic"));
        assert!(t.allows("/", "u", "amq.topic", "b.a", Access::Write));
        assert!(t.any());
        t.remove_user("u");
        assert!(!t.any());
        assert!(t.rows().is_empty());
    }

    #[test]
    fn username_and_vhost_are_expanded_other_variables_stay_literal() {
        let t = TopicPermissions::default();
        t.insert(&def("bob", "v1", "amq.topic", "^{username}\\.", "^{vhost}\\.|^{client_id}$"));
        assert!(t.allows("v1", "bob", "amq.topic", "bob.x", Access::Write));
        assert!(!t.allows("v1", "bob", "amq.topic", "alice.x", Access::Write));
        assert!(t.allows("v1", "bob", "amq.topic", "v1.x", Access::Read));
        assert!(t.allows("v1", "bob", "amq.topic", "{client_id}", Access::Read));
        assert!(!t.allows("v1", "bob", "amq.topic", "bob.x", Access::Read));
    }

    #[test]
    fn patterns_are_checked_as_pcre() {
        for p in ["^{username}", "a{,2}", "a{2", "}"] {
            assert!(check_pattern(p).is_ok(), "{p}");
        }
        assert!(matches!(check_pattern("("), Err(AccessError::InvalidRegex(p, why, 1)) if p == "(" && why == "missing )"));
    }
}
