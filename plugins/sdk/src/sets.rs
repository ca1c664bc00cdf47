//! Helpers for exchange types that keep their own index of bindings: counted destination
//! sets and RabbitMQ's topic word splitting.

use std::collections::HashMap;

/// Destination numbers with a count: the same (destination, key, arguments) binding may be
/// added several times and each add is undone by one remove (the broker decides whether that
/// can happen; the guest just keeps count).
#[derive(Debug, Default, Clone)]
pub struct DestSet {
    counts: HashMap<u32, u32>,
}

impl DestSet {
    /// Counts one more binding to `dest`.
    pub fn add(&mut self, dest: u32) {
        *self.counts.entry(dest).or_insert(0) += 1;
    }

    /// Removes one binding to `dest`; false if there was none.
    pub fn remove(&mut self, dest: u32) -> bool {
        match self.counts.get_mut(&dest) {
            None => false,
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.counts.remove(&dest);
                true
            }
        }
    }

    /// No binding left.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Appends every destination once.
    pub fn extend_into(&self, out: &mut Vec<u32>) {
        out.extend(self.counts.keys().copied());
    }
}

/// Splits a topic routing or binding key into words the way RabbitMQ does: on `.`, empty words
/// allowed ("a..b" is three words), and the empty key is zero words.
pub fn topic_words(key: &str) -> impl Iterator<Item = &str> {
    let mut it = key.split('.');
    if key.is_empty() {
        it.next();
    }
    it
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(topic_words("").count(), 0);
        assert_eq!(topic_words("a").collect::<Vec<_>>(), ["a"]);
        assert_eq!(topic_words("a..b").collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(topic_words(".").collect::<Vec<_>>(), ["", ""]);
    }

    #[test]
    fn counted() {
        let mut s = DestSet::default();
        s.add(1);
        s.add(1);
        assert!(s.remove(1));
        let mut v = vec![];
        s.extend_into(&mut v);
        assert_eq!(v, [1]);
        assert!(s.remove(1));
        assert!(!s.remove(1));
        assert!(s.is_empty());
    }
}
