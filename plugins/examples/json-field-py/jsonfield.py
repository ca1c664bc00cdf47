"""Routing logic of x-json-field, free of the generated bindings so it can be tested with a
plain `python3 test_jsonfield.py`."""

import json

DEFAULT_FIELD = "type"
ARGUMENT = "x-json-field"


def render(value):
    """The text a JSON value is compared as: a string as it is, anything else as compact JSON
    (true, false, null, 42, 1.5, [1,2], {"a":1})."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def field_of(body, field):
    """The rendered value of top-level field `field` of a JSON object body, or None if the body
    is missing, is not JSON, is not an object or has no such field."""
    if body is None:
        return None
    try:
        # Decode as UTF-8 ourselves: json.loads(bytes) would guess UTF-16/32 from NUL bytes and
        # look those codecs up, which aborts the stubbed interpreter inside the component.
        doc = json.loads(bytes(body).decode("utf-8"))
    except Exception:  # anything that is not a JSON document routes nowhere (never trap)
        return None
    if not isinstance(doc, dict) or field not in doc:
        return None
    return render(doc[field])


class Bindings:
    """binding key -> {destination: number of identical bindings}"""

    def __init__(self):
        self.by_value = {}

    def add(self, value, dest):
        dests = self.by_value.setdefault(value, {})
        dests[dest] = dests.get(dest, 0) + 1

    def remove(self, value, dest):
        dests = self.by_value.get(value)
        if not dests or dest not in dests:
            return False
        dests[dest] -= 1
        if dests[dest] == 0:
            del dests[dest]
            if not dests:
                del self.by_value[value]
        return True

    def route(self, body, field):
        value = field_of(body, field)
        if value is None:
            return []
        return list(self.by_value.get(value, ()))
