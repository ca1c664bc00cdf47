//! Built-in `topic` exchange type (RabbitMQ's rabbit_exchange_type_topic): keys are words
//! separated by `.` (empty words allowed, the empty key has no words); in a binding key `*`
//! matches exactly one word and `#` zero or more words. Bindings live in a trie of words.

use std::collections::HashMap;
use warren_plugin_sdk::exchange::*;

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

/// The exchange's bindings: a trie of binding-key words.
#[derive(Default)]
struct Topic {
    trie: Node,
}

impl ExchangeType for Topic {
    fn describe() -> Info {
        Info {
            name: "topic".into(),
            description: "AMQP topic exchange, as per the AMQP specification".into(),
            reads: RoutingInputs::ROUTING_KEY,
            deterministic: true,
        }
    }
    fn add_binding(&mut self, b: Binding, _: &mut Bindings) -> Result<(), String> {
        self.trie.add(&b.binding_key, b.destination);
        Ok(())
    }
    fn remove_binding(&mut self, b: Binding, _: &mut Bindings) -> bool {
        let words: Vec<&str> = topic_words(&b.binding_key).collect();
        self.trie.remove(&words, b.destination)
    }
    fn route(&self, msg: MessageView, _: &Bindings) -> Vec<DestinationId> {
        let words: Vec<&str> = topic_words(&msg.routing_key).collect();
        let mut out = Vec::new();
        self.trie.route(&words, &mut out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out
    }
}

warren_plugin_sdk::export_exchange_type!(Topic);
