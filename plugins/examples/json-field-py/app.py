"""Example exchange type `x-json-field` (Python, componentize-py).

Routes on a field of the message body: the exchange argument `x-json-field` (default "type")
names a top-level field of a JSON object body; a message goes to every destination bound with
a binding key equal to that field's value (a string as it is, other values as compact JSON:
true, 42, null). A body that is missing, not JSON, or not an object with that field is not
routed. Reads only the body; not deterministic (the routing key does not decide the route,
so the host must not cache by key).
"""

from typing import Optional
import wit_world
from wit_world.imports import types
from wit_world.imports.host import LogLevel, log
from componentize_py_types import Err

from jsonfield import ARGUMENT, DEFAULT_FIELD, Bindings

_field = DEFAULT_FIELD
_bindings = Bindings()


def _field_argument(arguments):
    """The field named by the exchange arguments; raises Err if the argument is malformed."""
    for name, value in arguments:
        if name == ARGUMENT:
            if not isinstance(value, types.FieldValue_LongString) or not value.value:
                raise Err(f"x-json-field: argument {ARGUMENT} must be a non-empty string (a JSON field name)")
            return value.value
    return DEFAULT_FIELD


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.Info:
        return types.Info(
            name="x-json-field",
            description="routes on a top-level field of a JSON body (argument x-json-field, default \"type\"); binding key = field value",
            reads=types.RoutingInputs.BODY,
            deterministic=False,
        )

    def validate(self, arguments) -> None:
        _field_argument(arguments)

    def create_exchange(self, exchange, arguments) -> Optional[types.RoutingInputs]:
        global _field, _bindings
        _field = _field_argument(arguments)
        _bindings = Bindings()
        log(LogLevel.DEBUG, f"exchange {exchange} routes on JSON field {_field!r}")
        return None  # read what describe() says (the body)

    def delete_exchange(self) -> None:
        global _bindings
        _bindings = Bindings()

    def validate_binding(self, b: types.Binding) -> None:
        pass  # any string is a value to match

    def add_binding(self, b: types.Binding) -> None:
        _bindings.add(b.binding_key, b.destination)

    def remove_binding(self, b: types.Binding) -> bool:
        return _bindings.remove(b.binding_key, b.destination)

    def route(self, msg: types.MessageView):
        return _bindings.route(msg.body, _field)

    def route_batch(self, msgs):
        return [_bindings.route(m.body, _field) for m in msgs]
