//! Native unit tests (`cargo test --manifest-path plugins/Cargo.toml -p warren-headers`): each
//! matching rule on the indexed exchange, and the index against the linear scan it replaced
//! over random bindings, messages and add/remove sequences.

use super::*;

/// The exchange as it was before the index: every binding tested with `headers_match`, removal
/// by the first equal binding. The reference the index must agree with.
#[derive(Default)]
struct Linear {
    bindings: Vec<HeadersBinding>,
}

impl Linear {
    fn add(&mut self, b: Binding) {
        let args = sorted(b.arguments);
        let mode = parse_mode(&args);
        self.bindings.push(HeadersBinding { dest: b.destination, key: b.binding_key, args, mode });
    }
    fn remove(&mut self, b: Binding) -> bool {
        let args = sorted(b.arguments);
        match self.bindings.iter().position(|x| x.dest == b.destination && x.key == b.binding_key && x.args == args) {
            Some(i) => {
                self.bindings.swap_remove(i);
                true
            }
            None => false,
        }
    }
    fn route(&self, headers: Vec<(String, FieldValue)>) -> Vec<u32> {
        let headers = sorted(headers);
        let mut out: Vec<u32> = self.bindings.iter().filter(|b| headers_match(&b.args, &headers, b.mode)).map(|b| b.dest).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn add(x: &mut Headers, b: Binding) {
    x.add_binding(b, &mut Bindings::default()).unwrap();
}

fn remove(x: &mut Headers, b: Binding) -> bool {
    x.remove_binding(b, &mut Bindings::default())
}

fn route(x: &Headers, headers: Vec<(String, FieldValue)>) -> Vec<u32> {
    let msg = MessageView { routing_key: String::new(), headers, body: None, properties: None };
    x.route(msg, &Bindings::default())
}

fn table(t: &[(&str, FieldValue)]) -> Vec<(String, FieldValue)> {
    t.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn binding(dest: u32, args: &[(&str, FieldValue)]) -> Binding {
    Binding { destination: dest, binding_key: String::new(), arguments: table(args) }
}

fn s(v: &str) -> FieldValue {
    FieldValue::LongString(v.into())
}

fn i(v: i64) -> FieldValue {
    FieldValue::Signed(v)
}

/// Whether one binding with `args` takes a message with `headers`, asked of the indexed exchange
/// (and checked against the linear scan).
fn takes(args: &[(&str, FieldValue)], headers: &[(&str, FieldValue)]) -> bool {
    let mut x = Headers::default();
    add(&mut x, binding(7, args));
    let got = route(&x, table(headers));
    let mut lin = Linear::default();
    lin.add(binding(7, args));
    assert_eq!(got, lin.route(table(headers)), "index vs linear: {args:?} / {headers:?}");
    got == [7]
}

fn all() -> (&'static str, FieldValue) {
    ("x-match", s("all"))
}
fn any() -> (&'static str, FieldValue) {
    ("x-match", s("any"))
}

#[test]
fn all_needs_every_argument() {
    let args = [all(), ("a", i(1)), ("b", i(2))];
    assert!(takes(&args, &[("a", i(1)), ("b", i(2))]));
    assert!(takes(&args, &[("c", i(3)), ("b", i(2)), ("a", i(1))]));
    assert!(!takes(&args, &[("a", i(1))]));
    assert!(!takes(&args, &[("a", i(1)), ("b", i(3))]));
    assert!(!takes(&args, &[]));
    // all is the default
    assert!(takes(&[("a", i(1)), ("b", i(2))], &[("a", i(1)), ("b", i(2))]));
    assert!(!takes(&[("a", i(1)), ("b", i(2))], &[("b", i(2))]));
}

#[test]
fn any_needs_one_argument() {
    let args = [any(), ("a", i(1)), ("b", i(2))];
    assert!(takes(&args, &[("b", i(2))]));
    assert!(takes(&args, &[("a", i(1)), ("b", i(9))]));
    assert!(!takes(&args, &[("a", i(2)), ("c", i(1))]));
    assert!(!takes(&args, &[]));
}

#[test]
fn x_arguments_count_only_with_x() {
    // all/any ignore x- arguments
    assert!(takes(&[all(), ("x-k", s("v"))], &[]));
    assert!(takes(&[all(), ("x-k", s("v")), ("a", i(1))], &[("a", i(1))]));
    assert!(!takes(&[any(), ("x-k", s("v"))], &[("x-k", s("v"))]));
    assert!(takes(&[any(), ("x-k", s("v")), ("a", i(1))], &[("a", i(1))]));
    // -with-x modes count them, x-match itself never
    let with_x = [("x-match", s("all-with-x")), ("x-k", s("v"))];
    assert!(takes(&with_x, &[("x-k", s("v"))]));
    assert!(!takes(&with_x, &[("x-k", s("w"))]));
    assert!(!takes(&with_x, &[]));
    assert!(takes(&[("x-match", s("any-with-x")), ("x-k", s("v")), ("a", i(1))], &[("x-k", s("v"))]));
    assert!(!takes(&[("x-match", s("any-with-x")), ("x-k", s("v"))], &[("x-match", s("any-with-x"))]));
    // an x-match header is an ordinary header to no binding
    assert!(!takes(&[any(), ("a", i(1))], &[("x-match", s("any"))]));
}

#[test]
fn void_argument_is_presence() {
    let args = [all(), ("a", FieldValue::Void)];
    for v in [i(1), s("x"), FieldValue::Void, FieldValue::Double(f64::NAN), FieldValue::Boolean(false)] {
        assert!(takes(&args, &[("a", v)]));
    }
    assert!(!takes(&args, &[("b", i(1))]));
    // a void header equals only a void argument
    assert!(!takes(&[("a", i(1))], &[("a", FieldValue::Void)]));
    assert!(takes(&[any(), ("a", FieldValue::Void), ("b", i(1))], &[("a", i(5))]));
}

#[test]
fn values_compare_like_erlang() {
    let eq = |a: FieldValue, h: FieldValue| takes(&[("a", a)], &[("a", h)]);
    use FieldValue::*;
    // integers of any width, timestamps and floats as numbers
    assert!(eq(Signed(1), Unsigned(1)));
    assert!(eq(Timestamp(5), Signed(5)));
    assert!(eq(Signed(1), Double(1.0)));
    assert!(eq(Float(2.0), Unsigned(2)));
    assert!(eq(Float(0.5), Double(0.5)));
    assert!(!eq(Signed(1), Double(1.5)));
    assert!(!eq(Signed(-1), Unsigned(u64::MAX)));
    // -0.0 == 0.0 == 0
    assert!(eq(Double(-0.0), Signed(0)));
    assert!(eq(Signed(0), Float(-0.0)));
    assert!(eq(Double(0.0), Double(-0.0)));
    // NaN equals nothing, not even NaN
    assert!(!eq(Double(f64::NAN), Double(f64::NAN)));
    assert!(!eq(Float(f32::NAN), Double(f64::NAN)));
    assert!(!eq(Signed(0), Double(f64::NAN)));
    // integers that round to the same f64 share a hash but are not equal
    assert!(!eq(Signed(i64::MAX), Signed(i64::MAX - 1)));
    assert!(eq(Signed(i64::MAX), Double(i64::MAX as f64)));
    assert!(eq(Signed(i64::MAX - 1), Double(i64::MAX as f64)));
    assert!(eq(Unsigned(u64::MAX), Double(u64::MAX as f64)));
    // strings and byte arrays as bytes; a number is not its text
    assert!(eq(s("ab"), Bytes(b"ab".to_vec())));
    assert!(eq(Bytes(vec![]), s("")));
    assert!(!eq(s("1"), Signed(1)));
    assert!(!eq(s("a"), s("a\0")));
    // the rest by their own equality
    assert!(eq(Boolean(true), Boolean(true)));
    assert!(!eq(Boolean(true), Boolean(false)));
    assert!(!eq(Boolean(true), Signed(1)));
    assert!(eq(Decimal((1, 10)), Decimal((1, 10))));
    assert!(!eq(Decimal((1, 10)), Decimal((0, 1))));
    assert!(eq(Table(vec![0, 0, 0, 0]), Table(vec![0, 0, 0, 0])));
    assert!(!eq(Table(vec![0, 0, 0, 0]), Array(vec![0, 0, 0, 0])));
    assert!(eq(Array(vec![1]), Array(vec![1])));
}

#[test]
fn no_counted_argument() {
    // all matches every message, any none
    for h in [vec![], vec![("a", i(1))], vec![("x-k", s("v"))]] {
        assert!(takes(&[], &h));
        assert!(takes(&[all()], &h));
        assert!(takes(&[all(), ("x-k", s("w"))], &h));
        assert!(!takes(&[any()], &h));
        assert!(!takes(&[any(), ("x-k", s("v"))], &h));
    }
    // all with a NaN argument matches nothing; any ignores it
    assert!(!takes(&[("a", FieldValue::Double(f64::NAN))], &[("a", FieldValue::Double(f64::NAN))]));
    assert!(takes(&[any(), ("a", FieldValue::Double(f64::NAN)), ("b", i(1))], &[("a", i(1)), ("b", i(1))]));
}

#[test]
fn repeated_names() {
    // A message header repeated: the first one (after a stable sort by name) is compared.
    assert!(takes(&[("a", i(1))], &[("a", i(1)), ("a", i(2))]));
    assert!(!takes(&[("a", i(1))], &[("a", i(2)), ("a", i(1))]));
    assert!(!takes(&[any(), ("a", i(1))], &[("a", i(2)), ("a", i(1))]));
    // A repeated argument meets the next header of its name.
    let twice = [("a", i(1)), ("a", i(2))];
    assert!(takes(&twice, &[("a", i(1)), ("a", i(2))]));
    assert!(!takes(&twice, &[("a", i(1))]));
    assert!(!takes(&twice, &[("a", i(2)), ("a", i(1))]));
    let any_twice = [any(), ("a", i(1)), ("a", i(2))];
    assert!(takes(&any_twice, &[("a", i(3)), ("a", i(2))]));
    assert!(takes(&any_twice, &[("a", i(1))]));
    assert!(!takes(&any_twice, &[("a", i(2))]));
}

#[test]
fn add_and_remove() {
    let mut x = Headers::default();
    let b1 = binding(1, &[("a", i(1))]);
    add(&mut x, b1.clone());
    add(&mut x, b1.clone());
    add(&mut x, binding(2, &[any(), ("a", i(1)), ("b", FieldValue::Void)]));
    add(&mut x, binding(3, &[all()]));
    let msg = || table(&[("a", i(1))]);
    assert_eq!(route(&x, msg()), [1, 2, 3]);
    // the same binding twice takes two removes
    assert!(remove(&mut x, b1.clone()));
    assert_eq!(route(&x, msg()), [1, 2, 3]);
    assert!(remove(&mut x, b1.clone()));
    assert_eq!(route(&x, msg()), [2, 3]);
    assert!(!remove(&mut x, b1.clone()));
    // arguments in another order are the same binding; another destination or key is not
    assert!(!remove(&mut x, binding(9, &[any(), ("a", i(1)), ("b", FieldValue::Void)])));
    let mut keyed = binding(2, &[any(), ("a", i(1)), ("b", FieldValue::Void)]);
    keyed.binding_key = "k".into();
    assert!(!remove(&mut x, keyed));
    assert!(remove(&mut x, binding(2, &[("b", FieldValue::Void), ("a", i(1)), any()])));
    assert_eq!(route(&x, msg()), [3]);
    assert!(remove(&mut x, binding(3, &[all()])));
    assert_eq!(route(&x, msg()), Vec::<u32>::new());
    // freed numbers are reused
    add(&mut x, binding(4, &[("a", i(1))]));
    assert_eq!(route(&x, msg()), [4]);
    // NaN != NaN for the derived `==`: such a binding cannot be removed (as before the index)
    let nan = binding(5, &[any(), ("a", FieldValue::Double(f64::NAN)), ("b", i(1))]);
    add(&mut x, nan.clone());
    assert!(!remove(&mut x, nan));
    assert_eq!(route(&x, table(&[("b", i(1))])), [5]);
}

/// The benchmark's shape (scripts/bench-routing.sh headers): 1,000 bindings over 10 queues,
/// alternately all {a: "v<g>", b: <g>} and any {c: "v<g>", d: "w<g>"}.
#[test]
fn many_bindings() {
    let mut x = Headers::default();
    for n in 0..1000u32 {
        let g = n as i64 / 2;
        let args = if n % 2 == 0 {
            vec![all(), ("a", s(&format!("v{g}"))), ("b", i(g))]
        } else {
            vec![any(), ("c", s(&format!("v{g}"))), ("d", s(&format!("w{g}")))]
        };
        add(&mut x, binding(n % 10, &args));
    }
    let h = |g: i64| table(&[("source", s("perf")), ("seq", i(0)), ("a", s(&format!("v{g}"))), ("b", i(g)), ("c", s(&format!("v{g}")))]);
    assert_eq!(route(&x, h(0)), [0, 1]);
    assert_eq!(route(&x, h(17)), [4, 5]);
    assert_eq!(route(&x, table(&[("a", s("v3")), ("b", FieldValue::Double(3.0))])), [6]);
    assert_eq!(route(&x, table(&[("a", s("v3")), ("b", i(4))])), Vec::<u32>::new());
    assert_eq!(route(&x, table(&[("d", FieldValue::Bytes(b"w499".to_vec()))])), [9]);
    assert_eq!(route(&x, table(&[("a", s("none1")), ("c", s("none1"))])), Vec::<u32>::new());
}

/// splitmix64: deterministic, so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for k in (1..v.len()).rev() {
            v.swap(k, self.below(k + 1));
        }
    }
}

/// Values that are equal across kinds, nearly equal, or equal to nothing.
fn values() -> Vec<FieldValue> {
    use FieldValue::*;
    vec![
        Void,
        Signed(0),
        Signed(1),
        Signed(-1),
        Unsigned(1),
        Timestamp(1),
        Float(1.0),
        Double(1.0),
        Double(1.5),
        Double(0.0),
        Double(-0.0),
        Float(-0.0),
        Double(f64::NAN),
        Float(f32::NAN),
        Signed(i64::MAX),
        Signed(i64::MAX - 1),
        Double(i64::MAX as f64),
        Unsigned(u64::MAX),
        s(""),
        s("1"),
        s("a"),
        Bytes(vec![]),
        Bytes(b"1".to_vec()),
        Bytes(b"a".to_vec()),
        Boolean(true),
        Boolean(false),
        Decimal((1, 10)),
        Decimal((0, 1)),
        Table(vec![0, 0, 0, 0]),
        Array(vec![0, 0, 0, 0]),
        Array(vec![0, 0, 0, 1, 0x74, 1]),
    ]
}

const ARG_NAMES: [&str; 5] = ["a", "b", "c", "x-k", "x-y"];
const HEADER_NAMES: [&str; 7] = ["a", "b", "c", "x-k", "x-y", "x-match", "d"];

fn random_binding(rng: &mut Rng, vals: &[FieldValue]) -> Binding {
    let mut args = Vec::new();
    match rng.below(8) {
        0 => {}
        1 => args.push(("x-match".to_string(), s("all"))),
        2 | 3 => args.push(("x-match".to_string(), s("any"))),
        4 => args.push(("x-match".to_string(), s("all-with-x"))),
        5 | 6 => args.push(("x-match".to_string(), s("any-with-x"))),
        // not accepted by validate_binding, but add_binding reads it as `all`
        _ => args.push(("x-match".to_string(), rng.pick(vals).clone())),
    }
    for _ in 0..rng.below(5) {
        args.push((rng.pick(&ARG_NAMES).to_string(), rng.pick(vals).clone()));
    }
    rng.shuffle(&mut args);
    let key = if rng.below(8) == 0 { "k" } else { "" };
    Binding { destination: rng.below(8) as u32, binding_key: key.into(), arguments: args }
}

fn random_headers(rng: &mut Rng, vals: &[FieldValue]) -> Vec<(String, FieldValue)> {
    (0..rng.below(7)).map(|_| (rng.pick(&HEADER_NAMES).to_string(), rng.pick(vals).clone())).collect()
}

/// Thousands of random binding sets, each asked about random messages: the index answers as the
/// linear scan does.
#[test]
fn random_sets_route_as_linear_scan() {
    let vals = values();
    let mut rng = Rng(0x5eed_0001);
    for set in 0..3000 {
        let mut x = Headers::default();
        let mut lin = Linear::default();
        for _ in 0..rng.below(16) {
            let b = random_binding(&mut rng, &vals);
            add(&mut x, b.clone());
            lin.add(b);
        }
        for _ in 0..20 {
            let h = random_headers(&mut rng, &vals);
            assert_eq!(route(&x, h.clone()), lin.route(h.clone()), "set {set}, headers {h:?}");
        }
    }
}

/// Random sequences of adds (some of a binding already there), removes (of bindings there, with
/// their arguments reordered, and of bindings that are not) and routes.
#[test]
fn random_add_remove_route_as_linear_scan() {
    let vals = values();
    let mut rng = Rng(0x5eed_0002);
    for round in 0..400 {
        let mut x = Headers::default();
        let mut lin = Linear::default();
        let mut added: Vec<Binding> = Vec::new();
        for step in 0..50 {
            match rng.below(10) {
                0..=4 => {
                    let b = if !added.is_empty() && rng.below(4) == 0 { rng.pick(&added).clone() } else { random_binding(&mut rng, &vals) };
                    add(&mut x, b.clone());
                    lin.add(b.clone());
                    added.push(b);
                }
                5..=8 => {
                    let mut b = if !added.is_empty() && rng.below(5) != 0 {
                        added.swap_remove(rng.below(added.len()))
                    } else {
                        random_binding(&mut rng, &vals)
                    };
                    rng.shuffle(&mut b.arguments);
                    assert_eq!(remove(&mut x, b.clone()), lin.remove(b.clone()), "round {round}, step {step}: remove {b:?}");
                }
                _ => {}
            }
            for _ in 0..6 {
                let h = random_headers(&mut rng, &vals);
                assert_eq!(route(&x, h.clone()), lin.route(h.clone()), "round {round}, step {step}, headers {h:?}");
            }
        }
    }
}
