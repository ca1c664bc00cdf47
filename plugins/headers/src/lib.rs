//! Built-in `headers` exchange type, matching like RabbitMQ's rabbit_exchange_type_headers:
//! - binding argument `x-match` is `all` (default), `any`, `all-with-x` or `any-with-x`;
//! - in `all`/`any` mode binding arguments whose name starts with `x-` are ignored; in the
//!   `-with-x` modes they take part (`x-match` itself never does, as seen on RabbitMQ 3.10);
//! - a binding argument of type void matches on the presence of the header only;
//! - values compare like Erlang's `==`: integers of any width and timestamps compare as
//!   numbers (and equal a float of the same value), strings and byte arrays as bytes.
//!
//! The bindings are indexed by argument name and value (`index.rs`), so that a message is
//! compared only with the bindings that one of its headers can satisfy; `headers_match` stays the
//! definition of a match, and the index hands it the candidates it cannot decide alone.

mod index;
#[cfg(test)]
mod tests;

use warren_plugin_sdk::exchange::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

struct HeadersBinding {
    dest: u32,
    key: String,
    /// Sorted by name.
    args: Vec<(String, FieldValue)>,
    mode: Mode,
}

impl Mode {
    fn is_all(self) -> bool {
        matches!(self, Mode::All | Mode::AllWithX)
    }

    /// Whether a binding argument named `name` takes part in matching. `x-match` itself never
    /// does (RabbitMQ 3.10 routes a message with only `x-k` to an all-with-x binding
    /// {x-match, x-k}); other `x-` arguments only in the -with-x modes.
    fn counts(self, name: &str) -> bool {
        name != "x-match" && (matches!(self, Mode::AllWithX | Mode::AnyWithX) || !name.starts_with("x-"))
    }
}

/// Like RabbitMQ's parse_x_match: anything unexpected means `all` (validation refuses it earlier).
fn parse_mode(args: &[(String, FieldValue)]) -> Mode {
    match lookup(args, "x-match") {
        Some(FieldValue::LongString(s)) => match s.as_str() {
            "any" => Mode::Any,
            "all-with-x" => Mode::AllWithX,
            "any-with-x" => Mode::AnyWithX,
            _ => Mode::All,
        },
        _ => Mode::All,
    }
}

/// Erlang's `~tp` rendering of a binary, as in RabbitMQ's error texts.
fn erl_binary(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => {
            let esc = s.replace('\\', "\\\\").replace('"', "\\\"");
            if s.is_ascii() { format!("<<\"{esc}\">>") } else { format!("<<\"{esc}\"/utf8>>") }
        }
        _ => {
            let parts: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
            format!("<<{}>>", parts.join(","))
        }
    }
}

/// The Erlang type name and `~tp` value of a field value, for error texts.
fn erl_type_and_value(v: &FieldValue) -> (&'static str, String) {
    match v {
        FieldValue::Void => ("void", "undefined".into()),
        FieldValue::Boolean(b) => ("bool", b.to_string()),
        FieldValue::Signed(i) => ("long", i.to_string()),
        FieldValue::Unsigned(u) => ("unsignedint", u.to_string()),
        FieldValue::Float(f) => ("float", format!("{f:?}")),
        FieldValue::Double(f) => ("double", format!("{f:?}")),
        FieldValue::Decimal((s, v)) => ("decimal", format!("{{{s},{v}}}")),
        FieldValue::LongString(s) => ("longstr", erl_binary(s.as_bytes())),
        FieldValue::Bytes(b) => ("binary", erl_binary(b)),
        FieldValue::Timestamp(t) => ("timestamp", t.to_string()),
        FieldValue::Table(_) => ("table", "[...]".into()),
        FieldValue::Array(_) => ("array", "[...]".into()),
    }
}

enum Num {
    Int(i128),
    Float(f64),
}

fn as_num(v: &FieldValue) -> Option<Num> {
    Some(match v {
        FieldValue::Signed(i) => Num::Int(*i as i128),
        FieldValue::Unsigned(u) => Num::Int(*u as i128),
        FieldValue::Timestamp(t) => Num::Int(*t as i128),
        FieldValue::Float(f) => Num::Float(*f as f64),
        FieldValue::Double(f) => Num::Float(*f),
        _ => return None,
    })
}

fn as_binary(v: &FieldValue) -> Option<&[u8]> {
    match v {
        FieldValue::LongString(s) => Some(s.as_bytes()),
        FieldValue::Bytes(b) => Some(b),
        _ => None,
    }
}

/// Erlang `==` on the decoded values.
fn erl_eq(a: &FieldValue, b: &FieldValue) -> bool {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return match (x, y) {
            (Num::Int(x), Num::Int(y)) => x == y,
            (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => (i as f64) == f,
            (Num::Float(x), Num::Float(y)) => x == y,
        };
    }
    if let (Some(x), Some(y)) = (as_binary(a), as_binary(b)) {
        return x == y;
    }
    match (a, b) {
        (FieldValue::Boolean(x), FieldValue::Boolean(y)) => x == y,
        (FieldValue::Decimal(x), FieldValue::Decimal(y)) => x == y,
        (FieldValue::Table(x), FieldValue::Table(y)) => x == y,
        (FieldValue::Array(x), FieldValue::Array(y)) => x == y,
        (FieldValue::Void, FieldValue::Void) => true,
        _ => false,
    }
}

/// RabbitMQ's headers_match over name-sorted binding arguments and message headers.
fn headers_match(pattern: &[(String, FieldValue)], data: &[(String, FieldValue)], mode: Mode) -> bool {
    let all = mode.is_all();
    let (mut all_match, mut any_match) = (true, false);
    let (mut p, mut d) = (0, 0);
    loop {
        if all && !all_match {
            return false;
        }
        if !all && any_match {
            return true;
        }
        let Some((pk, pv)) = pattern.get(p) else {
            return if all { all_match } else { any_match };
        };
        if !mode.counts(pk) {
            p += 1;
            continue;
        }
        let Some((dk, dv)) = data.get(d) else {
            // binding arguments left but no headers: `all` fails, `any` keeps what it had
            all_match = false;
            p = pattern.len();
            continue;
        };
        match pk.as_bytes().cmp(dk.as_bytes()) {
            std::cmp::Ordering::Greater => d += 1,
            std::cmp::Ordering::Less => {
                all_match = false;
                p += 1;
            }
            std::cmp::Ordering::Equal => {
                if matches!(pv, FieldValue::Void) || erl_eq(pv, dv) {
                    any_match = true;
                } else {
                    all_match = false;
                }
                p += 1;
                d += 1;
            }
        }
    }
}

fn sorted(mut t: Vec<(String, FieldValue)>) -> Vec<(String, FieldValue)> {
    if !t.is_sorted_by(|a, b| a.0 <= b.0) {
        t.sort_by(|a, b| a.0.cmp(&b.0));
    }
    t
}

/// The exchange's bindings, each with its arguments sorted by name and its mode parsed, indexed.
#[derive(Default)]
struct Headers {
    index: index::Index,
}

impl ExchangeType for Headers {
    fn describe() -> Info {
        Info {
            name: "headers".into(),
            description: "AMQP headers exchange, as per the AMQP specification".into(),
            reads: RoutingInputs::HEADERS,
            deterministic: true,
        }
    }
    fn validate_binding(&self, b: Binding) -> Result<(), String> {
        match lookup(&b.arguments, "x-match") {
            None => Ok(()),
            Some(FieldValue::LongString(s)) => match s.as_str() {
                "all" | "any" | "all-with-x" | "any-with-x" => Ok(()),
                other => Err(format!(
                    "Invalid x-match field value {}; expected all, any, all-with-x, or any-with-x",
                    erl_binary(other.as_bytes())
                )),
            },
            Some(v) => {
                let (ty, val) = erl_type_and_value(v);
                Err(format!("Invalid x-match field type {ty} (value {val}); expected longstr"))
            }
        }
    }
    fn add_binding(&mut self, b: Binding, _: &mut Bindings) -> Result<(), String> {
        let args = sorted(b.arguments);
        let mode = parse_mode(&args);
        self.index.add(HeadersBinding { dest: b.destination, key: b.binding_key, args, mode });
        Ok(())
    }
    fn remove_binding(&mut self, b: Binding, _: &mut Bindings) -> bool {
        self.index.remove(b.destination, &b.binding_key, &sorted(b.arguments))
    }
    fn route(&self, msg: MessageView, _: &Bindings) -> Vec<DestinationId> {
        let headers = sorted(msg.headers);
        let mut out = Vec::new();
        self.index.route(&headers, &mut out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out
    }
}

warren_plugin_sdk::export_exchange_type!(Headers);
