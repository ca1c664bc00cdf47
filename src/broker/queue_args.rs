//! Queue arguments (`x-message-ttl`, `x-max-length`, …), parsed once at declare into a typed
//! [`QueueArgs`], with RabbitMQ's validation errors and its equivalence check for redeclares.
//!
//! Texts are RabbitMQ 3.10's (`rabbit_amqqueue:check_arguments`), checked against a live node:
//! `invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}` and so on.

use crate::protocol::reply::{ReplyError, precondition};
use crate::protocol::{AMQPValue, FieldTable};

/// The largest TTL / expiry RabbitMQ accepts (ten years in milliseconds).
pub const MAX_EXPIRY_MS: i64 = 315_360_000_000;

/// What a full queue does with a new message (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest message.
    #[default]
    DropHead,
    /// Refuse the new one (publisher nack with confirms).
    RejectPublish,
    /// Refuse the new one and dead-letter it.
    RejectPublishDlx,
}

/// `x-queue-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    /// On one node: a durable queue that stores every message and counts deliveries
    /// (`x-delivery-limit`, the `x-delivery-count` header).
    Quorum,
}

/// A queue's arguments, typed. Unknown arguments are kept in the queue's field table only
/// (RabbitMQ stores and ignores them too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueArgs {
    pub message_ttl: Option<u64>,
    pub expires: Option<u64>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub max_priority: Option<u8>,
    pub overflow: Overflow,
    /// `x-queue-mode=lazy`: accepted; Warren's durable queues page by memory anyway.
    pub lazy: bool,
    pub single_active_consumer: bool,
    pub queue_type: QueueType,
    /// Quorum queues: a message returned more often than this is dead-lettered (or dropped).
    pub delivery_limit: Option<u64>,
}

/// Arguments RabbitMQ checks for equivalence on redeclare.
const EQUIV_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
];

/// Arguments a quorum queue refuses (RabbitMQ 3.10's `rabbit_quorum_queue` capabilities).
const NOT_QUORUM: &[&str] = &["x-max-priority", "x-queue-mode", "x-queue-version", "x-max-age", "x-stream-max-segment-size-bytes", "x-initial-cluster-size"];

/// Arguments of other queue types that a classic queue refuses.
const NOT_CLASSIC: &[&str] =
    &["x-delivery-limit", "x-dead-letter-strategy", "x-max-in-memory-length", "x-max-in-memory-bytes", "x-quorum-initial-group-size", "x-max-age", "x-stream-max-segment-size-bytes", "x-initial-cluster-size"];

impl QueueArgs {
    /// Parses and validates `args` for queue `queue` in `vhost`, in RabbitMQ's order (so the
    /// first error reported is RabbitMQ's first).
    pub fn parse(args: &FieldTable, queue: &str, vhost: &str) -> Result<QueueArgs, ReplyError> {
        let invalid = |arg: &str, why: String| precondition(format!("invalid arg '{arg}' for queue '{queue}' in vhost '{vhost}': {why}"));
        let get = |k: &str| args.inner().get(k);
        let int = |k: &str, v: &AMQPValue| as_int(v).ok_or_else(|| invalid(k, format!("\"expected integer, got {}\"", type_name(v))));
        let text = |k: &str, v: &AMQPValue| as_str(v).ok_or_else(|| invalid(k, format!("{{unacceptable_type,{}}}", type_name(v))));
        let non_neg = |k: &str, n: i64| if n < 0 { Err(invalid(k, format!("{{value_negative,{n}}}"))) } else { Ok(n as u64) };
        let expiry = |k: &str, n: i64| {
            let n = non_neg(k, n)?;
            if n as i64 > MAX_EXPIRY_MS { Err(invalid(k, format!("{{value_too_large,{n}}}"))) } else { Ok(n) }
        };
        let mut a = QueueArgs::default();
        if let Some(v) = get("x-expires") {
            let n = int("x-expires", v)?;
            if n == 0 {
                return Err(invalid("x-expires", "{value_zero,0}".into()));
            }
            a.expires = Some(expiry("x-expires", n)?);
        }
        if let Some(v) = get("x-message-ttl") {
            a.message_ttl = Some(expiry("x-message-ttl", int("x-message-ttl", v)?)?);
        }
        if let Some(v) = get("x-dead-letter-exchange") {
            let Some(s) = as_str(v) else {
                return Err(precondition(format!(
                    "invalid type '{}' for arg 'x-dead-letter-exchange' in queue '{queue}' in vhost '{vhost}'",
                    type_name(v)
                )));
            };
            a.dead_letter_exchange = Some(s);
        }
        if let Some(v) = get("x-dead-letter-routing-key") {
            let s = text("x-dead-letter-routing-key", v)?;
            if a.dead_letter_exchange.is_none() {
                return Err(invalid("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined".into()));
            }
            a.dead_letter_routing_key = Some(s);
        }
        if let Some(v) = get("x-max-length") {
            a.max_length = Some(non_neg("x-max-length", int("x-max-length", v)?)?);
        }
        if let Some(v) = get("x-max-length-bytes") {
            a.max_length_bytes = Some(non_neg("x-max-length-bytes", int("x-max-length-bytes", v)?)?);
        }
        if let Some(v) = get("x-max-priority") {
            let n = non_neg("x-max-priority", int("x-max-priority", v)?)?;
            if n > 255 {
                return Err(invalid("x-max-priority", format!("{{max_value_exceeded,{n}}}")));
            }
            a.max_priority = Some(n as u8);
        }
        if let Some(v) = get("x-overflow") {
            a.overflow = match text("x-overflow", v)?.as_str() {
                "drop-head" => Overflow::DropHead,
                "reject-publish" => Overflow::RejectPublish,
                "reject-publish-dlx" => Overflow::RejectPublishDlx,
                _ => return Err(invalid("x-overflow", "invalid_overflow".into())),
            };
        }
        if let Some(v) = get("x-queue-mode") {
            a.lazy = match text("x-queue-mode", v)?.as_str() {
                "default" => false,
                "lazy" => true,
                other => return Err(invalid("x-queue-mode", format!("\"unsupported queue mode '{other}'\""))),
            };
        }
        if let Some(v) = get("x-queue-version") {
            let n = int("x-queue-version", v)?;
            if n != 1 && n != 2 {
                return Err(invalid("x-queue-version", format!("\"unsupported queue version '{n}'\"")));
            }
        }
        if let Some(v) = get("x-single-active-consumer") {
            let AMQPValue::Boolean(b) = v else {
                return Err(invalid("x-single-active-consumer", format!("{{unacceptable_type,{}}}", type_name(v))));
            };
            a.single_active_consumer = *b;
        }
        if let Some(v) = get("x-queue-type") {
            a.queue_type = match text("x-queue-type", v)?.as_str() {
                "classic" => QueueType::Classic,
                "quorum" => QueueType::Quorum,
                other => return Err(invalid("x-queue-type", format!("\"unsupported queue type '{other}'\""))),
            };
        }
        let (refused, type_name) = match a.queue_type {
            QueueType::Classic => (NOT_CLASSIC, "rabbit_classic_queue"),
            QueueType::Quorum => (NOT_QUORUM, "rabbit_quorum_queue"),
        };
        if let Some(k) = refused.iter().find(|k| get(k).is_some()) {
            return Err(precondition(format!("invalid arg '{k}' for queue '{queue}' in vhost '{vhost}' of queue type {type_name}")));
        }
        if a.queue_type == QueueType::Quorum {
            if let Some(v) = get("x-dead-letter-strategy")
                && !matches!(as_str(v).as_deref(), Some("at-most-once" | "at-least-once"))
            {
                return Err(invalid("x-dead-letter-strategy", "invalid_dlx_strategy".into()));
            }
            // RabbitMQ 3.10 accepts any value here and applies only a non-negative integer.
            a.delivery_limit = get("x-delivery-limit").and_then(as_int).and_then(|n| u64::try_from(n).ok());
        }
        Ok(a)
    }
}

/// RabbitMQ's equivalence check of a redeclare's arguments `got` against the queue's `cur`.
pub fn check_equivalent(got: &FieldTable, cur: &FieldTable, queue: &str, vhost: &str) -> Result<(), ReplyError> {
    for arg in EQUIV_ARGS {
        let prefix = || format!("inequivalent arg '{arg}' for queue '{queue}' in vhost '{vhost}'");
        match (got.inner().get(*arg), cur.inner().get(*arg)) {
            (None, None) => {}
            (Some(g), None) => {
                return Err(precondition(format!(
                    "{}: received the value '{}' of type '{}' but current is none",
                    prefix(),
                    show(g),
                    type_name(g)
                )));
            }
            (None, Some(c)) => {
                return Err(precondition(format!(
                    "{}: received none but current is the value '{}' of type '{}'",
                    prefix(),
                    show(c),
                    type_name(c)
                )));
            }
            (Some(g), Some(c)) => {
                let same = match (as_int(g), as_int(c)) {
                    (Some(a), Some(b)) => a == b,
                    _ => show(g) == show(c),
                };
                if !same {
                    return Err(precondition(format!("{}: received '{}' but current is '{}'", prefix(), show(g), show(c))));
                }
            }
        }
    }
    Ok(())
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// RabbitMQ's name for a field value type (as in its equivalence errors).
pub fn type_name(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

pub(super) fn show(v: &AMQPValue) -> String {
    match v {
        AMQPValue::Boolean(b) => yes_no(*b).into(),
        AMQPValue::ShortShortInt(x) => x.to_string(),
        AMQPValue::ShortShortUInt(x) => x.to_string(),
        AMQPValue::ShortInt(x) => x.to_string(),
        AMQPValue::ShortUInt(x) => x.to_string(),
        AMQPValue::LongInt(x) => x.to_string(),
        AMQPValue::LongUInt(x) => x.to_string(),
        AMQPValue::LongLongInt(x) => x.to_string(),
        AMQPValue::Timestamp(x) => x.to_string(),
        AMQPValue::Float(x) => x.to_string(),
        AMQPValue::Double(x) => x.to_string(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => format!("{other:?}"),
    }
}

pub fn as_int(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(x) => *x as i64,
        AMQPValue::ShortShortUInt(x) => *x as i64,
        AMQPValue::ShortInt(x) => *x as i64,
        AMQPValue::ShortUInt(x) => *x as i64,
        AMQPValue::LongInt(x) => *x as i64,
        AMQPValue::LongUInt(x) => *x as i64,
        AMQPValue::LongLongInt(x) => *x,
        _ => return None,
    })
}

/// A string-valued argument (long or short string).
pub fn as_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn err(pairs: &[(&str, AMQPValue)]) -> String {
        QueueArgs::parse(&table(pairs), "q", "/").unwrap_err().text
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    /// Texts as a RabbitMQ 3.10 node gives them.
    #[test]
    fn errors_match_rabbitmq() {
        let p = "PRECONDITION_FAILED - invalid arg";
        assert_eq!(err(&[("x-message-ttl", s("abc"))]), format!("{p} 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\""));
        assert_eq!(err(&[("x-message-ttl", AMQPValue::LongInt(-1))]), format!("{p} 'x-message-ttl' for queue 'q' in vhost '/': {{value_negative,-1}}"));
        assert_eq!(err(&[("x-message-ttl", AMQPValue::LongLongInt(1 << 40))]), format!("{p} 'x-message-ttl' for queue 'q' in vhost '/': {{value_too_large,1099511627776}}"));
        assert_eq!(err(&[("x-expires", AMQPValue::LongInt(0))]), format!("{p} 'x-expires' for queue 'q' in vhost '/': {{value_zero,0}}"));
        assert_eq!(err(&[("x-max-priority", AMQPValue::LongInt(300))]), format!("{p} 'x-max-priority' for queue 'q' in vhost '/': {{max_value_exceeded,300}}"));
        assert_eq!(err(&[("x-overflow", s("bogus"))]), format!("{p} 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"));
        assert_eq!(err(&[("x-overflow", AMQPValue::LongInt(5))]), format!("{p} 'x-overflow' for queue 'q' in vhost '/': {{unacceptable_type,signedint}}"));
        assert_eq!(err(&[("x-queue-type", s("bogus"))]), format!("{p} 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'bogus'\""));
        assert_eq!(
            err(&[("x-dead-letter-exchange", AMQPValue::LongInt(5))]),
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        assert_eq!(err(&[("x-dead-letter-routing-key", s("rk"))]), format!("{p} 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"));
        assert_eq!(err(&[("x-single-active-consumer", s("yes"))]), format!("{p} 'x-single-active-consumer' for queue 'q' in vhost '/': {{unacceptable_type,longstr}}"));
        assert_eq!(err(&[("x-queue-mode", s("bogus"))]), format!("{p} 'x-queue-mode' for queue 'q' in vhost '/': \"unsupported queue mode 'bogus'\""));
        assert_eq!(err(&[("x-delivery-limit", AMQPValue::LongInt(5))]), format!("{p} 'x-delivery-limit' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"));
        assert_eq!(
            err(&[("x-queue-type", s("quorum")), ("x-max-priority", AMQPValue::LongInt(5))]),
            format!("{p} 'x-max-priority' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue")
        );
        assert_eq!(
            err(&[("x-queue-type", s("quorum")), ("x-dead-letter-strategy", s("bogus"))]),
            format!("{p} 'x-dead-letter-strategy' for queue 'q' in vhost '/': invalid_dlx_strategy")
        );
        // RabbitMQ's order: x-message-ttl is checked before x-max-priority.
        assert_eq!(
            err(&[("x-max-priority", AMQPValue::LongInt(300)), ("x-message-ttl", AMQPValue::LongInt(-5))]),
            format!("{p} 'x-message-ttl' for queue 'q' in vhost '/': {{value_negative,-5}}")
        );
    }

    #[test]
    fn parses_typed_values() {
        let a = QueueArgs::parse(
            &table(&[
                ("x-message-ttl", AMQPValue::LongInt(0)),
                ("x-max-priority", AMQPValue::ShortShortUInt(10)),
                ("x-overflow", s("reject-publish-dlx")),
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s("dead")),
                ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ]),
            "q",
            "/",
        )
        .unwrap();
        assert_eq!(a.message_ttl, Some(0));
        assert_eq!(a.max_priority, Some(10));
        assert_eq!(a.overflow, Overflow::RejectPublishDlx);
        assert_eq!(a.dead_letter_exchange.as_deref(), Some(""));
        assert_eq!(a.dead_letter_routing_key.as_deref(), Some("dead"));
        assert!(a.single_active_consumer);
    }
}
