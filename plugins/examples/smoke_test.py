"""Smoke test of the example components in a real Wasm runtime, without the broker.

    python3 -m venv /tmp/wt && /tmp/wt/bin/pip install wasmtime==50.0.1
    /tmp/wt/bin/python plugins/examples/smoke_test.py [NAME…]

Loads each example's .wasm with wasmtime-py's component API, links the warren:plugin/host
functions, and drives describe / validate / create-exchange / validate-binding / add-binding /
remove-binding / route / route-batch as the broker does, checking the routes. (The broker
itself embeds wasmtime 48 from crates.io; wasmtime-py 50 is only a convenient second host.)
"""

import collections
import sys
import time
from pathlib import Path

from wasmtime import Engine, Store
from wasmtime.component import Component, Linker, Record, Variant

HERE = Path(__file__).resolve().parent
LOGS = []


def rec(**fields):
    r = Record()
    for k, v in fields.items():
        setattr(r, k.replace("_", "-"), v)
    return r


def s(v):
    return Variant("long-string", v)


def binding(dest, key, args=()):
    return rec(destination=dest, binding_key=key, arguments=list(args))


PROPERTY_FIELDS = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                   "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id",
                   "cluster_id")


def props(**given):
    return rec(**{f: given.get(f) for f in PROPERTY_FIELDS})


def msg(rk="", headers=(), body=None, properties=None):
    return rec(routing_key=rk, headers=list(headers), body=body, properties=properties)


class Plugin:
    def __init__(self, path):
        self.engine = Engine()
        t = time.perf_counter()
        self.component = Component.from_file(self.engine, str(path))
        self.compile_s = time.perf_counter() - t
        self.linker = Linker(self.engine)
        self.rng = 0x9E3779B97F4A7C15
        with self.linker.root() as root:
            with root.add_instance("warren:plugin/host@0.1.0") as host:
                host.add_func("log", lambda _st, level, m: LOGS.append((level, m)))
                host.add_func("config", lambda _st, key: None)
                host.add_func("now-millis", lambda _st: int(time.time() * 1000))
                host.add_func("random-u64", lambda _st: self.next_random())
        self.new_instance()

    def next_random(self):  # xorshift64*
        x = self.rng
        x ^= x >> 12
        x ^= (x << 25) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 27
        self.rng = x
        return (x * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF

    def new_instance(self):
        self.store = Store(self.engine)
        self.instance = self.linker.instantiate(self.store, self.component)

    def call(self, name, *args):
        f = self.instance.get_func(self.store, name)
        assert f is not None, f"no export {name}"
        r = f(self.store, *args)
        f.post_return(self.store)
        return r


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def common(p, name, reads, deterministic):
    info = p.call("describe")
    print(f"  describe: name={info.name!r} reads={sorted(info.reads)} deterministic={info.deterministic}")
    expect(info.name == name, "name")
    expect(info.reads == set(reads), f"reads {info.reads}")
    expect(info.deterministic == deterministic, "deterministic")


def test_consistent_hash(p):
    common(p, "x-consistent-hash", {"routing-key", "headers", "properties"}, True)
    expect(p.call("validate", []) is None, "validate []")
    err = p.call("validate", [("hash-header", s("h")), ("hash-property", s("message_id"))])
    expect(err == "hash-header and hash-property are mutually exclusive", err)
    expect(p.call("validate", [("hash-property", s("message_id"))]) is None, "message_id")
    err = p.call("validate", [("hash-property", s("app_id"))])
    expect(err == "Unsupported property: app_id", err)
    r = p.call("create-exchange", "/:ch", [])
    expect(r == {"routing-key"}, f"create narrows reads to the routing key: {r}")
    err = p.call("validate-binding", binding(1, "abc"))
    expect("not an integer" in err, err)
    print(f"  validate-binding 'abc': {err}")
    for d, w in ((1, "100"), (2, "100"), (3, "200")):
        expect(p.call("add-binding", binding(d, w)) is None, "add")
    counts = collections.Counter()
    first = {}
    for i in range(4000):
        r = p.call("route", msg(f"key-{i}"))
        expect(len(r) == 1, f"one destination, got {r}")
        counts[r[0]] += 1
        first[i] = r[0]
    print(f"  4000 keys over weights 100/100/200: {dict(sorted(counts.items()))}")
    expect(counts[3] > counts[1] and counts[3] > counts[2], "weight 200 gets most")
    again = p.call("route-batch", [msg(f"key-{i}") for i in range(100)])
    expect([r[0] for r in again] == [first[i] for i in range(100)], "stable")
    expect(p.call("remove-binding", binding(3, "200")) is True, "remove")
    expect(p.call("remove-binding", binding(3, "200")) is False, "remove twice")
    moved = sum(1 for i in range(4000) if p.call("route", msg(f"key-{i}"))[0] != first[i])
    only3 = sum(1 for i in range(4000) if first[i] == 3)
    print(f"  after removing destination 3: {moved} keys moved ({only3} were on 3)")
    expect(moved == only3, "only keys of the removed destination move")
    # hash-header
    p.new_instance()
    r = p.call("create-exchange", "/:ch2", [("hash-header", s("user"))])
    expect(r == {"headers"}, f"create narrows reads to the headers: {r}")
    for d in (1, 2, 3):
        p.call("add-binding", binding(d, "5"))
    a = p.call("route", msg("x", [("user", s("alice"))]))
    b = p.call("route", msg("y", [("user", s("alice"))]))
    expect(a == b and len(a) == 1, "same header, same destination")
    none = {p.call("route", msg(f"k{i}"))[0] for i in range(20)}
    expect(len(none) == 1, "no header: one fixed destination, as RabbitMQ")
    print(f"  hash-header: alice -> {a}, messages without the header -> {none}")
    # hash-property
    p.new_instance()
    r = p.call("create-exchange", "/:ch3", [("hash-property", s("message_id"))])
    expect(r == {"properties"}, f"create narrows reads to the properties: {r}")
    for d in (1, 2, 3):
        p.call("add-binding", binding(d, "50"))
    same = {p.call("route", msg(f"k{i}", properties=props(message_id="m")))[0] for i in range(20)}
    spread = {p.call("route", msg("k", properties=props(message_id=f"m{i}")))[0] for i in range(60)}
    expect(len(same) == 1 and len(spread) == 3, f"message_id decides: {same} {spread}")
    print(f"  hash-property message_id: one id -> {same}, 60 ids -> {sorted(spread)}")


def test_random(p):
    common(p, "x-random", set(), False)
    expect(p.call("validate", []) is None, "validate")
    expect(p.call("create-exchange", "/:r", []) is None, "create")
    expect(p.call("route", msg("k")) == [], "no bindings")
    for d in (10, 20, 30):
        p.call("add-binding", binding(d, ""))
    p.call("add-binding", binding(30, "again"))
    counts = collections.Counter()
    for _ in range(3000):
        r = p.call("route", msg("k"))
        expect(len(r) == 1, f"one destination {r}")
        counts[r[0]] += 1
    print(f"  3000 messages over 4 bindings (30 bound twice): {dict(sorted(counts.items()))}")
    expect(set(counts) == {10, 20, 30}, "all destinations used")
    expect(p.call("remove-binding", binding(20, "")) is True, "remove")
    expect(p.call("remove-binding", binding(20, "")) is False, "remove twice")
    rs = p.call("route-batch", [msg("k") for _ in range(200)])
    expect(all(len(r) == 1 and r[0] in (10, 30) for r in rs), "batch")
    print("  after removing 20: batch of 200 goes only to 10 and 30")


def test_json_field(p):
    common(p, "x-json-field", {"body"}, False)
    expect(p.call("validate", []) is None, "validate")
    err = p.call("validate", [("x-json-field", Variant("signed", 3))])
    expect(err and "non-empty string" in err, err)
    expect(p.call("create-exchange", "/:j", [("x-json-field", s("kind"))]) is None, "create")
    p.call("add-binding", binding(1, "order"))
    p.call("add-binding", binding(2, "order"))
    p.call("add-binding", binding(3, "42"))
    r = p.call("route", msg(body=b'{"kind":"order","id":7}'))
    expect(sorted(r) == [1, 2], r)
    expect(p.call("route", msg(body=b'{"kind":42}')) == [3], "number")
    expect(p.call("route", msg(body=b'{"type":"order"}')) == [], "other field")
    expect(p.call("route", msg(body=b"not json")) == [], "not json")
    expect(p.call("route", msg(body=None)) == [], "no body")
    expect(p.call("remove-binding", binding(2, "order")) is True, "remove")
    rs = p.call("route-batch", [msg(body=b'{"kind":"order"}'), msg(body=b"{")])
    expect(rs == [[1], []], rs)
    print("  kind=order -> [1, 2]; kind=42 -> [3]; not JSON / no body -> []; batch ok")


def test_prefix(p):
    common(p, "x-prefix", {"routing-key"}, True)
    expect(p.call("validate", []) is None, "validate")
    err = p.call("validate", [("x-prefix-match", s("shortest"))])
    expect(err and "x-prefix-match" in err, err)
    expect(p.call("create-exchange", "/:p", []) is None, "create")
    p.call("add-binding", binding(1, "eu."))
    p.call("add-binding", binding(2, "eu.fr."))
    p.call("add-binding", binding(3, ""))
    expect(sorted(p.call("route", msg("eu.fr.paris"))) == [1, 2, 3], "all prefixes")
    expect(sorted(p.call("route", msg("us.ny"))) == [3], "empty prefix")
    expect(p.call("remove-binding", binding(3, "")) is True, "remove")
    expect(p.call("route", msg("us.ny")) == [], "no match")
    rs = p.call("route-batch", [msg("eu.de"), msg("eu.fr.lyon")])
    expect([sorted(r) for r in rs] == [[1], [1, 2]], rs)
    # longest-prefix-only variant
    p.new_instance()
    expect(p.call("create-exchange", "/:p2", [("x-prefix-match", s("longest"))]) is None, "create")
    for d, k in ((1, "eu."), (2, "eu.fr."), (4, "eu.fr."), (3, "")):
        p.call("add-binding", binding(d, k))
    expect(sorted(p.call("route", msg("eu.fr.paris"))) == [2, 4], "longest")
    expect(p.call("route", msg("eu.de")) == [1], "longest 2")
    expect(p.call("route", msg("asia")) == [3], "longest 3")
    print("  all-prefixes and longest-prefix modes route as expected")


TESTS = {
    "consistent-hash": ("consistent-hash/consistent-hash.wasm", test_consistent_hash),
    "random-c": ("random-c/random-c.wasm", test_random),
    "json-field-py": ("json-field-py/json-field-py.wasm", test_json_field),
    "js-prefix": ("js-prefix/js-prefix.wasm", test_prefix),
}


def main(names):
    failed = 0
    for name in names or TESTS:
        path, test = TESTS[name]
        path = HERE / path
        if not path.exists():
            print(f"{name}: SKIPPED (no {path.name}; run its build.sh)")
            continue
        print(f"{name}: {path.stat().st_size} bytes")
        try:
            p = Plugin(path)
            print(f"  compiled in {p.compile_s:.2f} s")
            test(p)
            print(f"{name}: OK")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"{name}: FAILED: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
