//! The hash ring, free of any Wasm binding so it can be unit-tested natively.
//!
//! Every destination owns as many points on a 64-bit ring as the sum of the weights of its
//! bindings. Point `i` of destination `d` sits at `hash(d, i)`. A message goes to the owner
//! of the first point at or after `hash(key)`, wrapping round to the lowest point.
//! Because the points depend only on (destination, index), adding or removing a binding moves
//! only the keys that fall next to the points it adds or removes.

use std::collections::BTreeMap;

/// Largest weight (points) accepted for one binding: bounds the ring's memory (16 bytes a point).
pub const MAX_WEIGHT: u32 = 100_000;

/// FNV-1a, 64 bits, followed by the murmur3 64-bit finaliser so that short inputs that differ
/// in one byte still land far apart on the ring. Stable across builds and platforms.
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Position of point `index` of `destination`.
pub fn point(destination: u32, index: u32) -> u64 {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&destination.to_le_bytes());
    buf[4..].copy_from_slice(&index.to_le_bytes());
    hash_bytes(&buf)
}

/// Parses a binding key as a weight: a decimal integer in 1..=MAX_WEIGHT (surrounding
/// whitespace allowed).
pub fn parse_weight(key: &str) -> Result<u32, String> {
    let t = key.trim();
    match t.parse::<u64>() {
        Ok(0) => Err(format!(
            "x-consistent-hash: binding key \"{key}\" must be a positive integer weight (number of points on the hash ring), not 0"
        )),
        Ok(w) if w > MAX_WEIGHT as u64 => Err(format!(
            "x-consistent-hash: binding key \"{key}\": weight must be at most {MAX_WEIGHT}"
        )),
        Ok(w) => Ok(w as u32),
        Err(_) => Err(format!(
            "x-consistent-hash: binding key \"{key}\" is not an integer; the binding key of a consistent-hash exchange is the binding's weight, e.g. \"1\" or \"10\""
        )),
    }
}

#[derive(Default)]
pub struct Ring {
    /// (destination, weight) of every binding, in the order added; duplicates allowed.
    bindings: Vec<(u32, u32)>,
    /// sorted (point, destination); rebuilt when a binding changes
    points: Vec<(u64, u32)>,
}

impl Ring {
    pub fn add(&mut self, destination: u32, weight: u32) {
        self.bindings.push((destination, weight));
        self.rebuild();
    }

    /// Removes one binding with this destination and weight; false if there was none.
    pub fn remove(&mut self, destination: u32, weight: u32) -> bool {
        match self.bindings.iter().position(|&b| b == (destination, weight)) {
            Some(i) => {
                self.bindings.remove(i);
                self.rebuild();
                true
            }
            None => false,
        }
    }

    pub fn clear(&mut self) {
        self.bindings.clear();
        self.points.clear();
    }

    fn rebuild(&mut self) {
        // Weights of all bindings to one destination add up; the points of a destination are
        // indices 0..total, so the ring does not depend on the order bindings were added in.
        let mut total: BTreeMap<u32, u64> = BTreeMap::new();
        for &(d, w) in &self.bindings {
            *total.entry(d).or_default() += w as u64;
        }
        self.points.clear();
        for (&d, &w) in &total {
            for i in 0..w.min(u32::MAX as u64) as u32 {
                self.points.push((point(d, i), d));
            }
        }
        self.points.sort_unstable();
    }

    /// The destination owning the first point >= hash, wrapping; None if the ring is empty.
    pub fn lookup(&self, hash: u64) -> Option<u32> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|&(p, _)| p < hash);
        let i = if i == self.points.len() { 0 } else { i };
        Some(self.points[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse() {
        assert_eq!(parse_weight("1"), Ok(1));
        assert_eq!(parse_weight(" 20 "), Ok(20));
        assert!(parse_weight("0").unwrap_err().contains("positive"));
        assert!(parse_weight("abc").unwrap_err().contains("not an integer"));
        assert!(parse_weight("").unwrap_err().contains("not an integer"));
        assert!(parse_weight("-3").unwrap_err().contains("not an integer"));
        assert!(parse_weight("1.5").unwrap_err().contains("not an integer"));
        assert!(parse_weight("100001").unwrap_err().contains("at most"));
    }

    #[test]
    fn empty_ring_routes_nowhere() {
        assert_eq!(Ring::default().lookup(42), None);
    }

    #[test]
    fn one_destination_gets_everything() {
        let mut r = Ring::default();
        r.add(7, 3);
        for k in 0..100u32 {
            assert_eq!(r.lookup(hash_bytes(&k.to_le_bytes())), Some(7));
        }
    }

    #[test]
    fn wraps_past_the_last_point() {
        let mut r = Ring::default();
        r.add(1, 1);
        r.add(2, 1);
        let lowest = r.points[0];
        assert_eq!(r.lookup(u64::MAX), Some(lowest.1));
        assert_eq!(r.lookup(lowest.0), Some(lowest.1));
    }

    #[test]
    fn distribution_follows_weights() {
        let mut r = Ring::default();
        r.add(1, 100);
        r.add(2, 300);
        let mut n = [0u32; 3];
        for k in 0..40_000u32 {
            let key = format!("key-{k}");
            n[r.lookup(hash_bytes(key.as_bytes())).unwrap() as usize] += 1;
        }
        let share2 = n[2] as f64 / 40_000.0;
        assert!((0.65..0.85).contains(&share2), "share of weight-300 destination: {share2}");
    }

    #[test]
    fn order_independent_and_removal_restores() {
        let mut a = Ring::default();
        a.add(1, 5);
        a.add(2, 5);
        let mut b = Ring::default();
        b.add(2, 5);
        b.add(1, 5);
        b.add(3, 5);
        assert!(b.remove(3, 5));
        assert!(!b.remove(3, 5));
        assert_eq!(a.points, b.points);
    }

    #[test]
    fn adding_a_destination_moves_only_some_keys() {
        let mut r = Ring::default();
        for d in 1..=4 {
            r.add(d, 50);
        }
        let keys: Vec<u64> = (0..10_000u32).map(|k| hash_bytes(format!("k{k}").as_bytes())).collect();
        let before: Vec<_> = keys.iter().map(|&h| r.lookup(h)).collect();
        r.add(5, 50);
        let moved = keys.iter().zip(&before).filter(|&(&h, b)| r.lookup(h) != *b).count();
        // about 1/5 of the keys move, all of them to the new destination
        assert!(moved > 1_000 && moved < 3_000, "moved {moved}");
        assert!(keys.iter().zip(&before).all(|(&h, b)| r.lookup(h) == *b || r.lookup(h) == Some(5)));
    }
}
