//! Built-in `fanout` exchange type: a message goes to every bound destination, whatever its
//! routing key (RabbitMQ's rabbit_exchange_type_fanout).

wit_bindgen::generate!({ path: "../../wit", world: "exchange-type" });

use std::cell::RefCell;
use warren_guest_common::DestSet;

thread_local! {
    static ALL: RefCell<DestSet> = RefCell::new(DestSet::default());
}

struct Fanout;

fn route_all() -> Vec<u32> {
    let mut out = Vec::new();
    ALL.with(|a| a.borrow().extend_into(&mut out));
    out
}

/// Panic messages go to the broker's log (see `warren_guest_common::panics_to_log`).
fn log_panics() {
    warren_guest_common::panics_to_log(|m| warren::plugin::host::log(warren::plugin::host::LogLevel::Error, m));
}

impl Guest for Fanout {
    fn describe() -> Info {
        log_panics();
        Info {
            name: "fanout".into(),
            description: "AMQP fanout exchange, as per the AMQP specification".into(),
            // Reads nothing at all: the host passes an empty message and its route cache
            // holds a single entry for the whole exchange.
            reads: RoutingInputs::empty(),
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
        ALL.with(|a| a.borrow_mut().add(b.destination));
        Ok(())
    }
    fn remove_binding(b: Binding) -> bool {
        ALL.with(|a| a.borrow_mut().remove(b.destination))
    }
    fn route(_msg: MessageView) -> Vec<DestinationId> {
        route_all()
    }
    fn route_batch(msgs: Vec<MessageView>) -> Vec<Vec<DestinationId>> {
        msgs.iter().map(|_| route_all()).collect()
    }
}

export!(Fanout);
