//! Virtual host and user limits (rabbitmqctl's `set_vhost_limits` / `set_user_limits`):
//! `max-connections` and `max-queues` per vhost, `max-connections` and `max-channels` per user.
//! A negative value means no limit, 0 refuses everything. Stored with the vhost / user
//! definition (store commit first, then memory, like the other access-control changes), checked
//! at connection.open, channel.open and when queue.declare creates a queue, with RabbitMQ's
//! reply codes and texts.

use super::Broker;
use super::access::AccessError;
use crate::protocol::reply::{ErrorKind, ReplyError};
use std::sync::atomic::Ordering;

pub use super::auth::Limits;

/// What a limit applies to; each has its own names and texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Vhost,
    User,
}

impl LimitScope {
    fn names(self) -> &'static [&'static str] {
        match self {
            LimitScope::Vhost => &["max-connections", "max-queues"],
            LimitScope::User => &["max-connections", "max-channels"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// rabbitmqctl: `JSON decoding error. Reason: badarg`.
    #[error("JSON decoding error. Reason: badarg")]
    NotJson,
    /// Vhost limits: `Validation failed\n\nUnrecognised terms [{<<"max-foo">>,1}] in limits`;
    /// user limits: `Unrecognised terms [{<<"max-queues">>,1}] in user-limits`.
    #[error("{0}")]
    Invalid(String),
}

fn erlang_term(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("<<\"{s}\">>"),
        serde_json::Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Parses `{"max-connections": 10, ...}` as rabbitmqctl does.
pub fn parse(scope: LimitScope, json: &str) -> Result<Limits, LimitError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|_| LimitError::NotJson)?;
    let serde_json::Value::Object(map) = value else { return Err(LimitError::NotJson) };
    // rabbitmqctl wraps vhost-limit errors in "Validation failed" and a trailing blank line.
    let (prefix, suffix, end) = match scope {
        LimitScope::Vhost => ("Validation failed\n\n", "limits", "\n"),
        LimitScope::User => ("", "user-limits", ""),
    };
    let unknown: Vec<String> = map
        .iter()
        .filter(|(k, _)| !scope.names().contains(&k.as_str()))
        .map(|(k, v)| format!("{{<<\"{k}\">>,{}}}", erlang_term(v)))
        .collect();
    if !unknown.is_empty() {
        return Err(LimitError::Invalid(format!("{prefix}Unrecognised terms [{}] in {suffix}{end}", unknown.join(","))));
    }
    let mut limits = Limits::new();
    for (k, v) in map {
        let Some(n) = v.as_i64() else {
            return Err(LimitError::Invalid(format!("{prefix}{k} should be a number, actually was {}{end}", erlang_term(&v))));
        };
        limits.insert(k, n);
    }
    Ok(limits)
}

/// A limit's value if it limits anything (negative values do not).
fn active(limits: &Limits, name: &str) -> Option<u64> {
    limits.get(name).and_then(|v| u64::try_from(*v).ok())
}

/// `{"max-connections":2,"max-queues":3}`: keys sorted, no spaces, as rabbitmqctl prints them.
pub fn to_json(limits: &Limits) -> String {
    serde_json::to_string(limits).expect("a map of integers serializes")
}

impl Broker {
    /// `set_vhost_limits`: replaces the vhost's limits with `limits` (merged per key, as
    /// RabbitMQ's runtime parameter: the new document replaces the old one).
    pub fn set_vhost_limits(&self, vhost: &str, limits: Limits) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        let vh = self.vhost(vhost).ok_or_else(|| AccessError::NoSuchVhost(vhost.into()))?;
        self.write(|s| s.put_vhost(&crate::store::definitions::VhostDef { limits: limits.clone(), ..vh.def() }))?;
        *vh.limits.write() = limits;
        Ok(())
    }

    /// `clear_vhost_limits`: false if the vhost had none (rabbitmqctl: "Parameter does not exist").
    pub fn clear_vhost_limits(&self, vhost: &str) -> Result<bool, AccessError> {
        let _g = self.admin_lock.lock();
        let Some(vh) = self.vhost(vhost) else { return Ok(false) };
        if vh.limits.read().is_empty() {
            return Ok(false);
        }
        self.write(|s| s.put_vhost(&crate::store::definitions::VhostDef { limits: Limits::new(), ..vh.def() }))?;
        vh.limits.write().clear();
        Ok(true)
    }

    pub fn vhost_limits(&self, vhost: &str) -> Option<Limits> {
        self.vhost(vhost).map(|v| v.limits.read().clone())
    }

    /// `set_user_limits`: replaces the user's limits.
    pub fn set_user_limits(&self, user: &str, limits: Limits) -> Result<(), AccessError> {
        self.update_user_limits(user, |l| *l = limits)
    }

    /// `clear_user_limits USER NAME|all`.
    pub fn clear_user_limits(&self, user: &str, name: &str) -> Result<(), AccessError> {
        self.update_user_limits(user, |l| {
            if name == "all" {
                l.clear();
            } else {
                l.remove(name);
            }
        })
    }

    fn update_user_limits(&self, user: &str, f: impl FnOnce(&mut Limits)) -> Result<(), AccessError> {
        let _g = self.admin_lock.lock();
        let mut u = self.user(user).ok_or_else(|| AccessError::NoSuchUser(user.into()))?;
        f(&mut u.limits);
        self.write(|s| s.put_user(&super::access::user_def(&u)))?;
        self.users.write().insert(user.into(), u);
        Ok(())
    }

    pub fn user_limits(&self, user: &str) -> Option<Limits> {
        self.user(user).map(|u| u.limits)
    }

    /// At connection.open: the vhost's and the user's `max-connections` (530, RabbitMQ's texts).
    /// The connection being opened is not registered yet.
    pub fn check_connection_limits(&self, vhost: &str, user: &str) -> Result<(), ReplyError> {
        let vhost_limit = self.vhost(vhost).and_then(|v| active(&v.limits.read(), "max-connections"));
        let user_limit = self.user(user).and_then(|u| active(&u.limits, "max-connections"));
        if vhost_limit.is_none() && user_limit.is_none() {
            return Ok(());
        }
        let conns = self.connections.lock();
        if let Some(max) = vhost_limit
            && conns.values().filter(|c| c.vhost == vhost).count() as u64 >= max
        {
            return Err(ReplyError::new(
                ErrorKind::NotAllowed,
                format!("access to vhost '{vhost}' refused for user '{user}': connection limit ({max}) is reached"),
            )
            .on(10, 40));
        }
        if let Some(max) = user_limit
            && conns.values().filter(|c| c.user == user).count() as u64 >= max
        {
            return Err(ReplyError::new(
                ErrorKind::NotAllowed,
                format!("connection refused for user '{user}': user connection limit ({max}) is reached"),
            )
            .on(10, 40));
        }
        Ok(())
    }

    /// At channel.open: the user's `max-channels` over all of its connections (530).
    pub fn check_channel_limit(&self, user: &str) -> Result<(), ReplyError> {
        let Some(max) = self.user(user).and_then(|u| active(&u.limits, "max-channels")) else { return Ok(()) };
        let open: u64 =
            self.connections.lock().values().filter(|c| c.user == user).map(|c| c.channels.load(Ordering::Relaxed) as u64).sum();
        if open >= max {
            return Err(ReplyError::new(
                ErrorKind::NotAllowed,
                format!("number of channels opened for user '{user}' has reached the maximum allowed user limit of ({max})"),
            ));
        }
        Ok(())
    }
}

/// The vhost's `max-queues` when queue.declare would create `name` while `count` queues exist
/// (406, RabbitMQ's text).
pub fn check_queue_limit(limits: &Limits, vhost: &str, name: &str, count: usize) -> Result<(), ReplyError> {
    match active(limits, "max-queues") {
        Some(max) if count as u64 >= max => Err(ReplyError::new(
            ErrorKind::PreconditionFailed,
            format!("cannot declare queue '{name}': queue limit in vhost '{vhost}' ({max}) is reached"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_rabbitmqctl() {
        let l = parse(LimitScope::Vhost, r#"{"max-queues": 3, "max-connections": -1}"#).unwrap();
        assert_eq!(to_json(&l), r#"{"max-connections":-1,"max-queues":3}"#);
        assert_eq!(active(&l, "max-connections"), None);
        assert_eq!(active(&l, "max-queues"), Some(3));
        assert_eq!(parse(LimitScope::Vhost, "notjson"), Err(LimitError::NotJson));
        assert_eq!(
            parse(LimitScope::Vhost, r#"{"max-foo": 1}"#).unwrap_err().to_string(),
            "Validation failed\n\nUnrecognised terms [{<<\"max-foo\">>,1}] in limits\n"
        );
        assert_eq!(
            parse(LimitScope::User, r#"{"max-queues": 1}"#).unwrap_err().to_string(),
            "Unrecognised terms [{<<\"max-queues\">>,1}] in user-limits"
        );
        assert_eq!(
            parse(LimitScope::Vhost, r#"{"max-queues": "x"}"#).unwrap_err().to_string(),
            "Validation failed\n\nmax-queues should be a number, actually was <<\"x\">>\n"
        );
        assert_eq!(
            parse(LimitScope::User, r#"{"max-channels": "x"}"#).unwrap_err().to_string(),
            "max-channels should be a number, actually was <<\"x\">>"
        );
        assert!(check_queue_limit(&l, "/", "q", 2).is_ok());
        assert_eq!(
            check_queue_limit(&l, "/", "q", 3).unwrap_err().text,
            "PRECONDITION_FAILED - cannot declare queue 'q': queue limit in vhost '/' (3) is reached"
        );
    }
}
