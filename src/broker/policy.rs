//! Policies and operator policies (rabbitmqctl's `set_policy`, `set_operator_policy`): the
//! model, RabbitMQ 3.10's validation texts, matching and merging. Pure: the broker applies the
//! result (`policies.rs`).
//!
//! - A policy has a name, a regex `pattern` (unanchored, as Erlang's `re:run`) matched against
//!   queue/exchange names, an `apply-to` (queues, exchanges, all), a priority and a definition
//!   (a JSON object of keys such as `message-ttl`).
//! - Of the policies matching an object, only the one with the highest priority applies (ties:
//!   the first by name); the same for operator policies. The two are merged key by key; where
//!   both set a key the smaller value wins (every operator-policy key is a limit).
//! - Against queue arguments: `message-ttl`, `expires`, `max-length`, `max-length-bytes` and
//!   `delivery-limit` take the smaller value; the other keys take the argument when there is one
//!   (RabbitMQ's `res_min` / `res_arg`). An exchange's `alternate-exchange` argument wins over the
//!   policy's.

use super::queue_args::{Overflow, QueueArgs};
use crate::protocol::FieldTable;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;

/// What a policy applies to (`--apply-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    Queues,
    Exchanges,
    All,
}

impl ApplyTo {
    pub fn parse(s: &str) -> Result<ApplyTo, String> {
        match s {
            "queues" => Ok(ApplyTo::Queues),
            "exchanges" => Ok(ApplyTo::Exchanges),
            "all" => Ok(ApplyTo::All),
            other => Err(format!("apply-to '{other}' unrecognised; should be 'queues', 'exchanges' or 'all'")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }
}

/// A user policy or an operator policy (they differ in the keys they accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    User,
    Operator,
}

/// Keys a policy may set, with their check and RabbitMQ's error (`~p is not a valid ...`).
/// Keys RabbitMQ knows but Warren does not implement (ha-*, max-in-memory-*, stream and
/// cluster keys) are refused as unrecognised rather than stored and ignored.
fn check(kind: PolicyKind, key: &str, v: &Value) -> Option<Result<(), &'static str>> {
    let int_min = |min: i64| v.as_i64().map_or(v.as_u64().is_some(), |n| n >= min);
    let one_of = |allowed: &[&str]| v.as_str().is_some_and(|s| allowed.contains(&s));
    let (ok, what) = match (kind, key) {
        (_, "message-ttl") => (int_min(0), "is not a valid message TTL"),
        (_, "expires") => (int_min(1), "is not a valid queue expiry"),
        (_, "max-length") => (int_min(0), "is not a valid maximum length"),
        (_, "max-length-bytes") => (int_min(0), "is not a valid maximum length in bytes"),
        (_, "delivery-limit") => (int_min(0), "is not a valid delivery limit"),
        (PolicyKind::Operator, _) => return None,
        (_, "alternate-exchange") => (v.is_string(), "is not a valid alternate exchange name"),
        (_, "dead-letter-exchange") => (v.is_string(), "is not a valid dead letter exchange name"),
        (_, "dead-letter-routing-key") => (v.is_string(), "is not a valid dead letter routing key"),
        (_, "overflow") => (one_of(&["drop-head", "reject-publish", "reject-publish-dlx"]), "is not a valid overflow value"),
        (_, "queue-mode") => (one_of(&["default", "lazy"]), "is not a valid queue-mode value"),
        (_, "queue-version") => (matches!(v.as_i64(), Some(1 | 2)), "is not a valid queue-version value"),
        (_, "dead-letter-strategy") => (one_of(&["at-most-once", "at-least-once"]), "is not a valid dead letter strategy"),
        _ => return None,
    };
    Some(if ok { Ok(()) } else { Err(what) })
}

/// Keys where a smaller value is the more conservative one (merged by minimum).
const MIN_KEYS: &[&str] = &["message-ttl", "expires", "max-length", "max-length-bytes", "delivery-limit"];

/// A value as Erlang's `~p` prints the decoded JSON term (as in rabbitmqctl's errors).
pub fn erlang_term(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        Value::Null => "null".into(),
        Value::Array(items) => format!("[{}]", items.iter().map(erlang_term).collect::<Vec<_>>().join(",")),
        Value::Object(m) => {
            format!("#{{{}}}", m.iter().map(|(k, v)| format!("<<\"{k}\">> => {}", erlang_term(v))).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

/// Why a policy was refused; the texts are rabbitmqctl's (after its `Error:` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// `JSON decoding error. Reason: badarg`
    NotJson,
    /// `Validation failed\n\n…\n`
    Invalid(String),
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::NotJson => write!(f, "JSON decoding error. Reason: badarg"),
            PolicyError::Invalid(why) => write!(f, "Validation failed\n\n{why}\n"),
        }
    }
}

/// A definition: keys in order (as RabbitMQ prints them).
pub type Definition = BTreeMap<String, Value>;

/// Parses and validates a definition as `set_policy` / `set_operator_policy` do: known keys in
/// key order first, then the unknown ones reported together.
pub fn parse_definition(kind: PolicyKind, json: &str) -> Result<Definition, PolicyError> {
    validate_definition(kind, decode_definition(json)?)
}

/// The JSON decoding step alone (rabbitmqctl does it before the node validates anything).
pub fn decode_definition(json: &str) -> Result<Definition, PolicyError> {
    let value: Value = serde_json::from_str(json).map_err(|_| PolicyError::NotJson)?;
    let Value::Object(map) = value else {
        // rabbitmqctl crashes here ({:badmap, …}); a plain message says the same.
        return Err(PolicyError::Invalid(format!("definition must be a dictionary: {}", erlang_term(&value))));
    };
    Ok(map.into_iter().collect())
}

/// Validates a decoded definition.
pub fn validate_definition(kind: PolicyKind, def: Definition) -> Result<Definition, PolicyError> {
    if def.is_empty() {
        return Err(PolicyError::Invalid("no policy provided".into()));
    }
    let mut unknown = Vec::new();
    for (k, v) in &def {
        match check(kind, k, v) {
            Some(Ok(())) => {}
            Some(Err(what)) => return Err(PolicyError::Invalid(format!("{} {what}", erlang_term(v)))),
            None => unknown.push(format!("{{<<\"{k}\">>,{}}}", erlang_term(v))),
        }
    }
    if !unknown.is_empty() {
        return Err(PolicyError::Invalid(format!("[{}] are not recognised policy settings", unknown.join(","))));
    }
    Ok(def)
}

/// Compiles a pattern; a bad one gets RabbitMQ's text, with Erlang PCRE's `{"reason",offset}`
/// (PCRE's words for the common mistakes, the regex crate's otherwise).
pub fn compile_pattern(pattern: &str) -> Result<Regex, PolicyError> {
    Regex::new(pattern).map_err(|e| {
        let why = match &e {
            regex::Error::Syntax(s) => s.lines().rev().find_map(|l| l.trim().strip_prefix("error: ")).unwrap_or(s).to_owned(),
            other => other.to_string(),
        };
        let (why, at) = match why.as_str() {
            "unclosed group" => ("missing )".to_owned(), pattern.len()),
            "unopened group" => ("unmatched parentheses".to_owned(), pattern.find(')').map_or(0, |i| i + 1)),
            "unclosed character class" => ("missing terminating ] for character class".to_owned(), pattern.len()),
            _ => (why, 0),
        };
        PolicyError::Invalid(format!("pattern should be regular expression but is invalid: {{\"{why}\",{at}}}"))
    })
}

/// One policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub pattern: String,
    regex: Regex,
    pub apply_to: ApplyTo,
    pub priority: i64,
    pub definition: Definition,
}

impl Policy {
    pub fn new(name: &str, pattern: &str, apply_to: ApplyTo, priority: i64, definition: Definition) -> Result<Policy, PolicyError> {
        Ok(Policy { name: name.into(), pattern: pattern.into(), regex: compile_pattern(pattern)?, apply_to, priority, definition })
    }

    fn matches(&self, name: &str, queue: bool) -> bool {
        let kind_ok = match self.apply_to {
            ApplyTo::All => true,
            ApplyTo::Queues => queue,
            ApplyTo::Exchanges => !queue,
        };
        kind_ok && self.regex.is_match(name)
    }

    /// `{"max-length":5,"message-ttl":1000}`: keys sorted, no spaces.
    pub fn definition_json(&self) -> String {
        definition_json(&self.definition)
    }
}

pub fn definition_json(d: &Definition) -> String {
    serde_json::to_string(d).expect("JSON values serialize")
}

/// A vhost's policies of one kind.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Sorted by priority, then name (the order `list_policies` shows).
    items: Vec<Policy>,
}

impl PolicySet {
    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.items.iter()
    }

    /// Adds or replaces the policy of that name.
    pub fn put(&mut self, p: Policy) {
        self.items.retain(|x| x.name != p.name);
        self.items.push(p);
        self.items.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.name.cmp(&b.name)));
    }

    /// Removes it; false if there was none.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|x| x.name != name);
        self.items.len() != before
    }

    /// The policy that applies to queue (or exchange) `name`: the highest priority, the first
    /// by name among equals.
    pub fn matching(&self, name: &str, queue: bool) -> Option<&Policy> {
        self.items.iter().filter(|p| p.matches(name, queue)).fold(None, |best: Option<&Policy>, p| match best {
            Some(b) if b.priority >= p.priority => Some(b),
            _ => Some(p),
        })
    }
}

/// The policies applying to one object and what they amount to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub policy: Option<String>,
    pub operator_policy: Option<String>,
    /// The merged definition (`effective_policy_definition`).
    pub definition: Definition,
}

impl Applied {
    /// The policy and the operator policy of `name`, merged.
    pub fn resolve(user: &PolicySet, operator: &PolicySet, name: &str, queue: bool) -> Applied {
        let p = user.matching(name, queue);
        let op = operator.matching(name, queue);
        let mut definition = p.map(|p| p.definition.clone()).unwrap_or_default();
        for (k, v) in op.iter().flat_map(|o| o.definition.iter()) {
            let merged = match (definition.get(k), MIN_KEYS.contains(&k.as_str())) {
                (Some(cur), true) => min_value(cur, v),
                _ => v.clone(),
            };
            definition.insert(k.clone(), merged);
        }
        Applied { policy: p.map(|p| p.name.clone()), operator_policy: op.map(|o| o.name.clone()), definition }
    }

    fn int(&self, key: &str) -> Option<u64> {
        self.definition.get(key).and_then(Value::as_u64)
    }

    fn text(&self, key: &str) -> Option<String> {
        self.definition.get(key).and_then(Value::as_str).map(str::to_owned)
    }

    /// A queue's effective arguments: its declared `args` (from `arguments`) with this
    /// applied — minimum for limits, the argument first for the rest.
    pub fn queue_args(&self, args: &QueueArgs, arguments: &FieldTable) -> QueueArgs {
        let mut a = args.clone();
        let min = |arg: Option<u64>, pol: Option<u64>| match (arg, pol) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        a.message_ttl = min(a.message_ttl, self.int("message-ttl").map(|n| n.min(super::queue_args::MAX_EXPIRY_MS as u64)));
        a.expires = min(a.expires, self.int("expires"));
        a.max_length = min(a.max_length, self.int("max-length"));
        a.max_length_bytes = min(a.max_length_bytes, self.int("max-length-bytes"));
        a.delivery_limit = min(a.delivery_limit, self.int("delivery-limit"));
        if a.dead_letter_exchange.is_none() {
            a.dead_letter_exchange = self.text("dead-letter-exchange");
        }
        if a.dead_letter_routing_key.is_none() {
            a.dead_letter_routing_key = self.text("dead-letter-routing-key");
        }
        let has = |k: &str| arguments.inner().contains_key(k);
        if !has("x-overflow") {
            a.overflow = match self.text("overflow").as_deref() {
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => Overflow::DropHead,
            };
        }
        if !has("x-queue-mode") && let Some(m) = self.text("queue-mode") {
            a.lazy = m == "lazy";
        }
        a
    }

    /// An exchange's alternate exchange from the policy (its argument, if any, wins).
    pub fn alternate_exchange(&self) -> Option<String> {
        self.text("alternate-exchange")
    }
}

fn min_value(a: &Value, b: &Value) -> Value {
    match (a.as_u64(), b.as_u64()) {
        (Some(x), Some(y)) => Value::from(x.min(y)),
        _ => b.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: PolicyKind, json: &str) -> String {
        parse_definition(kind, json).unwrap_err().to_string()
    }

    /// Texts as rabbitmqctl 3.10 prints them against a live node.
    #[test]
    fn validation_like_rabbitmq() {
        let v = |s: &str| format!("Validation failed\n\n{s}\n");
        let u = PolicyKind::User;
        assert_eq!(err(u, r#"{"no-such-key":1}"#), v(r#"[{<<"no-such-key">>,1}] are not recognised policy settings"#));
        assert_eq!(err(u, r#"{"max-priority":5}"#), v(r#"[{<<"max-priority">>,5}] are not recognised policy settings"#));
        assert_eq!(err(u, r#"{"expires":1,"bogus":2,"zz":3}"#), v(r#"[{<<"bogus">>,2},{<<"zz">>,3}] are not recognised policy settings"#));
        assert_eq!(err(u, r#"{"expires":0,"bogus":1}"#), v("0 is not a valid queue expiry"));
        assert_eq!(err(u, r#"{"message-ttl":-1}"#), v("-1 is not a valid message TTL"));
        assert_eq!(err(u, r#"{"message-ttl":"x"}"#), v(r#"<<"x">> is not a valid message TTL"#));
        assert_eq!(err(u, r#"{"message-ttl":"x","max-length":-1}"#), v("-1 is not a valid maximum length"));
        assert_eq!(err(u, r#"{"max-length":1.5}"#), v("1.5 is not a valid maximum length"));
        assert_eq!(err(u, r#"{"max-length":true}"#), v("true is not a valid maximum length"));
        assert_eq!(err(u, r#"{"max-length":[1,"a"]}"#), v(r#"[1,<<"a">>] is not a valid maximum length"#));
        assert_eq!(err(u, r#"{"max-length":{"a":1}}"#), v(r#"#{<<"a">> => 1} is not a valid maximum length"#));
        assert_eq!(err(u, r#"{"max-length-bytes":-1}"#), v("-1 is not a valid maximum length in bytes"));
        assert_eq!(err(u, r#"{"dead-letter-exchange":1}"#), v("1 is not a valid dead letter exchange name"));
        assert_eq!(err(u, r#"{"dead-letter-routing-key":1}"#), v("1 is not a valid dead letter routing key"));
        assert_eq!(err(u, r#"{"alternate-exchange":null}"#), v("null is not a valid alternate exchange name"));
        assert_eq!(err(u, r#"{"overflow":"bogus"}"#), v(r#"<<"bogus">> is not a valid overflow value"#));
        assert_eq!(err(u, r#"{"delivery-limit":-1}"#), v("-1 is not a valid delivery limit"));
        assert_eq!(err(u, r#"{"queue-mode":"bogus"}"#), v(r#"<<"bogus">> is not a valid queue-mode value"#));
        assert_eq!(err(u, r#"{"queue-version":3}"#), v("3 is not a valid queue-version value"));
        assert_eq!(err(u, r#"{"dead-letter-strategy":"x"}"#), v(r#"<<"x">> is not a valid dead letter strategy"#));
        assert_eq!(err(u, "{}"), v("no policy provided"));
        assert_eq!(err(u, "notjson"), "JSON decoding error. Reason: badarg");
        let o = PolicyKind::Operator;
        assert_eq!(err(o, r#"{"dead-letter-exchange":"x"}"#), v(r#"[{<<"dead-letter-exchange">>,<<"x">>}] are not recognised policy settings"#));
        assert_eq!(err(o, r#"{"max-length":-1}"#), v("-1 is not a valid maximum length"));
        assert!(parse_definition(u, r#"{"message-ttl":0,"overflow":"reject-publish-dlx","alternate-exchange":"ae"}"#).is_ok());
        assert_eq!(
            compile_pattern("(").unwrap_err().to_string(),
            v(r#"pattern should be regular expression but is invalid: {"missing )",1}"#)
        );
        assert_eq!(ApplyTo::parse("bogus").unwrap_err(), "apply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'");
    }

    fn policy(name: &str, pattern: &str, apply: ApplyTo, prio: i64, json: &str) -> Policy {
        Policy::new(name, pattern, apply, prio, serde_json::from_str(json).unwrap()).unwrap()
    }

    /// The highest priority wins alone; the operator policy merges by minimum (as observed:
    /// policy {max-length 2, message-ttl 100000, dlx} + operator {max-length 4, message-ttl
    /// 50000} → {dlx, max-length 2, message-ttl 50000}).
    #[test]
    fn matching_and_merging() {
        let mut user = PolicySet::default();
        user.put(policy("lo", "^d\\.pri$", ApplyTo::All, 1, r#"{"max-length":2}"#));
        user.put(policy("hi", "^d\\.p", ApplyTo::All, 5, r#"{"message-ttl":70000}"#));
        user.put(policy("op", "^d\\.op$", ApplyTo::Queues, 0, r#"{"max-length":2,"message-ttl":100000,"dead-letter-exchange":"dlx"}"#));
        let mut oper = PolicySet::default();
        oper.put(policy("opd", "^d\\.op", ApplyTo::All, 0, r#"{"max-length":4,"message-ttl":50000}"#));
        let a = Applied::resolve(&user, &oper, "d.pri", true);
        assert_eq!((a.policy.as_deref(), a.operator_policy.as_deref()), (Some("hi"), None));
        assert_eq!(definition_json(&a.definition), r#"{"message-ttl":70000}"#);
        let a = Applied::resolve(&user, &oper, "d.op", true);
        assert_eq!((a.policy.as_deref(), a.operator_policy.as_deref()), (Some("op"), Some("opd")));
        assert_eq!(definition_json(&a.definition), r#"{"dead-letter-exchange":"dlx","max-length":2,"message-ttl":50000}"#);
        let a = Applied::resolve(&user, &oper, "d.oponly", true);
        assert_eq!(definition_json(&a.definition), r#"{"max-length":4,"message-ttl":50000}"#);
        // apply-to queues does not reach an exchange of the same name.
        assert_eq!(Applied::resolve(&user, &PolicySet::default(), "d.op", false).policy, None);
        // Queue arguments: the minimum for limits, the argument for the rest.
        let mut t = FieldTable::default();
        t.insert("x-max-length".into(), crate::protocol::AMQPValue::LongInt(10));
        t.insert("x-dead-letter-exchange".into(), crate::protocol::AMQPValue::LongString("mine".into()));
        let declared = QueueArgs::parse(&t, "d.op", "/").unwrap();
        let eff = Applied::resolve(&user, &oper, "d.op", true).queue_args(&declared, &t);
        assert_eq!((eff.max_length, eff.message_ttl, eff.dead_letter_exchange.as_deref()), (Some(2), Some(50000), Some("mine")));
    }
}
