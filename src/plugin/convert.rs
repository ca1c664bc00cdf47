//! AMQP field tables and basic properties (amq-protocol) to their WIT forms (the parts needed).

use super::bindings::warren::plugin::types::{BasicProperties, FieldValue};
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable, ShortString, generation};

/// WIT form of a field table, sorted by name (a `BTreeMap` already is).
pub(crate) fn table(t: &FieldTable) -> Vec<(String, FieldValue)> {
    t.inner().iter().map(|(k, v)| (k.as_str().to_string(), value(v))).collect()
}

pub(crate) fn value(v: &AMQPValue) -> FieldValue {
    match v {
        AMQPValue::Boolean(b) => FieldValue::Boolean(*b),
        AMQPValue::ShortShortInt(i) => FieldValue::Signed(*i as i64),
        AMQPValue::ShortInt(i) => FieldValue::Signed(*i as i64),
        AMQPValue::LongInt(i) => FieldValue::Signed(*i as i64),
        AMQPValue::LongLongInt(i) => FieldValue::Signed(*i),
        AMQPValue::ShortShortUInt(u) => FieldValue::Unsigned(*u as u64),
        AMQPValue::ShortUInt(u) => FieldValue::Unsigned(*u as u64),
        AMQPValue::LongUInt(u) => FieldValue::Unsigned(*u as u64),
        AMQPValue::Float(f) => FieldValue::Float(*f),
        AMQPValue::Double(f) => FieldValue::Double(*f),
        AMQPValue::DecimalValue(d) => FieldValue::Decimal((d.scale, d.value)),
        AMQPValue::ShortString(s) => FieldValue::LongString(s.as_str().to_string()),
        AMQPValue::LongString(s) => FieldValue::LongString(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ByteArray(b) => FieldValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::Timestamp(t) => FieldValue::Timestamp(*t),
        AMQPValue::FieldTable(t) => FieldValue::Table(
            cookie_factory::gen_simple(generation::gen_field_table(t), Vec::new()).unwrap_or_default(),
        ),
        AMQPValue::FieldArray(a) => FieldValue::Array(
            cookie_factory::gen_simple(generation::gen_field_array(a), Vec::new()).unwrap_or_default(),
        ),
        AMQPValue::Void => FieldValue::Void,
    }
}

/// WIT form of a message's basic properties (all but `headers`, which travel separately).
pub(crate) fn properties(p: &AMQPProperties) -> BasicProperties {
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_string());
    BasicProperties {
        content_type: s(p.content_type()),
        content_encoding: s(p.content_encoding()),
        delivery_mode: *p.delivery_mode(),
        priority: *p.priority(),
        correlation_id: s(p.correlation_id()),
        reply_to: s(p.reply_to()),
        expiration: s(p.expiration()),
        message_id: s(p.message_id()),
        timestamp: *p.timestamp(),
        type_: s(p.kind()),
        user_id: s(p.user_id()),
        app_id: s(p.app_id()),
        cluster_id: s(p.cluster_id()),
    }
}
