//! AMQP field tables as the management API shows and takes them (RabbitMQ's
//! `rabbit_mgmt_format`): JSON objects; strings, integers, floats, booleans, arrays and nested
//! objects map both ways, timestamps and decimals show as numbers, byte arrays as strings.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use serde_json::{Map, Value, json};

pub fn table_to_json(t: &FieldTable) -> Value {
    Value::Object(t.inner().iter().map(|(k, v)| (k.as_str().to_string(), value_to_json(v))).collect::<Map<_, _>>())
}

pub fn value_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(i) => json!(i),
        AMQPValue::ShortShortUInt(i) => json!(i),
        AMQPValue::ShortInt(i) => json!(i),
        AMQPValue::ShortUInt(i) => json!(i),
        AMQPValue::LongInt(i) => json!(i),
        AMQPValue::LongUInt(i) => json!(i),
        AMQPValue::LongLongInt(i) => json!(i),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!(d.value as f64 / 10f64.powi(d.scale as i32)),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::ByteArray(b) => json!(String::from_utf8_lossy(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

/// A JSON object as a field table; `null` and a missing value give an empty table.
pub fn json_to_table(v: &Value) -> Result<FieldTable, String> {
    let mut t = FieldTable::default();
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                t.insert(k.as_str().into(), json_to_value(v)?);
            }
        }
        other => return Err(format!("arguments must be an object, not {other}")),
    }
    Ok(t)
}

pub fn json_to_value(v: &Value) -> Result<AMQPValue, String> {
    Ok(match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) => AMQPValue::Double(f),
            _ => return Err(format!("number out of range: {n}")),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
        Value::Array(a) => AMQPValue::FieldArray(FieldArray::from(a.iter().map(json_to_value).collect::<Result<Vec<_>, _>>()?)),
        Value::Object(_) => AMQPValue::FieldTable(json_to_table(v)?),
    })
}

/// RabbitMQ's `properties_key` of a binding: the routing key form-encoded (space as `+`, `~` as
/// `%7E`) when it has no arguments, else that, `~` and a short hash of the arguments (RabbitMQ
/// hashes the Erlang term; clients treat the key as opaque).
pub fn properties_key(routing_key: &str, args: &FieldTable) -> String {
    let key = percent_encode(routing_key);
    if args.inner().is_empty() {
        return key;
    }
    use sha2::Digest;
    let text = table_to_json(args).to_string();
    let d = sha2::Sha256::digest(text.as_bytes());
    let h = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &d[..6]);
    format!("{key}~{h}")
}

/// Form encoding as RabbitMQ's `properties_key`: letters, digits and `-._` kept, space as `+`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_through_json() {
        let j = json!({"x-max-length": 10, "s": "a", "f": 1.5, "b": true, "l": [1, "x"], "t": {"k": 2}});
        let t = json_to_table(&j).unwrap();
        assert_eq!(table_to_json(&t), j);
        assert!(json_to_table(&json!([1])).is_err());
        assert_eq!(properties_key("a.b", &FieldTable::default()), "a.b");
        assert_eq!(properties_key("a b~", &FieldTable::default()), "a+b%7E");
        assert!(properties_key("k", &t).starts_with("k~"));
    }
}
