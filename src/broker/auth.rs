//! Internal users: RabbitMQ-compatible password hashes (`rabbit_password_hashing_sha256`) and
//! permissions (configure / write / read regular expressions per vhost).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use regex::Regex;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

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
        // an empty pattern stands for "^$" (it matches only the empty name). Braces that open no
        // quantifier are literal, as in PCRE.
        let compile = |p: &str| Regex::new(&if p.is_empty() { Cow::Borrowed("^$") } else { pcre_compatible(p) });
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

/// Erlang's `re` (PCRE) takes a `{` that does not open a quantifier (`{n}`, `{n,}`, `{n,m}`)
/// as a literal, the regex crate refuses it: such braces are escaped before compiling (outside
/// character classes, where both take them literally). Everything else is left as it is.
pub fn pcre_compatible(p: &str) -> Cow<'_, str> {
    if !p.contains('{') {
        return Cow::Borrowed(p);
    }
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() + 4);
    let (mut i, mut class) = (0, false);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                // An escape and the character it escapes (the whole UTF-8 sequence).
                let n = p[i + 1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&p[i..i + 1 + n]);
                i += 1 + n;
                continue;
            }
            b'[' if !class => {
                class = true;
                out.push('[');
                i += 1;
                // A `]` first in the class (after an optional `^`) is literal.
                if b.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    out.push(']');
                    i += 1;
                }
                continue;
            }
            b']' if class => class = false,
            b'{' if !class && !opens_quantifier(&b[i + 1..]) => {
                out.push_str("\\{");
                i += 1;
                continue;
            }
            _ => {}
        }
        let n = p[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&p[i..i + n]);
        i += n;
    }
    Cow::Owned(out)
}

/// Whether the bytes after a `{` make it a quantifier: digits, optionally `,` and digits, `}`.
fn opens_quantifier(rest: &[u8]) -> bool {
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    match rest.get(digits) {
        Some(b'}') => true,
        Some(b',') => {
            let more = rest[digits + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            rest.get(digits + 1 + more) == Some(&b'}')
        }
        _ => false,
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
    fn braces_that_are_not_quantifiers_are_literal() {
        assert_eq!(pcre_compatible("^a{2}$"), "^a{2}$");
        assert_eq!(pcre_compatible("a{2,}b{1,3}"), "a{2,}b{1,3}");
        assert_eq!(pcre_compatible("^{x}"), "^\\{x}");
        assert_eq!(pcre_compatible("a{,2}"), "a\\{,2}");
        assert_eq!(pcre_compatible("a{2"), "a\\{2");
        assert_eq!(pcre_compatible("[{]\\{é{"), "[{]\\{é\\{");
        assert_eq!(pcre_compatible("[]{]{"), "[]{]\\{");
        let p = Permission::new("^{username}-", "", "").unwrap();
        assert!(p.allows(Access::Configure, "{username}-q"), "literal, as in RabbitMQ (no expansion in permissions)");
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
