//! Built-in `direct` exchange type: a message goes to every binding whose key equals its
//! routing key (RabbitMQ's rabbit_exchange_type_direct).

wit_bindgen::generate!({ path: "../../wit", world: "exchange-type" });

use std::cell::RefCell;
use std::collections::HashMap;
use warren_guest_common::DestSet;

thread_local! {
    static KEYS: RefCell<HashMap<String, DestSet>> = RefCell::new(HashMap::new());
}

struct Direct;

fn route_one(key: &str) -> Vec<u32> {
    let mut out = Vec::new();
    KEYS.with(|k| {
        if let Some(set) = k.borrow().get(key) {
            set.extend_into(&mut out)
        }
    });
    out
}

/// Panic messages go to the broker's log (see `warren_guest_common::panics_to_log`).
fn log_panics() {
    warren_guest_common::panics_to_log(|m| warren::plugin::host::log(warren::plugin::host::LogLevel::Error, m));
}

impl Guest for Direct {
    fn describe() -> Info {
        log_panics();
        Info {
            name: "direct".into(),
            description: "AMQP direct exchange, as per the AMQP specification".into(),
            reads: RoutingInputs::ROUTING_KEY,
            deterministic: true,
        }
    }
    fn validate(_arguments: FieldTable) -> Result<(), String> {
        log_panics();
        Ok(())
    }
    fn create_exchange(_exchange: String, _arguments: FieldTable) -> Result<Option<RoutingInputs>, String> {
        log_panics();
        Ok(None)
    }
    fn delete_exchange() {}
    fn validate_binding(_b: Binding) -> Result<(), String> {
        Ok(())
    }
    fn add_binding(b: Binding) -> Result<(), String> {
        KEYS.with(|k| k.borrow_mut().entry(b.binding_key).or_default().add(b.destination));
        Ok(())
    }
    fn remove_binding(b: Binding) -> bool {
        KEYS.with(|k| {
            let mut k = k.borrow_mut();
            let Some(set) = k.get_mut(&b.binding_key) else { return false };
            let removed = set.remove(b.destination);
            if set.is_empty() {
                k.remove(&b.binding_key);
            }
            removed
        })
    }
    fn route(msg: MessageView) -> Vec<DestinationId> {
        route_one(&msg.routing_key)
    }
    fn route_batch(msgs: Vec<MessageView>) -> Vec<Vec<DestinationId>> {
        msgs.iter().map(|m| route_one(&m.routing_key)).collect()
    }
}

export!(Direct);
