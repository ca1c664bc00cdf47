//! Built-in `fanout` exchange type: a message goes to every bound destination, whatever its
//! routing key (RabbitMQ's rabbit_exchange_type_fanout).

use warren_plugin_sdk::exchange::*;

/// Every bound destination, counted.
#[derive(Default)]
struct Fanout {
    all: DestSet,
}

impl ExchangeType for Fanout {
    fn describe() -> Info {
        Info {
            name: "fanout".into(),
            description: "AMQP fanout exchange, as per the AMQP specification".into(),
            // Reads nothing at all: the host passes an empty message and its route cache
            // holds a single entry for the whole exchange.
            reads: RoutingInputs::empty(),
            deterministic: true,
        }
    }
    fn add_binding(&mut self, b: Binding, _: &mut Bindings) -> Result<(), String> {
        self.all.add(b.destination);
        Ok(())
    }
    fn remove_binding(&mut self, b: Binding, _: &mut Bindings) -> bool {
        self.all.remove(b.destination)
    }
    fn route(&self, _msg: MessageView, _: &Bindings) -> Vec<DestinationId> {
        let mut out = Vec::new();
        self.all.extend_into(&mut out);
        out
    }
}

warren_plugin_sdk::export_exchange_type!(Fanout);
