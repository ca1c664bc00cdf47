"""Native tests of the routing logic: python3 test_jsonfield.py"""
from jsonfield import Bindings, field_of

assert field_of(b'{"type":"order"}', "type") == "order"
assert field_of(b'{"type":3}', "type") == "3"
assert field_of(b'{"type":true}', "type") == "true"
assert field_of(b'{"type":null}', "type") == "null"
assert field_of(b'{"kind":"x"}', "type") is None
assert field_of(b'not json', "type") is None
assert field_of(b'\xff\xfe\xfa', "type") is None
assert field_of(b'[1,2]', "type") is None
assert field_of(None, "type") is None
assert field_of('{"t":"é"}'.encode(), "t") == "é"

b = Bindings()
b.add("order", 1)
b.add("order", 2)
b.add("order", 2)
b.add("invoice", 3)
assert sorted(b.route(b'{"type":"order"}', "type")) == [1, 2]
assert b.route(b'{"type":"invoice","n":1}', "type") == [3]
assert b.route(b'{"type":"other"}', "type") == []
assert b.remove("order", 2)
assert sorted(b.route(b'{"type":"order"}', "type")) == [1, 2]
assert b.remove("order", 2)
assert b.route(b'{"type":"order"}', "type") == [1]
assert not b.remove("order", 2)
assert not b.remove("nothing", 1)
print("ok")
