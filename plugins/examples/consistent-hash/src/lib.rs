//! Example exchange type `x-consistent-hash`, after RabbitMQ's consistent-hash exchange.
//!
//! - A binding's key is its weight: the number of points its destination gets on a hash ring
//!   (a decimal integer, 1..=100000; anything else is refused by `validate-binding`).
//!   Several bindings to the same destination add their weights up.
//! - A message goes to exactly one destination: the owner of the first ring point at or after
//!   the hash of its routing key, wrapping round. With the exchange argument
//!   `hash-header = NAME` the value of header NAME is hashed instead; a message without that
//!   header is not routed.
//! - `hash-property` (hash message_id, correlation_id or timestamp) is refused by `validate`:
//!   `message-view` in warren:plugin@0.1.0 carries no message properties.
//! - The hash is FNV-1a 64 + murmur3's finaliser (see `ring.rs`): the same key goes to the same
//!   destination as long as the bindings (and the host's destination ids) stay the same.

wit_bindgen::generate!({ path: "../../../wit", world: "exchange-type" });

mod ring;

use std::cell::RefCell;
use warren::plugin::types::{FieldValue, RoutingInputs};

use ring::{Ring, hash_bytes, parse_weight};

const HASH_HEADER: &str = "hash-header";
const HASH_PROPERTY: &str = "hash-property";

#[derive(Default)]
struct State {
    /// `hash-header` argument of the exchange; None: hash the routing key
    hash_header: Option<String>,
    ring: Ring,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn arg<'a>(args: &'a FieldTable, name: &str) -> Option<&'a FieldValue> {
    args.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Checks the exchange arguments; returns the header to hash on, if any.
fn parse_arguments(args: &FieldTable) -> Result<Option<String>, String> {
    let header = arg(args, HASH_HEADER);
    let property = arg(args, HASH_PROPERTY);
    if header.is_some() && property.is_some() {
        return Err(format!(
            "x-consistent-hash: arguments {HASH_HEADER} and {HASH_PROPERTY} are mutually exclusive; give at most one"
        ));
    }
    if let Some(p) = property {
        let name = match p {
            FieldValue::LongString(s) => s.as_str(),
            _ => "?",
        };
        return Err(format!(
            "x-consistent-hash: {HASH_PROPERTY} ({name}) is not supported by this plugin: Warren's plugin interface (warren:plugin@0.1.0) passes no message properties to exchange types; use {HASH_HEADER} or the routing key"
        ));
    }
    match header {
        None => Ok(None),
        Some(FieldValue::LongString(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(FieldValue::LongString(_)) => {
            Err(format!("x-consistent-hash: {HASH_HEADER} must not be empty"))
        }
        Some(_) => Err(format!("x-consistent-hash: {HASH_HEADER} must be a string (a header name)")),
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

fn route_one(state: &State, msg: &MessageView) -> Vec<DestinationId> {
    let hash = match &state.hash_header {
        None => hash_bytes(msg.routing_key.as_bytes()),
        Some(h) => match arg(&msg.headers, h) {
            Some(v) => hash_bytes(&header_bytes(v)),
            None => return Vec::new(),
        },
    };
    state.ring.lookup(hash).into_iter().collect()
}

struct ConsistentHash;

impl Guest for ConsistentHash {
    fn describe() -> Info {
        Info {
            name: "x-consistent-hash".into(),
            description: "consistent hashing: each message goes to one destination, chosen by the hash of its routing key (or of a header); binding key = weight".into(),
            // static: headers are needed only with hash-header, but describe cannot depend on
            // the exchange's arguments
            reads: RoutingInputs::ROUTING_KEY | RoutingInputs::HEADERS,
            deterministic: true,
        }
    }

    fn validate(arguments: FieldTable) -> Result<(), String> {
        parse_arguments(&arguments).map(|_| ())
    }

    fn create_exchange(_exchange: String, arguments: FieldTable) -> Result<(), String> {
        let header = parse_arguments(&arguments)?;
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.hash_header = header;
            s.ring.clear();
        });
        Ok(())
    }

    fn delete_exchange() {
        STATE.with(|s| *s.borrow_mut() = State::default());
    }

    fn validate_binding(b: Binding) -> Result<(), String> {
        parse_weight(&b.binding_key).map(|_| ())
    }

    fn add_binding(b: Binding) -> Result<(), String> {
        let w = parse_weight(&b.binding_key)?;
        STATE.with(|s| s.borrow_mut().ring.add(b.destination, w));
        Ok(())
    }

    fn remove_binding(b: Binding) -> bool {
        match parse_weight(&b.binding_key) {
            Ok(w) => STATE.with(|s| s.borrow_mut().ring.remove(b.destination, w)),
            Err(_) => false,
        }
    }

    fn route(msg: MessageView) -> Vec<DestinationId> {
        STATE.with(|s| route_one(&s.borrow(), &msg))
    }

    fn route_batch(msgs: Vec<MessageView>) -> Vec<Vec<DestinationId>> {
        STATE.with(|s| {
            let s = s.borrow();
            msgs.iter().map(|m| route_one(&s, m)).collect()
        })
    }
}

export!(ConsistentHash);

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> FieldValue {
        FieldValue::LongString(v.into())
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_arguments(&vec![]), Ok(None));
        assert_eq!(parse_arguments(&vec![(HASH_HEADER.into(), s("h"))]), Ok(Some("h".into())));
        let both = vec![(HASH_HEADER.into(), s("h")), (HASH_PROPERTY.into(), s("message_id"))];
        assert!(parse_arguments(&both).unwrap_err().contains("mutually exclusive"));
        let prop = vec![(HASH_PROPERTY.into(), s("message_id"))];
        assert!(parse_arguments(&prop).unwrap_err().contains("not supported"));
        assert!(parse_arguments(&vec![(HASH_HEADER.into(), FieldValue::Signed(1))]).is_err());
    }

    #[test]
    fn routes_on_header_or_key() {
        let mut st = State::default();
        st.ring.add(1, 10);
        st.ring.add(2, 10);
        let msg = |rk: &str, h: Option<&str>| MessageView {
            routing_key: rk.into(),
            headers: h.map(|v| vec![("h".to_string(), s(v))]).unwrap_or_default(),
            body: None,
        };
        assert_eq!(route_one(&st, &msg("a", None)).len(), 1);
        st.hash_header = Some("h".into());
        assert!(route_one(&st, &msg("a", None)).is_empty());
        let one = route_one(&st, &msg("x", Some("v")));
        assert_eq!(one, route_one(&st, &msg("y", Some("v"))));
        // header 42 and "42" hash alike
        let n = MessageView { routing_key: String::new(), headers: vec![("h".into(), FieldValue::Signed(42))], body: None };
        assert_eq!(route_one(&st, &n), route_one(&st, &msg("", Some("42"))));
    }
}
