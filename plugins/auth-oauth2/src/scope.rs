//! Scopes to permissions, exactly as rabbitmq_auth_backend_oauth2 3.10 (`rabbit_oauth2_scope`,
//! `wildcard`): `read:<vhost>/<name>[/<routing key>]`, `write:…`, `configure:…`, where each
//! pattern may hold `*` and is URL-decoded piece by piece.

/// A permission a scope grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

/// One permission scope: (vhost pattern, name pattern, routing-key pattern, permission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePerm {
    pub vhost: String,
    pub name: String,
    pub routing_key: Option<String>,
    pub perm: Perm,
}

/// `rabbit_oauth2_scope:parse_permission_pattern`: None for scopes that grant no permission.
pub fn parse(scope: &str) -> Option<ScopePerm> {
    let (perm, rest) = if let Some(r) = scope.strip_prefix("read:") {
        (Perm::Read, r)
    } else if let Some(r) = scope.strip_prefix("write:") {
        (Perm::Write, r)
    } else if let Some(r) = scope.strip_prefix("configure:") {
        (Perm::Configure, r)
    } else {
        return None;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [v, n] => Some(ScopePerm { vhost: v.to_string(), name: n.to_string(), routing_key: None, perm }),
        [v, n, k] => Some(ScopePerm { vhost: v.to_string(), name: n.to_string(), routing_key: Some(k.to_string()), perm }),
        _ => None,
    }
}

/// May a user with `scopes` open a connection to `vhost`? (any permission scope on it)
pub fn vhost_access(vhost: &str, scopes: &[String]) -> bool {
    scopes.iter().filter_map(|s| parse(s)).any(|p| matches(vhost, &p.vhost))
}

/// May a user with `scopes` use resource `name` in `vhost` with `perm`?
pub fn resource_access(vhost: &str, name: &str, perm: Perm, scopes: &[String]) -> bool {
    scopes.iter().filter_map(|s| parse(s)).any(|p| matches(vhost, &p.vhost) && matches(name, &p.name) && p.perm == perm)
}

/// May a user with `scopes` publish/bind with `routing_key` on exchange `exchange`? Only scopes
/// with a routing-key pattern count.
pub fn topic_access(vhost: &str, exchange: &str, routing_key: &str, perm: Perm, scopes: &[String]) -> bool {
    scopes.iter().filter_map(|s| parse(s)).any(|p| {
        p.routing_key.as_deref().is_some_and(|k| {
            matches(vhost, &p.vhost) && matches(exchange, &p.name) && matches(routing_key, k) && p.perm == perm
        })
    })
}

/// `wildcard:match/2`: `*` matches any run of bytes; the pieces between are URL-decoded. The
/// scan takes the first occurrence of each piece, without backtracking, as RabbitMQ does (so
/// `a*b` does not match `axbxb`). An undecodable pattern matches nothing.
pub fn matches(subject: &str, pattern: &str) -> bool {
    let Some(parts) = parse_pattern(pattern) else { return false };
    let s = subject.as_bytes();
    let first = &parts[0];
    if !s.starts_with(first) {
        return false;
    }
    let mut pos = first.len();
    let mut rest = &parts[1..];
    loop {
        if rest.len() == 1 && rest[0].is_empty() {
            return true;
        }
        if rest.is_empty() {
            return pos == s.len();
        }
        if pos == s.len() {
            return false;
        }
        let part = &rest[0];
        rest = &rest[1..];
        if part.is_empty() {
            continue;
        }
        match find(&s[pos..], part) {
            Some(i) => pos += i + part.len(),
            None => return false,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_pattern(pattern: &str) -> Option<Vec<Vec<u8>>> {
    pattern.split('*').map(urldecode).collect()
}

/// `cow_qs:urldecode`: `%XX` is a byte, `+` a space; a `%` not followed by two hex digits is an error.
fn urldecode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_as_rabbitmq() {
        assert!(matches("anything", "*"));
        assert!(matches("", "*"));
        assert!(matches("q-1", "q-*"));
        assert!(!matches("p-1", "q-*"));
        assert!(matches("abc", "a*c"));
        assert!(matches("abc", "abc"));
        assert!(!matches("abcd", "abc"));
        assert!(matches("/", "%2F"));
        assert!(matches("a b", "a+b"));
        assert!(!matches("x", "%zz"));
        // first occurrence, no backtracking
        assert!(!matches("axbxb", "a*b"));
        assert!(matches("axb", "a*b"));
        assert!(matches("a.b.c", "a*c"));
    }

    #[test]
    fn scopes_to_permissions() {
        let scopes: Vec<String> = ["read:*/*", "write:prod/q-*", "configure:%2F/ex", "write:prod/amq.topic/a.*", "tag:x", "bogus"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(vhost_access("prod", &scopes));
        assert!(resource_access("any", "q", Perm::Read, &scopes));
        assert!(resource_access("prod", "q-1", Perm::Write, &scopes));
        assert!(!resource_access("dev", "q-1", Perm::Write, &scopes));
        assert!(resource_access("/", "ex", Perm::Configure, &scopes));
        assert!(!resource_access("/", "ex2", Perm::Configure, &scopes));
        assert!(topic_access("prod", "amq.topic", "a.b", Perm::Write, &scopes));
        assert!(!topic_access("prod", "amq.topic", "b.a", Perm::Write, &scopes));
        // scopes without a routing-key pattern grant no topic access
        assert!(!topic_access("x", "amq.topic", "a", Perm::Read, &scopes));
        assert!(!vhost_access("v", &["tag:administrator".to_string()]));
    }
}
