//! Native (Rust) implementations of the four standard exchange types, behind the
//! exchange-type boundary of `crate::exchange_type`. The Wasm built-ins of the plugin issue replace
//! them one for one.

use crate::exchange_type::*;
use amq_protocol::types::{AMQPValue, FieldTable};
use std::collections::HashMap;
use std::sync::Arc;

/// The factories of direct, fanout, topic and headers.
pub fn standard_types() -> Vec<Arc<dyn ExchangeTypeFactory>> {
    vec![
        Arc::new(Native::new("direct", "AMQP direct exchange", key_only(), || Box::<Direct>::default())),
        Arc::new(Native::new("fanout", "AMQP fanout exchange", RoutingInputs::default(), || Box::<Fanout>::default())),
        Arc::new(Native::new("topic", "AMQP topic exchange", key_only(), || Box::<Topic>::default())),
        Arc::new(Native::new(
            "headers",
            "AMQP headers exchange",
            RoutingInputs { headers: true, ..Default::default() },
            || Box::<Headers>::default(),
        )),
    ]
}

fn key_only() -> RoutingInputs {
    RoutingInputs { routing_key: true, ..Default::default() }
}

struct Native {
    info: TypeInfo,
    make: fn() -> Box<dyn ExchangeRouter>,
}

impl Native {
    fn new(name: &str, description: &str, reads: RoutingInputs, make: fn() -> Box<dyn ExchangeRouter>) -> Native {
        Native { info: TypeInfo { name: name.into(), description: description.into(), reads, deterministic: true }, make }
    }
}

impl ExchangeTypeFactory for Native {
    fn info(&self) -> &TypeInfo {
        &self.info
    }
    fn validate(&self, _arguments: &FieldTable) -> Result<(), String> {
        Ok(())
    }
    fn create(&self, _exchange: &str, _arguments: &FieldTable) -> Result<Box<dyn ExchangeRouter>, TypeFailure> {
        Ok((self.make)())
    }
}

fn remove_one(v: &mut Vec<DestinationId>, d: DestinationId) {
    if let Some(i) = v.iter().position(|x| *x == d) {
        v.swap_remove(i);
    }
}

#[derive(Default)]
struct Direct {
    by_key: HashMap<String, Vec<DestinationId>>,
}

impl ExchangeRouter for Direct {
    fn validate_binding(&mut self, _b: &BindingView<'_>) -> Result<Result<(), String>, TypeFailure> {
        Ok(Ok(()))
    }
    fn add_binding(&mut self, b: &BindingView<'_>) -> Result<(), TypeFailure> {
        self.by_key.entry(b.binding_key.to_owned()).or_default().push(b.destination);
        Ok(())
    }
    fn remove_binding(&mut self, b: &BindingView<'_>) -> Result<(), TypeFailure> {
        if let Some(v) = self.by_key.get_mut(b.binding_key) {
            remove_one(v, b.destination);
            if v.is_empty() {
                self.by_key.remove(b.binding_key);
            }
        }
        Ok(())
    }
    fn route(&mut self, msg: &MessageView<'_>, out: &mut Vec<DestinationId>) -> Result<(), TypeFailure> {
        if let Some(v) = self.by_key.get(msg.routing_key) {
            out.extend_from_slice(v);
        }
        Ok(())
    }
}

#[derive(Default)]
struct Fanout {
    all: Vec<DestinationId>,
}

impl ExchangeRouter for Fanout {
    fn validate_binding(&mut self, _b: &BindingView<'_>) -> Result<Result<(), String>, TypeFailure> {
        Ok(Ok(()))
    }
    fn add_binding(&mut self, b: &BindingView<'_>) -> Result<(), TypeFailure> {
        self.all.push(b.destination);
        Ok(())
    }
    fn remove_binding(&mut self, b: &BindingView<'_>) -> Result<(), TypeFailure> {
        remove_one(&mut self.all, b.destination);
        Ok(())
    }
    fn route(&mut self, _msg: &MessageView<'_>, out: &mut Vec<DestinationId>) -> Result<(), TypeFailure> {
        out.extend_from_slice(&self.all);
        Ok(())
    }
}

/// The words of a key: the empty key has none (RabbitMQ), but empty words between dots count.
fn words_of(key: &str) -> impl Iterator<Item = &str> {
    let n = if key.is_empty() { 0 } else { usize::MAX };
    key.split('.').take(n)
}

/// Topic patterns in a trie of words; `*` matches one word, `#` zero or more.
#[derive(Default)]
struct Topic {
    root: TopicNode,
}

#[derive(Default)]
struct TopicNode {
    words: HashMap<String, TopicNode>,
    star: Option<Box<TopicNode>>,
    hash: Option<Box<TopicNode>>,
    dests: Vec<DestinationId>,
}

impl TopicNode {
    fn child(&mut self, word: &str) -> &mut TopicNode {
        match word {
            "*" => self.star.get_or_insert_with(Default::default),
            "#" => self.hash.get_or_insert_with(Default::default),
            w => self.words.entry(w.to_owned()).or_default(),
        }
    }

    fn remove(&mut self, words: &[&str], d: DestinationId) {
        match words.split_first() {
            None => remove_one(&mut self.dests, d),
            Some((w, rest)) => {
                let slot = match *w {
                    "*" => self.star.as_deref_mut(),
                    "#" => self.hash.as_deref_mut(),
                    w => self.words.get_mut(w),
                };
                if let Some(n) = slot {
                    n.remove(rest, d);
                    if n.is_empty() {
                        match *w {
                            "*" => self.star = None,
                            "#" => self.hash = None,
                            w => {
                                self.words.remove(w);
                            }
                        }
                    }
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.dests.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }

    fn matches(&self, words: &[&str], out: &mut Vec<DestinationId>) {
        if let Some(h) = &self.hash {
            // `#` takes zero or more of the remaining words.
            for skip in 0..=words.len() {
                h.matches(&words[skip..], out);
            }
        }
        match words.split_first() {
            None => out.extend_from_slice(&self.dests),
            Some((w, rest)) => {
                if let Some(n) = self.words.get(*w) {
                    n.matches(rest, out);
                }
                if let Some(n) = &self.star {
                    n.matches(rest, out);
                }
            }
        }
    }
}

impl ExchangeRouter for Topic {
    fn validate_binding(&mut self, _b: &BindingView<'_>) -> Result<Result<(), String>, TypeFailure> {
        Ok(Ok(()))
    }
    fn add_binding(&mut self, b: &BindingView<'_>) -> Result<(), TypeFailure> {
        let mut node = &mut self.root;
        for w in words_of(b.binding_key) {
            node = node.child(w);
        }
        node.dests.push(b.destination);
        Ok(())
    }
    fn remove_binding(&mut self, b: &BindingView<'_>) -> Result<(), TypeFailure> {
        let words: Vec<&str> = words_of(b.binding_key).collect();
        self.root.remove(&words, b.destination);
        Ok(())
    }
    fn route(&mut self, msg: &MessageView<'_>, out: &mut Vec<DestinationId>) -> Result<(), TypeFailure> {
        let mut words: [&str; 32] = [""; 32];
        let mut n = 0;
        let mut overflow = Vec::new();
        for w in words_of(msg.routing_key) {
            if n < 32 {
                words[n] = w;
                n += 1;
            } else {
                if overflow.is_empty() {
                    overflow.extend_from_slice(&words);
                }
                overflow.push(w);
            }
        }
        if overflow.is_empty() {
            self.root.matches(&words[..n], out);
        } else {
            self.root.matches(&overflow, out);
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

/// Checks the x-match argument of a headers binding; the error text is RabbitMQ's.
pub fn parse_x_match(args: &FieldTable) -> Result<XMatch, String> {
    match args.inner().get("x-match") {
        None => Ok(XMatch::All),
        Some(v) => {
            let s = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                other => format!("{other:?}"),
            };
            match s.as_str() {
                "all" => Ok(XMatch::All),
                "any" => Ok(XMatch::Any),
                "all-with-x" => Ok(XMatch::AllWithX),
                "any-with-x" => Ok(XMatch::AnyWithX),
                _ => Err(format!("Invalid x-match field value <<\"{s}\">>; expected all, any, all-with-x, or any-with-x")),
            }
        }
    }
}

struct HeadersBinding {
    dest: DestinationId,
    mode: XMatch,
    args: Vec<(String, AMQPValue)>,
}

#[derive(Default)]
struct Headers {
    bindings: Vec<HeadersBinding>,
}

/// Values compare as RabbitMQ's `==`: integers of any width by value, the rest structurally.
fn value_eq(a: &AMQPValue, b: &AMQPValue) -> bool {
    fn int(v: &AMQPValue) -> Option<i128> {
        Some(match v {
            AMQPValue::ShortShortInt(x) => *x as i128,
            AMQPValue::ShortShortUInt(x) => *x as i128,
            AMQPValue::ShortInt(x) => *x as i128,
            AMQPValue::ShortUInt(x) => *x as i128,
            AMQPValue::LongInt(x) => *x as i128,
            AMQPValue::LongUInt(x) => *x as i128,
            AMQPValue::LongLongInt(x) => *x as i128,
            AMQPValue::Timestamp(x) => *x as i128,
            _ => return None,
        })
    }
    fn text(v: &AMQPValue) -> Option<&[u8]> {
        match v {
            AMQPValue::LongString(s) => Some(s.as_bytes()),
            AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
            _ => None,
        }
    }
    if let (Some(x), Some(y)) = (int(a), int(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (text(a), text(b)) {
        return x == y;
    }
    a == b
}

impl ExchangeRouter for Headers {
    fn validate_binding(&mut self, b: &BindingView<'_>) -> Result<Result<(), String>, TypeFailure> {
        Ok(parse_x_match(b.arguments).map(|_| ()))
    }
    fn add_binding(&mut self, b: &BindingView<'_>) -> Result<(), TypeFailure> {
        let mode = parse_x_match(b.arguments).unwrap_or(XMatch::All);
        let with_x = matches!(mode, XMatch::AllWithX | XMatch::AnyWithX);
        let args = b
            .arguments
            .inner()
            .iter()
            .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.as_str().starts_with("x-")))
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        self.bindings.push(HeadersBinding { dest: b.destination, mode, args });
        Ok(())
    }
    fn remove_binding(&mut self, b: &BindingView<'_>) -> Result<(), TypeFailure> {
        // Bindings of one destination differ by their arguments; rebuild the view to compare.
        let mut probe = Headers::default();
        probe.add_binding(b)?;
        let target = &probe.bindings[0];
        if let Some(i) = self.bindings.iter().position(|x| {
            x.dest == target.dest
                && x.mode as u8 == target.mode as u8
                && x.args.len() == target.args.len()
                && x.args.iter().zip(&target.args).all(|(p, q)| p.0 == q.0 && p.1 == q.1)
        }) {
            self.bindings.remove(i);
        }
        Ok(())
    }
    fn route(&mut self, msg: &MessageView<'_>, out: &mut Vec<DestinationId>) -> Result<(), TypeFailure> {
        let empty = FieldTable::default();
        let headers = msg.headers.unwrap_or(&empty).inner();
        for b in &self.bindings {
            let hit = |(k, v): &(String, AMQPValue)| match headers.get(k.as_str()) {
                None => false,
                Some(_) if matches!(v, AMQPValue::Void) => true,
                Some(h) => value_eq(h, v),
            };
            let matched = match b.mode {
                XMatch::All | XMatch::AllWithX => b.args.iter().all(hit),
                XMatch::Any | XMatch::AnyWithX => b.args.iter().any(hit),
            };
            if matched {
                out.push(b.dest);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(r: &mut dyn ExchangeRouter, key: &str, dest: DestinationId) {
        let args = FieldTable::default();
        r.add_binding(&BindingView { destination: dest, binding_key: key, arguments: &args }).unwrap();
    }

    fn route(r: &mut dyn ExchangeRouter, key: &str) -> Vec<DestinationId> {
        let mut out = Vec::new();
        r.route(&MessageView { routing_key: key, headers: None, body: None }, &mut out).unwrap();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn topic_semantics() {
        let mut t = Topic::default();
        bind(&mut t, "*.orange.*", 1);
        bind(&mut t, "*.*.rabbit", 2);
        bind(&mut t, "lazy.#", 3);
        bind(&mut t, "#", 4);
        bind(&mut t, "a.#.b", 5);
        assert_eq!(route(&mut t, "quick.orange.rabbit"), vec![1, 2, 4]);
        assert_eq!(route(&mut t, "lazy"), vec![3, 4]);
        assert_eq!(route(&mut t, "lazy.orange.male.rabbit"), vec![3, 4]);
        assert_eq!(route(&mut t, ""), vec![4]);
        assert_eq!(route(&mut t, "a.b"), vec![4, 5]);
        assert_eq!(route(&mut t, "a.x.y.b"), vec![4, 5]);
        assert_eq!(route(&mut t, "orange"), vec![4]);
        bind(&mut t, "*", 6);
        bind(&mut t, "*.*", 7);
        assert_eq!(route(&mut t, ""), vec![4], "the empty key has no words");
        assert_eq!(route(&mut t, "."), vec![4, 7], "empty words between dots count");
        assert_eq!(route(&mut t, "x"), vec![4, 6]);
        let args = FieldTable::default();
        t.remove_binding(&BindingView { destination: 4, binding_key: "#", arguments: &args }).unwrap();
        assert_eq!(route(&mut t, ""), Vec::<u32>::new());
    }

    #[test]
    fn headers_semantics() {
        let mut h = Headers::default();
        let mut all = FieldTable::default();
        all.insert("format".into(), AMQPValue::LongString("pdf".into()));
        all.insert("type".into(), AMQPValue::LongString("report".into()));
        h.add_binding(&BindingView { destination: 1, binding_key: "", arguments: &all }).unwrap();
        let mut any = all.clone();
        any.insert("x-match".into(), AMQPValue::LongString("any".into()));
        h.add_binding(&BindingView { destination: 2, binding_key: "", arguments: &any }).unwrap();
        let mut msg = FieldTable::default();
        msg.insert("format".into(), AMQPValue::LongString("pdf".into()));
        let mut out = Vec::new();
        h.route(&MessageView { routing_key: "", headers: Some(&msg), body: None }, &mut out).unwrap();
        assert_eq!(out, vec![2]);
        msg.insert("type".into(), AMQPValue::ShortString("report".into()));
        out.clear();
        h.route(&MessageView { routing_key: "", headers: Some(&msg), body: None }, &mut out).unwrap();
        assert_eq!(out, vec![1, 2]);
        let mut bad = FieldTable::default();
        bad.insert("x-match".into(), AMQPValue::LongString("bogus".into()));
        let err = h.validate_binding(&BindingView { destination: 3, binding_key: "", arguments: &bad }).unwrap().unwrap_err();
        assert_eq!(err, "Invalid x-match field value <<\"bogus\">>; expected all, any, all-with-x, or any-with-x");
    }
}
