//! The bindings of one headers exchange, indexed so that a message meets only the bindings that
//! one of its headers can satisfy, with exactly the results of testing every binding with
//! `headers_match` (which cost ~25 µs per message with 1,000 bindings inside Wasm).
//!
//! Under each counted argument name there are the bindings whose argument of that name is void
//! (the header's presence suffices), and a map from a hash of the argument's value to
//! (binding, argument). The hash is taken over what Erlang's `==` holds equal (numbers by their
//! f64 value, strings and byte arrays by their bytes), so a header finds every argument it
//! equals; candidates are checked with `erl_eq`, so collisions cost time, never a wrong route.
//! - An `any` binding is filed under each of its counted arguments: one hit is a match.
//! - An `all` binding is filed under one argument only, its most selective at the time it is
//!   added, and a hit is confirmed by `headers_match` (the other arguments must match too): it
//!   is tested at most once per message, and only when one of its values is there.
//! - An `all` binding without counted arguments matches every message; an `any` binding without
//!   one, or an `all` binding with a NaN argument (NaN equals nothing), matches none.
//! - `headers_match` walks both sides sorted by name (stably): the first argument of a name
//!   meets the first header of that name, a repeated argument the next header of that name. The
//!   index looks at the first header of each name only, which decides every binding with
//!   distinct counted names, and for an `all` binding also its first argument of a name (the one
//!   it is filed under). An `any` binding with a repeated counted name (the host sends none, but
//!   the guest does not rely on that) is tested whole on every message.
//!
//! The guest is single-threaded and `route` takes `&self`: the index needs no scratch space, only
//! the output vector.

use super::{HeadersBinding, Num, as_binary, as_num, erl_eq, headers_match};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use warren_plugin_sdk::exchange::FieldValue;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Where a binding is filed.
#[derive(Clone, Copy)]
enum Place {
    /// Nowhere: it matches no message (`any` without counted argument, `all` with a NaN one).
    Nowhere,
    /// `all` without counted argument: every message.
    Always,
    /// `any` with a repeated counted name: `headers_match` on every message.
    Linear,
    /// `all`: under its argument at this position.
    One(usize),
    /// `any`: under each counted argument (NaN ones excepted: they equal nothing).
    Each,
}

struct Slot {
    binding: HeadersBinding,
    place: Place,
}

/// The bindings with a counted argument of one name.
#[derive(Default)]
struct NameIndex {
    /// Binding numbers whose argument is void.
    present: Vec<u32>,
    /// `value_hash` of the argument -> (binding number, argument position).
    values: FxMap<u64, Vec<(u32, u32)>>,
}

impl NameIndex {
    fn is_empty(&self) -> bool {
        self.present.is_empty() && self.values.is_empty()
    }
}

#[derive(Default)]
pub(super) struct Index {
    /// Binding number -> binding; `None` is a free number.
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Binding numbers per destination, where `remove` looks for the binding it is given.
    by_dest: FxMap<u32, Vec<u32>>,
    names: FxMap<String, NameIndex>,
    always: Vec<u32>,
    linear: Vec<u32>,
}

impl Index {
    pub(super) fn add(&mut self, b: HeadersBinding) {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let place = self.place_of(&b);
        self.file(id, &b, place);
        self.by_dest.entry(b.dest).or_default().push(id);
        self.slots[id as usize] = Some(Slot { binding: b, place });
    }

    /// Removes one binding equal to (dest, key, args) (args sorted); false if there is none.
    pub(super) fn remove(&mut self, dest: u32, key: &str, args: &[(String, FieldValue)]) -> bool {
        let Some(ids) = self.by_dest.get_mut(&dest) else { return false };
        // Equal by the derived `==`, as the list before the index had it (so a binding with a
        // NaN argument can be added but never removed, as before: see the tests).
        let slots = &self.slots;
        let same = |id: &u32| slots[*id as usize].as_ref().is_some_and(|s| s.binding.key == key && s.binding.args == args);
        let Some(pos) = ids.iter().position(same) else { return false };
        let id = ids.swap_remove(pos);
        if ids.is_empty() {
            self.by_dest.remove(&dest);
        }
        let Some(slot) = self.slots[id as usize].take() else { return false };
        self.unfile(id, &slot.binding, slot.place);
        self.free.push(id);
        true
    }

    /// Appends the destination of every binding matching `headers` (sorted by name, stably);
    /// a destination may come more than once.
    pub(super) fn route(&self, headers: &[(String, FieldValue)], out: &mut Vec<u32>) {
        for &id in &self.always {
            out.push(self.binding(id).dest);
        }
        for &id in &self.linear {
            let b = self.binding(id);
            if headers_match(&b.args, headers, b.mode) {
                out.push(b.dest);
            }
        }
        if self.names.is_empty() {
            return;
        }
        let mut prev: Option<&str> = None;
        for (name, value) in headers {
            // Later headers of a name meet only repeated argument names (see the module comment).
            if prev == Some(name.as_str()) {
                continue;
            }
            prev = Some(name.as_str());
            let Some(n) = self.names.get(name.as_str()) else { continue };
            for &id in &n.present {
                self.hit(id, headers, out);
            }
            if n.values.is_empty() {
                continue;
            }
            let Some(h) = value_hash(value) else { continue };
            for &(id, arg) in n.values.get(&h).into_iter().flatten() {
                if erl_eq(&self.binding(id).args[arg as usize].1, value) {
                    self.hit(id, headers, out);
                }
            }
        }
    }

    /// One argument of binding `id` matches: enough for `any`; `all` needs the others too.
    fn hit(&self, id: u32, headers: &[(String, FieldValue)], out: &mut Vec<u32>) {
        let b = self.binding(id);
        if !b.mode.is_all() || headers_match(&b.args, headers, b.mode) {
            out.push(b.dest);
        }
    }

    fn binding(&self, id: u32) -> &HeadersBinding {
        &self.slots[id as usize].as_ref().expect("a filed binding has a slot").binding
    }

    fn place_of(&self, b: &HeadersBinding) -> Place {
        let counted = b.args.iter().enumerate().filter(|(_, (k, _))| b.mode.counts(k));
        let mut prev: Option<&str> = None;
        if !b.mode.is_all() {
            for (_, (k, _)) in counted {
                if prev == Some(k.as_str()) {
                    return Place::Linear;
                }
                prev = Some(k.as_str());
            }
            return if prev.is_some() { Place::Each } else { Place::Nowhere };
        }
        // The first argument of a name with the fewest bindings beside it: a value before a
        // void one (a value is rarer than a header's presence), then the shortest list.
        let mut best: Option<((bool, usize), usize)> = None;
        for (i, (k, v)) in counted {
            let first = prev != Some(k.as_str());
            prev = Some(k.as_str());
            let n = self.names.get(k.as_str());
            let cost = if matches!(v, FieldValue::Void) {
                (true, n.map_or(0, |n| n.present.len()))
            } else {
                let Some(h) = value_hash(v) else { return Place::Nowhere };
                (false, n.and_then(|n| n.values.get(&h)).map_or(0, Vec::len))
            };
            if first && best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, i));
            }
        }
        match best {
            None => Place::Always,
            Some((_, i)) => Place::One(i),
        }
    }

    fn file(&mut self, id: u32, b: &HeadersBinding, place: Place) {
        match place {
            Place::Nowhere => {}
            Place::Always => self.always.push(id),
            Place::Linear => self.linear.push(id),
            Place::One(i) => self.file_arg(id, i, &b.args[i]),
            Place::Each => {
                for (i, arg) in b.args.iter().enumerate() {
                    if b.mode.counts(&arg.0) {
                        self.file_arg(id, i, arg);
                    }
                }
            }
        }
    }

    fn file_arg(&mut self, id: u32, i: usize, (k, v): &(String, FieldValue)) {
        if matches!(v, FieldValue::Void) {
            self.names.entry(k.clone()).or_default().present.push(id);
        } else if let Some(h) = value_hash(v) {
            self.names.entry(k.clone()).or_default().values.entry(h).or_default().push((id, i as u32));
        }
    }

    fn unfile(&mut self, id: u32, b: &HeadersBinding, place: Place) {
        match place {
            Place::Nowhere => {}
            Place::Always => remove_id(&mut self.always, id),
            Place::Linear => remove_id(&mut self.linear, id),
            Place::One(i) => self.unfile_arg(id, i, &b.args[i]),
            Place::Each => {
                for (i, arg) in b.args.iter().enumerate() {
                    if b.mode.counts(&arg.0) {
                        self.unfile_arg(id, i, arg);
                    }
                }
            }
        }
    }

    fn unfile_arg(&mut self, id: u32, i: usize, (k, v): &(String, FieldValue)) {
        let Some(n) = self.names.get_mut(k.as_str()) else { return };
        if matches!(v, FieldValue::Void) {
            remove_id(&mut n.present, id);
        } else if let Some(h) = value_hash(v)
            && let Some(list) = n.values.get_mut(&h)
        {
            if let Some(p) = list.iter().position(|&e| e == (id, i as u32)) {
                list.swap_remove(p);
            }
            if list.is_empty() {
                n.values.remove(&h);
            }
        }
        if n.is_empty() {
            self.names.remove(k.as_str());
        }
    }
}

fn remove_id(list: &mut Vec<u32>, id: u32) {
    if let Some(p) = list.iter().position(|&x| x == id) {
        list.swap_remove(p);
    }
}

/// A hash of `v`, the same for all values `erl_eq` holds equal: numbers by their f64 value
/// (-0.0 as 0.0: they are `==`; an integer equals a float when `(i as f64) == f`, and integers
/// that round to the same f64 merely share a hash), strings and byte arrays by their bytes, the
/// other kinds by their contents. None for NaN, which equals nothing, and for void, which is a
/// matter of presence.
fn value_hash(v: &FieldValue) -> Option<u64> {
    let mut h = FxHasher::default();
    if let Some(n) = as_num(v) {
        let f = match n {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        };
        if f.is_nan() {
            return None;
        }
        h.write_u8(1);
        h.write_u64(if f == 0.0 { 0 } else { f.to_bits() });
    } else if let Some(b) = as_binary(v) {
        h.write_u8(2);
        h.write(b);
    } else {
        match v {
            FieldValue::Boolean(b) => {
                h.write_u8(3);
                h.write_u8(*b as u8);
            }
            FieldValue::Decimal((scale, value)) => {
                h.write_u8(4);
                h.write_u8(*scale);
                h.write_u32(*value);
            }
            FieldValue::Table(t) => {
                h.write_u8(5);
                h.write(t);
            }
            FieldValue::Array(a) => {
                h.write_u8(6);
                h.write(a);
            }
            _ => return None,
        }
    }
    Some(h.finish())
}

/// rustc's FxHash (a multiply and a rotate per 8 bytes): header names and values are short and
/// hashed on every publish, where SipHash would cost more than the rest of the lookup. It is not
/// keyed: bindings made to collide only bring back the cost of testing them one by one.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // The multiply leaves its entropy in the high bits; hashbrown indexes by the low ones.
        self.0.rotate_left(26)
    }
}
