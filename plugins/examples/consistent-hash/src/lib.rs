//! Example exchange type `x-consistent-hash`, after RabbitMQ's consistent-hash exchange.
//!
//! - A binding's key is its weight: the number of points its destination gets on a hash ring
//!   (a decimal integer, 1..=100000; anything else is refused by `validate-binding`).
//!   Several bindings to the same destination add their weights up.
//! - A message goes to exactly one destination: the owner of the first ring point at or after
//!   the hash of its routing key, wrapping round. With the exchange argument
//!   `hash-header = NAME` the value of header NAME is hashed instead, with
//!   `hash-property = message_id | correlation_id | timestamp` that property (the timestamp as
//!   decimal text). A message without that header or property goes, as in RabbitMQ, to one
//!   fixed destination (its hash input is then the empty string). Both arguments together, or
//!   another property, are refused with RabbitMQ 3.10's texts.
//! - `describe` says it reads the routing key, headers and properties; `create-exchange` narrows
//!   that per exchange to the one it hashes on, so the host caches the routes of an exchange
//!   that hashes the routing key.
//! - The hash is FNV-1a 64 + murmur3's finaliser (see `ring.rs`): the same key goes to the same
//!   destination as long as the bindings (and the host's destination ids) stay the same.

mod ring;

use warren_plugin_sdk::exchange::*;

use ring::{Ring, hash_bytes, parse_weight};

const HASH_HEADER: &str = "hash-header";
const HASH_PROPERTY: &str = "hash-property";
/// The properties `hash-property` may name (RabbitMQ's list).
const PROPERTIES: [&str; 3] = ["message_id", "correlation_id", "timestamp"];

/// What a message is hashed on (from the exchange arguments).
#[derive(Debug, Clone, PartialEq, Default)]
enum HashOn {
    #[default]
    RoutingKey,
    /// `hash-header = NAME`
    Header(String),
    /// `hash-property = message_id | correlation_id | timestamp`
    Property(Property),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Property {
    MessageId,
    CorrelationId,
    Timestamp,
}

/// One exchange: what it hashes on and its ring.
#[derive(Default)]
struct State {
    hash_on: HashOn,
    ring: Ring,
}

/// Checks the exchange arguments (RabbitMQ 3.10's rules and texts); returns what to hash on.
/// RabbitMQ fails with an internal error (541) on a non-string argument; this refuses it.
fn parse_arguments(args: &FieldTable) -> Result<HashOn, String> {
    let string = |name: &str| match lookup(args, name) {
        None => Ok(None),
        Some(FieldValue::LongString(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} must be a string")),
    };
    match (string(HASH_HEADER)?, string(HASH_PROPERTY)?) {
        (Some(_), Some(_)) => Err(format!("{HASH_HEADER} and {HASH_PROPERTY} are mutually exclusive")),
        (Some(h), None) => Ok(HashOn::Header(h)),
        (None, Some(p)) => match PROPERTIES.iter().position(|x| *x == p) {
            Some(0) => Ok(HashOn::Property(Property::MessageId)),
            Some(1) => Ok(HashOn::Property(Property::CorrelationId)),
            Some(_) => Ok(HashOn::Property(Property::Timestamp)),
            None => Err(format!("Unsupported property: {p}")),
        },
        (None, None) => Ok(HashOn::RoutingKey),
    }
}

/// The bytes hashed for a header value: strings and byte arrays as they are, integers, booleans
/// and decimals in a decimal text form (so the header 42 and the header "42" go to the same
/// place), floats as their IEEE 754 bytes (formatting floats would add ~20 KB of code).
fn header_bytes(v: &FieldValue) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow::{Borrowed, Owned};
    match v {
        FieldValue::Void => Borrowed(b""),
        FieldValue::Boolean(b) => Borrowed(if *b { b"true" } else { b"false" }),
        FieldValue::Signed(i) => Owned(i.to_string().into_bytes()),
        FieldValue::Unsigned(u) | FieldValue::Timestamp(u) => Owned(u.to_string().into_bytes()),
        FieldValue::Float(f) => Owned(f.to_le_bytes().to_vec()),
        FieldValue::Double(d) => Owned(d.to_le_bytes().to_vec()),
        FieldValue::Decimal((scale, value)) => Owned(format!("{value}e-{scale}").into_bytes()),
        FieldValue::LongString(s) => Borrowed(s.as_bytes()),
        FieldValue::Bytes(b) | FieldValue::Table(b) | FieldValue::Array(b) => Borrowed(b),
    }
}

/// The value hashed for a message. A message without the header or property named by the
/// exchange is hashed on the empty string: like RabbitMQ (which hashes `undefined` then), all
/// such messages go to one and the same destination.
fn hash_input<'m>(on: &HashOn, msg: &'m MessageView) -> std::borrow::Cow<'m, [u8]> {
    use std::borrow::Cow::{Borrowed, Owned};
    let props = msg.properties.as_ref();
    match on {
        HashOn::RoutingKey => Borrowed(msg.routing_key.as_bytes()),
        HashOn::Header(h) => lookup(&msg.headers, h).map(header_bytes).unwrap_or(Borrowed(b"")),
        HashOn::Property(Property::MessageId) => {
            props.and_then(|p| p.message_id.as_deref()).map(|s| Borrowed(s.as_bytes())).unwrap_or(Borrowed(b""))
        }
        HashOn::Property(Property::CorrelationId) => {
            props.and_then(|p| p.correlation_id.as_deref()).map(|s| Borrowed(s.as_bytes())).unwrap_or(Borrowed(b""))
        }
        // RabbitMQ hashes the decimal text of the timestamp
        HashOn::Property(Property::Timestamp) => {
            props.and_then(|p| p.timestamp).map(|t| Owned(t.to_string().into_bytes())).unwrap_or(Borrowed(b""))
        }
    }
}

/// What `route` reads for an exchange hashing on `on`: only the routing key unless the
/// arguments name a header or a property (the host then caches the routes of routing-key
/// exchanges).
fn reads_for(on: &HashOn) -> RoutingInputs {
    match on {
        HashOn::RoutingKey => RoutingInputs::ROUTING_KEY,
        HashOn::Header(_) => RoutingInputs::HEADERS,
        HashOn::Property(_) => RoutingInputs::PROPERTIES,
    }
}

fn route_one(state: &State, msg: &MessageView) -> Vec<DestinationId> {
    state.ring.lookup(hash_bytes(&hash_input(&state.hash_on, msg))).into_iter().collect()
}

impl ExchangeType for State {
    fn describe() -> Info {
        Info {
            name: "x-consistent-hash".into(),
            description: "consistent hashing: each message goes to one destination, chosen by the hash of its routing key (or of a header or property); binding key = weight".into(),
            // the most an exchange reads; create-exchange narrows it to what its arguments need
            reads: RoutingInputs::ROUTING_KEY | RoutingInputs::HEADERS | RoutingInputs::PROPERTIES,
            deterministic: true,
        }
    }

    fn validate(arguments: FieldTable) -> Result<(), String> {
        parse_arguments(&arguments).map(|_| ())
    }

    fn create_exchange(&mut self, _exchange: String, arguments: FieldTable) -> Result<Option<RoutingInputs>, String> {
        let hash_on = parse_arguments(&arguments)?;
        let reads = reads_for(&hash_on);
        self.hash_on = hash_on;
        self.ring.clear();
        Ok(Some(reads))
    }

    fn delete_exchange(&mut self) {
        *self = State::default();
    }

    fn validate_binding(&self, b: Binding) -> Result<(), String> {
        parse_weight(&b.binding_key).map(|_| ())
    }

    fn add_binding(&mut self, b: Binding, _: &mut Bindings) -> Result<(), String> {
        let w = parse_weight(&b.binding_key)?;
        self.ring.add(b.destination, w);
        Ok(())
    }

    fn remove_binding(&mut self, b: Binding, _: &mut Bindings) -> bool {
        match parse_weight(&b.binding_key) {
            Ok(w) => self.ring.remove(b.destination, w),
            Err(_) => false,
        }
    }

    fn route(&self, msg: MessageView, _: &Bindings) -> Vec<DestinationId> {
        route_one(self, &msg)
    }
}

warren_plugin_sdk::export_exchange_type!(State);

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> FieldValue {
        FieldValue::LongString(v.into())
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_arguments(&vec![]), Ok(HashOn::RoutingKey));
        assert_eq!(parse_arguments(&vec![(HASH_HEADER.into(), s("h"))]), Ok(HashOn::Header("h".into())));
        let both = vec![(HASH_HEADER.into(), s("h")), (HASH_PROPERTY.into(), s("message_id"))];
        assert_eq!(parse_arguments(&both), Err("hash-header and hash-property are mutually exclusive".into()));
        for (name, p) in [("message_id", Property::MessageId), ("correlation_id", Property::CorrelationId), ("timestamp", Property::Timestamp)] {
            assert_eq!(parse_arguments(&vec![(HASH_PROPERTY.into(), s(name))]), Ok(HashOn::Property(p)));
        }
        let prop = vec![(HASH_PROPERTY.into(), s("app_id"))];
        assert_eq!(parse_arguments(&prop), Err("Unsupported property: app_id".into()));
        assert!(parse_arguments(&vec![(HASH_HEADER.into(), FieldValue::Signed(1))]).is_err());
    }

    fn msg(rk: &str, h: Option<&str>, props: Option<BasicProperties>) -> MessageView {
        MessageView {
            routing_key: rk.into(),
            headers: h.map(|v| vec![("h".to_string(), s(v))]).unwrap_or_default(),
            body: None,
            properties: props,
        }
    }

    fn props(message_id: Option<&str>, correlation_id: Option<&str>, timestamp: Option<u64>) -> BasicProperties {
        BasicProperties {
            content_type: None,
            content_encoding: None,
            delivery_mode: None,
            priority: None,
            correlation_id: correlation_id.map(Into::into),
            reply_to: None,
            expiration: None,
            message_id: message_id.map(Into::into),
            timestamp,
            type_: None,
            user_id: None,
            app_id: None,
            cluster_id: None,
        }
    }

    /// Ring of 8 destinations; `n` messages made by `f(i)` must land on more than one
    /// destination iff `spread`.
    fn spreads(st: &State, n: usize, f: impl Fn(usize) -> MessageView) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..n {
            let d = route_one(st, &f(i));
            assert_eq!(d.len(), 1);
            seen.insert(d[0]);
        }
        seen.len()
    }

    fn ring8(hash_on: HashOn) -> State {
        let mut st = State { hash_on, ring: Ring::default() };
        for d in 0..8 {
            st.ring.add(d, 50);
        }
        st
    }

    #[test]
    fn routes_on_header() {
        let st = ring8(HashOn::Header("h".into()));
        // the routing key does not matter, the header does
        assert_eq!(spreads(&st, 50, |i| msg(&format!("k{i}"), Some("v"), None)), 1);
        assert!(spreads(&st, 50, |i| msg("k", Some(&format!("v{i}")), None)) > 4);
        // without the header: one fixed destination, as RabbitMQ
        assert_eq!(spreads(&st, 50, |i| msg(&format!("k{i}"), None, None)), 1);
        // header 42 and "42" hash alike
        let n = MessageView { routing_key: String::new(), headers: vec![("h".into(), FieldValue::Signed(42))], body: None, properties: None };
        assert_eq!(route_one(&st, &n), route_one(&st, &msg("", Some("42"), None)));
    }

    #[test]
    fn routes_on_properties() {
        let st = ring8(HashOn::Property(Property::MessageId));
        assert_eq!(spreads(&st, 50, |i| msg(&format!("k{i}"), None, Some(props(Some("m"), None, None)))), 1);
        assert!(spreads(&st, 50, |i| msg("k", None, Some(props(Some(&format!("m{i}")), None, None)))) > 4);
        assert_eq!(spreads(&st, 50, |i| msg(&format!("k{i}"), None, Some(props(None, Some(&format!("c{i}")), None)))), 1);
        assert_eq!(spreads(&st, 50, |i| msg(&format!("k{i}"), None, None)), 1);
        let st = ring8(HashOn::Property(Property::CorrelationId));
        assert!(spreads(&st, 50, |i| msg("k", None, Some(props(None, Some(&format!("c{i}")), None)))) > 4);
        let st = ring8(HashOn::Property(Property::Timestamp));
        assert!(spreads(&st, 50, |i| msg("k", None, Some(props(None, None, Some(1000 + i as u64))))) > 4);
        assert_eq!(spreads(&st, 50, |i| msg(&format!("k{i}"), None, Some(props(None, None, Some(7))))), 1);
    }

    #[test]
    fn reads_follow_the_arguments() {
        assert_eq!(reads_for(&HashOn::RoutingKey), RoutingInputs::ROUTING_KEY);
        assert_eq!(reads_for(&HashOn::Header("h".into())), RoutingInputs::HEADERS);
        assert_eq!(reads_for(&HashOn::Property(Property::Timestamp)), RoutingInputs::PROPERTIES);
    }

    #[test]
    fn routes_on_routing_key() {
        let st = ring8(HashOn::RoutingKey);
        assert!(spreads(&st, 50, |i| msg(&format!("k{i}"), Some("v"), None)) > 4);
        assert_eq!(spreads(&st, 50, |_| msg("k", None, None)), 1);
    }
}
