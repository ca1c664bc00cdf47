//! Users, vhosts and permissions as operators change them (`warrenctl add_user`, `set_permissions`,
//! `delete_vhost`, ...). Every change is committed to the store (durably) before it is applied in
//! memory and before the call returns; it then takes effect live:
//! - new connections authenticate against the new users and permissions;
//! - open channels re-check permissions on their next operation (the auth epoch changes);
//! - deleting a user or a vhost closes its connections with 320 CONNECTION_FORCED.

use super::auth::{self, Permission, User};
use super::{Broker, Vhost};
use crate::protocol::reply::{ErrorKind, ReplyError};
use crate::store::{PermissionDef, Store, StoreError, UserDef, VhostDef};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Why an access-control change was refused. The admin layer turns these into rabbitmqctl's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    UserExists(String),
    NoSuchUser(String),
    NoSuchVhost(String),
    /// (pattern, reason, offset) of the first invalid permission pattern, as Erlang's `re`
    /// reports them (`{'missing )', 1}`).
    InvalidRegex(String, String, usize),
    Store(String),
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::UserExists(u) => write!(f, "User \"{u}\" already exists"),
            AccessError::NoSuchUser(u) => write!(f, "User \"{u}\" does not exist"),
            AccessError::NoSuchVhost(v) => write!(f, "Virtual host '{v}' does not exist"),
            AccessError::InvalidRegex(p, why, _) => write!(f, "regular expression '{p}' is invalid: {why}"),
            AccessError::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> AccessError {
        tracing::error!("store: {e}");
        AccessError::Store(e.to_string())
    }
}

pub(super) fn user_def(u: &User) -> UserDef {
    UserDef { name: u.name.clone(), password_hash: u.password_hash.clone(), tags: u.tags.clone(), limits: u.limits.clone() }
}

impl Broker {
    /// Changes whenever users, permissions or vhosts change; channels compare it to re-check
    /// permission results they cached.
    pub fn auth_epoch(&self) -> u64 {
        self.auth_epoch.load(Ordering::Acquire)
    }

    pub(super) fn bump_auth_epoch(&self) {
        self.auth_epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn write(&self, f: impl FnOnce(&Store) -> Result<(), StoreError>) -> Result<(), AccessError> {
        match &self.store {
            Some(s) => Ok(f(s)?),
            None => Ok(()),
        }
    }

    /// All users, sorted by name.
    pub fn users(&self) -> Vec<User> {
        let mut v: Vec<User> = self.users.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// All permissions as (vhost, user, permission), sorted by vhost then user.
    pub fn permissions(&self) -> Vec<(String, String, Arc<Permission>)> {
        let mut v: Vec<_> = self.permissions.read().iter().map(|((vh, u), p)| (vh.clone(), u.clone(), p.clone())).collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    /// Checks a password (false for unknown users and users whose password was cleared).
    pub fn authenticate(&self, user: &str, password: &str) -> bool {
        self.users.read().get(user).is_some_and(|u| auth::check_password(&u.password_hash, password))
    }

    /// `add_user`: a new user without tags or permissions.
    pub fn create_user(&self, name: &str, password: &str) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        if self.users.read().contains_key(name) {
            return Err(AccessError::UserExists(name.into()));
        }
        let u = User { name: name.into(), password_hash: auth::hash_password(password), tags: Vec::new(), limits: Default::default() };
        self.write(|s| s.put_user(&user_def(&u)))?;
        self.users.write().insert(name.into(), u);
        self.bump_auth_epoch();
        Ok(())
    }

    /// `change_password` (Some) / `clear_password` (None: password logins fail from now on).
    pub fn set_password(&self, name: &str, password: Option<&str>) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        let mut u = self.user(name).ok_or_else(|| AccessError::NoSuchUser(name.into()))?;
        u.password_hash = password.map(auth::hash_password).unwrap_or_default();
        self.write(|s| s.put_user(&user_def(&u)))?;
        self.users.write().insert(name.into(), u);
        Ok(())
    }

    /// Creates or replaces user `name` with a stored password hash (RabbitMQ's format; empty: no
    /// password login) and tags, keeping its limits (the management API's `PUT /api/users/NAME`
    /// and definitions import). Returns whether the user was created.
    pub fn put_user(&self, name: &str, password_hash: String, tags: Vec<String>) -> Result<bool, AccessError> {
        let _g = self.admin_lock.lock();
        let old = self.user(name);
        let created = old.is_none();
        let limits = old.map(|u| u.limits).unwrap_or_default();
        let u = User { name: name.into(), password_hash, tags, limits };
        self.write(|s| s.put_user(&user_def(&u)))?;
        self.users.write().insert(name.into(), u);
        self.bump_auth_epoch();
        Ok(created)
    }

    /// `set_user_tags`: replaces the user's tags.
    pub fn set_user_tags(&self, name: &str, tags: Vec<String>) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        let mut u = self.user(name).ok_or_else(|| AccessError::NoSuchUser(name.into()))?;
        u.tags = tags;
        self.write(|s| s.put_user(&user_def(&u)))?;
        self.users.write().insert(name.into(), u);
        Ok(())
    }

    /// `delete_user`: removes the user and its permissions, and closes its connections.
    pub fn delete_user(&self, name: &str) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        if !self.users.read().contains_key(name) {
            return Err(AccessError::NoSuchUser(name.into()));
        }
        // The store deletes the user's permissions in the same transaction.
        self.write(|s| s.delete_user(name).map(|_| ()))?;
        self.users.write().remove(name);
        self.permissions.write().retain(|(_, u), _| u != name);
        self.topic_permissions.remove_user(name);
        self.bump_auth_epoch();
        self.close_connections(|c| c.user == name, &format!("user '{name}' is deleted"));
        Ok(())
    }

    /// `add_vhost`: creates the vhost (with its `amq.*` exchanges); an existing one is left as it
    /// is. Returns whether it was created.
    pub fn create_vhost(&self, name: &str) -> Result<bool, AccessError> {
        let _g = self.admin_lock.lock();
        if self.vhost(name).is_some() {
            return Ok(false);
        }
        self.write(|s| s.put_vhost(&VhostDef { name: name.into(), ..Default::default() }))?;
        self.add_vhost(name);
        self.bump_auth_epoch();
        Ok(true)
    }

    /// Sets a vhost's description and tags (`None`: unchanged).
    pub fn set_vhost_metadata(&self, name: &str, description: Option<String>, tags: Option<Vec<String>>) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        let vh = self.vhost(name).ok_or_else(|| AccessError::NoSuchVhost(name.into()))?;
        let mut meta = vh.metadata.read().clone();
        if let Some(d) = description {
            meta.description = d;
        }
        if let Some(t) = tags {
            meta.tags = t;
        }
        if meta == *vh.metadata.read() {
            return Ok(());
        }
        self.write(|s| s.put_vhost(&crate::store::definitions::VhostDef { description: meta.description.clone(), tags: meta.tags.clone(), ..vh.def() }))?;
        *vh.metadata.write() = meta;
        Ok(())
    }

    /// `delete_vhost`: deletes its queues (with their stored messages), exchanges, bindings and
    /// permissions, and closes its connections.
    pub fn delete_vhost(&self, name: &str) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        let Some(vh) = self.vhosts.write().remove(name) else {
            return Err(AccessError::NoSuchVhost(name.into()));
        };
        // From here on the detached vhost writes nothing more to the store, so the cascading
        // delete below leaves no records behind.
        vh.deleted.store(true, Ordering::Release);
        self.permissions.write().retain(|(v, _), _| v != name);
        self.topic_permissions.remove_vhost(name);
        self.bump_auth_epoch();
        drop_contents(&vh);
        self.close_connections(|c| c.vhost == name, &format!("vhost '{name}' is deleted"));
        // One transaction: the vhost, its exchanges, queues, messages, bindings and permissions.
        self.write(|s| s.delete_vhost(name).map(|_| ()))?;
        Ok(())
    }

    /// `set_permissions`: patterns are checked (in the order configure, write, read), then the user,
    /// then the vhost, as RabbitMQ does.
    pub fn set_permissions(&self, user: &str, vhost: &str, configure: &str, write: &str, read: &str) -> Result<(), AccessError> {
        for p in [configure, write, read] {
            let translated = auth::pcre_compatible(p);
            if let Err(e) = regex::Regex::new(&translated) {
                let (why, at) = pcre_reason(&translated, &e);
                return Err(AccessError::InvalidRegex(p.into(), why, at));
            }
        }
        let perm = Permission::new(configure, write, read).map_err(|e| AccessError::InvalidRegex(configure.into(), e.to_string(), 0))?;
        let _g = self.admin_lock.lock();
        self.check_user_and_vhost(user, vhost)?;
        let def = PermissionDef {
            user: user.into(),
            vhost: vhost.into(),
            configure: configure.into(),
            write: write.into(),
            read: read.into(),
        };
        self.write(|s| s.put_permission(&def))?;
        self.set_permission(vhost, user, perm);
        self.bump_auth_epoch();
        Ok(())
    }

    /// `clear_permissions`: the user loses access to the vhost (open channels: from their next
    /// operation on; open connections stay, as in RabbitMQ).
    pub fn clear_permissions(&self, user: &str, vhost: &str) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        self.check_user_and_vhost(user, vhost)?;
        self.write(|s| s.delete_permission(user, vhost).map(|_| ()))?;
        self.permissions.write().remove(&(vhost.to_owned(), user.to_owned()));
        self.bump_auth_epoch();
        Ok(())
    }

    pub(super) fn check_user_and_vhost(&self, user: &str, vhost: &str) -> Result<(), AccessError> {
        if !self.users.read().contains_key(user) {
            return Err(AccessError::NoSuchUser(user.into()));
        }
        if self.vhost(vhost).is_none() {
            return Err(AccessError::NoSuchVhost(vhost.into()));
        }
        Ok(())
    }

    /// Sends 320 CONNECTION_FORCED with `reason` to every connection `which` selects.
    fn close_connections(&self, which: impl Fn(&super::ConnectionEntry) -> bool, reason: &str) -> usize {
        let conns = self.connections.lock();
        let mut n = 0;
        for c in conns.values().filter(|c| which(c)) {
            let _ = c.close.send(ReplyError::new(ErrorKind::ConnectionForced, reason));
            n += 1;
        }
        n
    }
}

/// Deletes a detached vhost's queues and exchanges in memory: consumers are cancelled, messages
/// dropped (their store records go with the vhost's cascading delete).
fn drop_contents(vh: &Vhost) {
    let queues: Vec<_> = {
        let _moving = vh.retired.moving();
        let queues: Vec<_> = vh.queues.write().drain().map(|(_, q)| q).inspect(|q| q.flag_deleted()).collect();
        for q in &queues {
            q.retire(&vh.retired);
        }
        queues
    };
    super::counters::add(&vh.counters.queues_deleted, queues.len() as u64);
    for q in queues {
        q.mark_deleted();
    }
    let exchanges: Vec<_> = vh.exchanges.write().drain().map(|(_, x)| x).collect();
    for x in exchanges {
        x.mark_deleted();
    }
}

/// Why `pattern` does not compile, as Erlang's `re` (PCRE) words it, and the byte offset it
/// names (`{'missing )', 1}` for "("): the common syntax errors are mapped, others keep the regex
/// crate's one-line reason.
pub(super) fn pcre_reason(pattern: &str, e: &regex::Error) -> (String, usize) {
    use regex_syntax::ast::ErrorKind as K;
    if let Err(ast) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
        let at = ast.span().start.offset;
        let mapped = match ast.kind() {
            K::GroupUnclosed => Some(("missing )", pattern.len())),
            K::GroupUnopened => Some(("unmatched parentheses", at)),
            K::ClassUnclosed => Some(("missing terminating ] for character class", pattern.len())),
            K::RepetitionMissing => Some(("nothing to repeat", at)),
            K::EscapeUnexpectedEof => Some(("\\ at end of pattern", pattern.len())),
            _ => None,
        };
        if let Some((why, at)) = mapped {
            return (why.to_string(), at);
        }
        return (regex_reason(e), at);
    }
    (regex_reason(e), 0)
}

/// A short reason for an invalid pattern: the regex crate's message is multi-line (pattern,
/// caret, "error: ..."); keep the last.
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s.lines().rev().find_map(|l| l.trim().strip_prefix("error: ")).unwrap_or(s.as_str()).to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn broker() -> Arc<Broker> {
        let dir = std::env::temp_dir();
        // Stand-ins for the standard types: these tests need the amq.* exchanges to exist, not route.
        let types = ["direct", "fanout", "topic", "headers"]
            .map(|n| Arc::new(crate::exchange_type::Unavailable::named(n)) as Arc<dyn crate::exchange_type::ExchangeTypeFactory>);
        Broker::new(Config::for_tests(&dir), types).unwrap()
    }

    #[test]
    fn users_permissions_and_vhosts_change_live() {
        let b = broker();
        let e0 = b.auth_epoch();
        b.create_user("alice", "pw").unwrap();
        assert_eq!(b.create_user("alice", "x"), Err(AccessError::UserExists("alice".into())));
        assert!(b.authenticate("alice", "pw"));
        assert!(!b.authenticate("alice", "nope"));
        assert!(b.create_vhost("v1").unwrap());
        assert!(!b.create_vhost("v1").unwrap());
        assert!(b.vhost("v1").unwrap().exchange("amq.topic").is_some());
        assert!(matches!(b.set_permissions("alice", "v1", "(", ".*", ".*"), Err(AccessError::InvalidRegex(p, why, 1)) if p == "(" && why == "missing )"));
        assert_eq!(b.set_permissions("nobody", "nov", ".*", ".*", ".*"), Err(AccessError::NoSuchUser("nobody".into())));
        assert_eq!(b.set_permissions("alice", "nov", ".*", ".*", ".*"), Err(AccessError::NoSuchVhost("nov".into())));
        b.set_permissions("alice", "v1", "^q", "", ".*").unwrap();
        assert!(b.auth_epoch() > e0);
        assert_eq!(b.permission("v1", "alice").unwrap().patterns, ["^q".to_string(), "".into(), ".*".into()]);
        b.set_password("alice", None).unwrap();
        assert!(!b.authenticate("alice", "pw"));
        b.set_password("alice", Some("pw2")).unwrap();
        assert!(b.authenticate("alice", "pw2"));
        b.set_user_tags("alice", vec!["monitoring".into()]).unwrap();
        assert_eq!(b.user("alice").unwrap().tags, vec!["monitoring".to_string()]);
        b.clear_permissions("alice", "v1").unwrap();
        assert!(b.permission("v1", "alice").is_none());
        b.set_permissions("alice", "v1", ".*", ".*", ".*").unwrap();
        b.delete_vhost("v1").unwrap();
        assert!(b.vhost("v1").is_none());
        assert!(b.permission("v1", "alice").is_none(), "permissions go with the vhost");
        assert_eq!(b.delete_vhost("v1"), Err(AccessError::NoSuchVhost("v1".into())));
        b.delete_user("alice").unwrap();
        assert!(!b.authenticate("alice", "pw2"));
        assert_eq!(b.delete_user("alice"), Err(AccessError::NoSuchUser("alice".into())));
    }

    #[test]
    fn regex_reasons_as_pcre() {
        let reason = |p: &str| pcre_reason(p, &regex::Regex::new(p).unwrap_err());
        assert_eq!(reason("("), ("missing )".to_string(), 1));
        assert_eq!(reason(")"), ("unmatched parentheses".to_string(), 0));
        assert_eq!(reason("["), ("missing terminating ] for character class".to_string(), 1));
        assert_eq!(reason("*a"), ("nothing to repeat".to_string(), 0));
        let (r, _) = reason("\\p{Nope}");
        assert!(!r.contains('\n') && !r.is_empty(), "{r:?}");
    }
}
