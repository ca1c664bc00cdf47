//! Built-in `topic` exchange type (RabbitMQ's rabbit_exchange_type_topic): keys are words
//! separated by `.` (empty words allowed, the empty key has no words); in a binding key `*`
//! matches exactly one word and `#` zero or more words. Bindings live in a trie of words.

wit_bindgen::generate!({ path: "../../wit", world: "exchange-type" });

use std::cell::RefCell;
use std::collections::HashMap;
use warren_guest_common::{topic_words, DestSet};

/// One trie node: the binding-key prefix that leads here.
#[derive(Default)]
struct Node {
    /// Literal next words.
    words: HashMap<String, Node>,
    /// Next word `*`.
    star: Option<Box<Node>>,
    /// Next word `#`.
    hash: Option<Box<Node>>,
    /// Bindings whose key ends here.
    dests: DestSet,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.words.is_empty() && self.star.is_none() && self.hash.is_none() && self.dests.is_empty()
    }

    fn child_mut(&mut self, word: &str) -> &mut Node {
        match word {
            "*" => self.star.get_or_insert_with(Default::default),
            "#" => self.hash.get_or_insert_with(Default::default),
            w => self.words.entry(w.to_string()).or_default(),
        }
    }

    fn add(&mut self, key: &str, dest: u32) {
        let mut node = self;
        for w in topic_words(key) {
            node = node.child_mut(w);
        }
        node.dests.add(dest);
    }

    /// Removes one binding; prunes nodes left empty.
    fn remove(&mut self, words: &[&str], dest: u32) -> bool {
        let Some((first, rest)) = words.split_first() else {
            return self.dests.remove(dest);
        };
        let (removed, empty) = match *first {
            "*" | "#" => {
                let slot = if *first == "*" { &mut self.star } else { &mut self.hash };
                let Some(child) = slot.as_mut() else { return false };
                let removed = child.remove(rest, dest);
                let empty = child.is_empty();
                if empty {
                    *slot = None;
                }
                (removed, false)
            }
            w => {
                let Some(child) = self.words.get_mut(w) else { return false };
                (child.remove(rest, dest), child.is_empty())
            }
        };
        if empty {
            self.words.remove(*first);
        }
        removed
    }

    fn route(&self, words: &[&str], out: &mut Vec<u32>) {
        match words.split_first() {
            None => self.dests.extend_into(out),
            Some((first, rest)) => {
                if let Some(c) = self.words.get(*first) {
                    c.route(rest, out);
                }
                if let Some(c) = &self.star {
                    c.route(rest, out);
                }
            }
        }
        if let Some(h) = &self.hash {
            // `#` swallows 0, 1, ... all remaining words.
            for skip in 0..=words.len() {
                h.route(&words[skip..], out);
            }
        }
    }
}

thread_local! {
    static TRIE: RefCell<Node> = RefCell::new(Node::default());
}

fn route_one(key: &str) -> Vec<u32> {
    let words: Vec<&str> = topic_words(key).collect();
    let mut out = Vec::new();
    TRIE.with(|t| t.borrow().route(&words, &mut out));
    if out.len() > 1 {
        out.sort_unstable();
        out.dedup();
    }
    out
}

struct Topic;

/// Panic messages go to the broker's log (see `warren_guest_common::panics_to_log`).
fn log_panics() {
    warren_guest_common::panics_to_log(|m| warren::plugin::host::log(warren::plugin::host::LogLevel::Error, m));
}

impl Guest for Topic {
    fn describe() -> Info {
        log_panics();
        Info {
            name: "topic".into(),
            description: "AMQP topic exchange, as per the AMQP specification".into(),
            reads: RoutingInputs::ROUTING_KEY,
            deterministic: true,
        }
    }
    fn validate(_arguments: FieldTable) -> Result<(), String> {
        log_panics();
        Ok(())
    }
    fn create_exchange(_exchange: String, _arguments: FieldTable) -> Result<Option<RoutingInputs>, String> {
        log_panics();
        Ok(None)
    }
    fn delete_exchange() {}
    fn validate_binding(_b: Binding) -> Result<(), String> {
        Ok(())
    }
    fn add_binding(b: Binding) -> Result<(), String> {
        TRIE.with(|t| t.borrow_mut().add(&b.binding_key, b.destination));
        Ok(())
    }
    fn remove_binding(b: Binding) -> bool {
        let words: Vec<&str> = topic_words(&b.binding_key).collect();
        TRIE.with(|t| t.borrow_mut().remove(&words, b.destination))
    }
    fn route(msg: MessageView) -> Vec<DestinationId> {
        route_one(&msg.routing_key)
    }
    fn route_batch(msgs: Vec<MessageView>) -> Vec<Vec<DestinationId>> {
        msgs.iter().map(|m| route_one(&m.routing_key)).collect()
    }
}

export!(Topic);
