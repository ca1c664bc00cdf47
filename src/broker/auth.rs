//! Internal users: RabbitMQ-compatible password hashes (`rabbit_password_hashing_sha256`) and
//! permissions (configure / write / read regular expressions per vhost).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use regex::Regex;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// base64(salt(4) ‖ SHA-256(salt ‖ password)).
    pub password_hash: String,
    pub tags: Vec<String>,
    /// `set_user_limits` (see `limits.rs`).
    pub limits: Limits,
}

/// The limits of one vhost or user (`set_vhost_limits` / `set_user_limits`): name → value,
/// negative meaning unlimited. Checked by `limits.rs`.
pub type Limits = std::collections::BTreeMap<String, i64>;

/// Hashes `password` with a fresh random salt, as RabbitMQ's sha256 algorithm.
pub fn hash_password(password: &str) -> String {
    let salt: [u8; 4] = rand::random();
    hash_with_salt(&salt, password)
}

fn hash_with_salt(salt: &[u8], password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut all = salt.to_vec();
    all.extend_from_slice(&h.finalize());
    B64.encode(all)
}

/// Checks `password` against a stored hash.
pub fn check_password(stored: &str, password: &str) -> bool {
    let Ok(raw) = B64.decode(stored) else { return false };
    if raw.len() != 36 {
        return false;
    }
    let candidate = hash_with_salt(&raw[..4], password);
    // Not secret-dependent in timing beyond the hash itself; compare the whole string.
    candidate.as_bytes().len() == stored.len() && candidate.as_bytes().iter().zip(stored.as_bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}

/// What an operation needs (defined with the auth-backend boundary).
pub use crate::auth_backend::Access;

/// A user's permissions in one vhost.
#[derive(Debug, Clone)]
pub struct Permission {
    pub configure: Regex,
    pub write: Regex,
    pub read: Regex,
    /// The patterns as given (configure, write, read), for listing and storing.
    pub patterns: [String; 3],
}

impl Permission {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permission, regex::Error> {
        // RabbitMQ uses re:run(Name, Pattern): unanchored unless the pattern anchors itself, and
        // an empty pattern stands for "^$" (it matches only the empty name).
        let compile = |p: &str| Regex::new(if p.is_empty() { "^$" } else { p });
        Ok(Permission {
            configure: compile(configure)?,
            write: compile(write)?,
            read: compile(read)?,
            patterns: [configure.to_owned(), write.to_owned(), read.to_owned()],
        })
    }

    pub fn all() -> Permission {
        Permission::new(".*", ".*", ".*").expect("valid regex")
    }

    /// RabbitMQ matches the pattern against the name (`re:run`, unanchored).
    pub fn allows(&self, access: Access, name: &str) -> bool {
        let re = match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        };
        re.is_match(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_rabbitmq_hash() {
        // guest's hash from a RabbitMQ 3.10 definitions export (salt 5190d855).
        assert!(check_password("UZDYVRj0WXVgwVudSavoX5MQtmdBZphhGB0gYRj6pvs4yJqQ", "guest"));
        assert!(!check_password("UZDYVRj0WXVgwVudSavoX5MQtmdBZphhGB0gYRj6pvs4yJqQ", "guesT"));
        let h = hash_password("s3cret");
        assert_eq!(h.len(), 48);
        assert!(check_password(&h, "s3cret"));
    }

    #[test]
    fn permissions_match_prefix() {
        let p = Permission::new("^q", "", ".*").unwrap();
        assert!(p.allows(Access::Configure, "q1"));
        assert!(!p.allows(Access::Configure, "x"));
        assert!(!p.allows(Access::Write, "q1"));
        assert!(p.allows(Access::Read, "anything"));
        // Unanchored, as re:run: "b" matches "abc"; "" only matches the empty name.
        let p = Permission::new("b", "", "^b$").unwrap();
        assert!(p.allows(Access::Configure, "abc"));
        assert!(!p.allows(Access::Write, "amq.default"));
        assert!(!p.allows(Access::Read, "abc"));
        assert_eq!(p.patterns, ["b".to_string(), "".into(), "^b$".into()]);
        assert!(Permission::new("(", ".*", ".*").is_err());
    }
}
