//! How rabbitmqctl 3.10 prints the Erlang values of its listings, in its table (and csv) and its
//! JSON formatter: pids, AMQP field tables (x-arguments, client properties), IP addresses,
//! tuples. A listing builds a [`Cell`] per value; `warrenctl` prints whichever form its
//! formatter needs (see `cli::render`). Observed against the reference node:
//!
//! | value | table / csv | JSON |
//! |---|---|---|
//! | pid | `<warren@localhost.1.7.0>` | `"#PID<1.7.0>"` |
//! | field table | `[{"x-max-length",10},{"x-tbl",[{"a",1}]},{"x-list",[1,"two"]}]` | `[["x-max-length","signedint",10],["x-tbl","table",[["a","signedint",1]]],["x-list","array",{"signedint":1,"longstr":"two"}]]` |
//! | empty table | `[]` | `[]` |
//! | IP address | `127.0.0.1` | `[127,0,0,1]` |
//! | `{0,9,1}` | `{0,9,1}` | `[0,9,1]` |
//!
//! An array's JSON is an object of `type: value` pairs in order, duplicate keys included (the
//! CLI encodes the Erlang property list as it is), so it is kept as text.

use crate::broker::queue_args::type_name;
use amq_protocol::types::{AMQPValue, FieldTable};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt::Write;
use std::net::IpAddr;

/// A listed value: `value` is what the JSON formatter prints (and what admin clients read);
/// `table` / `json` are the exact texts where they are not `cli::cell(value)` / `value`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
}

impl From<Value> for Cell {
    fn from(value: Value) -> Cell {
        Cell { value, table: None, json: None }
    }
}

/// RabbitMQ's empty value (`''`): a blank in tables, `""` in JSON.
pub fn none() -> Cell {
    Cell::from(json!(""))
}

/// Warren's process ids in Erlang form: connection `ID` is `<warren@localhost.1.ID.0>`, its
/// channel `N` `<warren@localhost.1.ID.N>`, a queue `<warren@localhost.1.0.K>` (K: a number
/// unique among live queues). `warrenctl close_connection` takes a connection's.
pub fn pid(id: u64, serial: u64) -> Cell {
    Cell { value: json!(format!("#PID<1.{id}.{serial}>")), table: Some(format!("<{}.1.{id}.{serial}>", crate::alarm::NODE_NAME)), json: None }
}

/// The connection id in a pid as `list_connections` prints it (table or JSON form), or a bare
/// connection id.
pub fn parse_connection_pid(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let inner = s.strip_prefix("#PID<").or_else(|| s.strip_prefix('<').and_then(|r| r.strip_prefix(crate::alarm::NODE_NAME)).and_then(|r| r.strip_prefix('.')))?;
    let parts: Vec<&str> = inner.strip_suffix('>')?.split('.').collect();
    match parts.as_slice() {
        ["1", id, "0"] => id.parse().ok(),
        _ => None,
    }
}

/// A dotted IPv4 address as a tuple of 4 numbers, IPv6 as 8 (JSON); text as usual.
pub fn ip(addr: IpAddr) -> Cell {
    let parts: Vec<Value> = match addr {
        IpAddr::V4(a) => a.octets().iter().map(|o| json!(o)).collect(),
        IpAddr::V6(a) => a.segments().iter().map(|o| json!(o)).collect(),
    };
    Cell { value: Value::Array(parts), table: Some(addr.to_string()), json: None }
}

/// An Erlang tuple of numbers, `{0,9,1}` (JSON: an array).
pub fn tuple(items: &[u64]) -> Cell {
    let text = items.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    Cell { value: json!(items), table: Some(format!("{{{text}}}")), json: None }
}

/// A queue's pid (see [`pid`]).
pub fn queue_pid(q: &crate::broker::queue::Queue) -> Cell {
    pid(0, (q as *const _ as usize as u64) >> 3)
}

/// A list of words, `[a, b]` in tables (`cli::cell` prints it so).
pub fn words(items: &[String]) -> Cell {
    Cell::from(json!(items))
}

/// `[{warren@localhost, running}]` / `{"warren@localhost":"running"}` (list_vhosts' cluster_state).
pub fn node_states(state: &str) -> Cell {
    let node = crate::alarm::NODE_NAME;
    Cell { value: json!({node: state}), table: Some(format!("[{{{node}, {state}}}]")), json: None }
}

/// A field table (x-arguments, client properties).
pub fn table(t: &FieldTable) -> Cell {
    let mut text = String::from("[");
    let mut js = String::from("[");
    let mut value = Vec::new();
    for (i, (k, v)) in t.inner().iter().enumerate() {
        if i > 0 {
            text.push(',');
            js.push(',');
        }
        let key = Value::String(k.as_str().to_string());
        let _ = write!(text, "{{{},{}}}", inspect_str(k.as_str()), value_text(v));
        let (vj, vs) = value_json(v);
        let _ = write!(js, "[{key},\"{}\",{vs}]", type_name(v));
        value.push(json!([key, type_name(v), vj]));
    }
    text.push(']');
    js.push(']');
    Cell { value: Value::Array(value), table: Some(text), json: Some(js) }
}

/// A string as Elixir's `inspect` prints it: quoted, with `"`, `\` and control characters
/// escaped.
fn inspect_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn number_text(v: &AMQPValue) -> Option<String> {
    Some(match v {
        AMQPValue::ShortShortInt(i) => i.to_string(),
        AMQPValue::ShortShortUInt(i) => i.to_string(),
        AMQPValue::ShortInt(i) => i.to_string(),
        AMQPValue::ShortUInt(i) => i.to_string(),
        AMQPValue::LongInt(i) => i.to_string(),
        AMQPValue::LongUInt(i) => i.to_string(),
        AMQPValue::LongLongInt(i) => i.to_string(),
        AMQPValue::Timestamp(t) => t.to_string(),
        AMQPValue::Float(f) => json!(f).to_string(),
        AMQPValue::Double(f) => json!(f).to_string(),
        _ => return None,
    })
}

/// A field value in the table formatter's text.
fn value_text(v: &AMQPValue) -> String {
    if let Some(n) = number_text(v) {
        return n;
    }
    match v {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortString(s) => inspect_str(s.as_str()),
        AMQPValue::LongString(s) => inspect_str(&String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ByteArray(b) => inspect_str(&String::from_utf8_lossy(b.as_slice())),
        AMQPValue::FieldTable(t) => table(t).table.unwrap_or_default(),
        AMQPValue::FieldArray(a) => format!("[{}]", a.as_slice().iter().map(value_text).collect::<Vec<_>>().join(",")),
        AMQPValue::DecimalValue(d) => format!("{{{},{}}}", d.scale, d.value),
        _ => "undefined".into(),
    }
}

/// A field value in the JSON formatter: (value, exact text).
fn value_json(v: &AMQPValue) -> (Value, String) {
    let plain = |x: Value| {
        let s = x.to_string();
        (x, s)
    };
    match v {
        AMQPValue::FieldTable(t) => {
            let c = table(t);
            (c.value, c.json.unwrap_or_default())
        }
        AMQPValue::FieldArray(a) => {
            let mut map = serde_json::Map::new();
            let mut text = String::from("{");
            for (i, item) in a.as_slice().iter().enumerate() {
                let (vj, vs) = value_json(item);
                if i > 0 {
                    text.push(',');
                }
                let _ = write!(text, "\"{}\":{vs}", type_name(item));
                map.insert(type_name(item).to_string(), vj);
            }
            text.push('}');
            (Value::Object(map), text)
        }
        AMQPValue::DecimalValue(d) => plain(json!([d.scale, d.value])),
        AMQPValue::Void => plain(json!("undefined")),
        other => plain(super::api::fields::value_to_json(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{FieldArray, LongString};

    #[test]
    fn field_tables_as_rabbitmqctl() {
        let mut inner = FieldTable::default();
        inner.insert("a".into(), AMQPValue::LongInt(1));
        let mut t = FieldTable::default();
        t.insert("x-max-length".into(), AMQPValue::LongInt(10));
        t.insert("x-s".into(), AMQPValue::LongString(LongString::from("a\tb\"c")));
        t.insert("x-tbl".into(), AMQPValue::FieldTable(inner));
        t.insert(
            "x-z".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongInt(1), AMQPValue::LongInt(2), AMQPValue::LongString(LongString::from("two"))])),
        );
        let c = table(&t);
        assert_eq!(c.table.as_deref(), Some(r#"[{"x-max-length",10},{"x-s","a\tb\"c"},{"x-tbl",[{"a",1}]},{"x-z",[1,2,"two"]}]"#));
        assert_eq!(
            c.json.as_deref(),
            Some(r#"[["x-max-length","signedint",10],["x-s","longstr","a\tb\"c"],["x-tbl","table",[["a","signedint",1]]],["x-z","array",{"signedint":1,"signedint":2,"longstr":"two"}]]"#)
        );
        assert_eq!(table(&FieldTable::default()).table.as_deref(), Some("[]"));
        assert_eq!(table(&FieldTable::default()).json.as_deref(), Some("[]"));
    }

    #[test]
    fn pids_round_trip() {
        let p = pid(42, 0);
        assert_eq!(p.table.as_deref(), Some("<warren@localhost.1.42.0>"));
        assert_eq!(p.value, json!("#PID<1.42.0>"));
        assert_eq!(parse_connection_pid("<warren@localhost.1.42.0>"), Some(42));
        assert_eq!(parse_connection_pid("#PID<1.42.0>"), Some(42));
        assert_eq!(parse_connection_pid("42"), Some(42));
        assert_eq!(parse_connection_pid("<warren@localhost.1.42.3>"), None);
        assert_eq!(ip("127.0.0.1".parse().unwrap()).value, json!([127, 0, 0, 1]));
        assert_eq!(tuple(&[0, 9, 1]).table.as_deref(), Some("{0,9,1}"));
    }
}
