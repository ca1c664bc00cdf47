//! Built-in `direct` exchange type: a message goes to every binding whose key equals its
//! routing key (RabbitMQ's rabbit_exchange_type_direct).

use std::collections::HashMap;
use warren_plugin_sdk::exchange::*;

/// Binding key → destinations.
#[derive(Default)]
struct Direct {
    keys: HashMap<String, DestSet>,
}

impl ExchangeType for Direct {
    fn describe() -> Info {
        Info {
            name: "direct".into(),
            description: "AMQP direct exchange, as per the AMQP specification".into(),
            reads: RoutingInputs::ROUTING_KEY,
            deterministic: true,
        }
    }
    fn add_binding(&mut self, b: Binding, _: &mut Bindings) -> Result<(), String> {
        self.keys.entry(b.binding_key).or_default().add(b.destination);
        Ok(())
    }
    fn remove_binding(&mut self, b: Binding, _: &mut Bindings) -> bool {
        let Some(set) = self.keys.get_mut(&b.binding_key) else { return false };
        let removed = set.remove(b.destination);
        if set.is_empty() {
            self.keys.remove(&b.binding_key);
        }
        removed
    }
    fn route(&self, msg: MessageView, _: &Bindings) -> Vec<DestinationId> {
        let mut out = Vec::new();
        if let Some(set) = self.keys.get(&msg.routing_key) {
            set.extend_into(&mut out)
        }
        out
    }
}

warren_plugin_sdk::export_exchange_type!(Direct);
