//! The exchange-type boundary (mirrors RabbitMQ's `rabbit_exchange_type` callbacks).
//!
//! The broker core owns exchanges and the authoritative list of their bindings. Everything that
//! depends on the *type* of an exchange goes through these two traits, so a type can be native Rust
//! or a Wasm component without the core knowing. The default exchange is routed natively by the core
//! and never reaches this boundary.
//!
//! Lifecycle: `ExchangeTypeFactory::validate(args)` before a declare, then `create` once per exchange.
//! Every binding change is handed to the `ExchangeRouter` (`add_binding` / `remove_binding`), so
//! `route` receives only the message. After a plugin crash or reload the core replays all bindings
//! into a fresh router.

use amq_protocol::protocol::basic::AMQPProperties as BasicProperties;
use amq_protocol::types::FieldTable;

/// Host-assigned number of one destination (queue or exchange) of one exchange.
pub type DestinationId = u32;

/// What `route` looks at. The host only builds the inputs a type asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoutingInputs {
    pub routing_key: bool,
    pub headers: bool,
    pub body: bool,
    /// The basic properties other than `headers` (message-id, timestamp, ...).
    pub properties: bool,
}

/// Static description of an exchange type.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    /// Type name as used in `exchange.declare`, e.g. "topic", "x-consistent-hash".
    pub name: String,
    pub description: String,
    pub reads: RoutingInputs,
    /// Same inputs and same bindings always give the same destinations: the host may cache
    /// `routing key -> destinations` for key-only types.
    pub deterministic: bool,
}

/// One binding as the exchange type sees it.
#[derive(Debug, Clone)]
pub struct BindingView<'a> {
    pub destination: DestinationId,
    pub binding_key: &'a str,
    pub arguments: &'a FieldTable,
}

/// The parts of a message a type may read (only those named in `TypeInfo::reads` are filled).
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    pub routing_key: &'a str,
    pub headers: Option<&'a FieldTable>,
    pub body: Option<&'a [u8]>,
    /// The message's basic properties (the host ignores their `headers` here: see `headers`).
    pub properties: Option<&'a BasicProperties>,
}

/// A failure inside an exchange type (trap, time-out, memory cap). The core closes the publishing
/// channel with 541 INTERNAL_ERROR naming the type and the exchange.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TypeFailure(pub String);

/// Creates routers for exchanges of one type.
pub trait ExchangeTypeFactory: Send + Sync {
    fn info(&self) -> &TypeInfo;
    /// Checks the arguments of an exchange.declare; `Err(text)` becomes 406 PRECONDITION_FAILED.
    fn validate(&self, arguments: &FieldTable) -> Result<(), String>;
    /// Makes the routing state of one exchange.
    fn create(&self, exchange: &str, arguments: &FieldTable) -> Result<Box<dyn ExchangeRouter>, TypeFailure>;
    /// False for the stand-in of a type whose plugin is not enabled ([`Unavailable`]).
    fn available(&self) -> bool {
        true
    }
}

/// Routing state of one exchange. Calls are serialised by the core (one router is never called
/// concurrently), hence `&mut self`.
pub trait ExchangeRouter: Send {
    /// Checks a binding before it is added; `Err(text)` becomes 406 PRECONDITION_FAILED.
    fn validate_binding(&mut self, binding: &BindingView<'_>) -> Result<Result<(), String>, TypeFailure>;
    fn add_binding(&mut self, binding: &BindingView<'_>) -> Result<(), TypeFailure>;
    fn remove_binding(&mut self, binding: &BindingView<'_>) -> Result<(), TypeFailure>;
    /// Removes several bindings (a deleted destination's): one `remove_binding` each unless the
    /// router can do better. Every binding is tried; the first failure is returned.
    fn remove_bindings(&mut self, bindings: &[BindingView<'_>]) -> Result<(), TypeFailure> {
        let mut first = Ok(());
        for b in bindings {
            if let Err(e) = self.remove_binding(b)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
    /// Appends the destinations of `msg` to `out` (duplicates allowed; the core de-duplicates).
    fn route(&mut self, msg: &MessageView<'_>, out: &mut Vec<DestinationId>) -> Result<(), TypeFailure>;
    /// Called when the exchange is deleted.
    fn delete(&mut self) {}
}

/// Stands in for the type of a disabled or missing plugin: the exchange keeps its bindings (in
/// the core) and routes nothing.
pub struct Unavailable(pub TypeInfo);

impl Unavailable {
    /// A stand-in for type `name`, known only by its name.
    pub fn named(name: &str) -> Unavailable {
        Unavailable(TypeInfo { name: name.to_string(), description: String::new(), reads: RoutingInputs::default(), deterministic: false })
    }
}

impl ExchangeTypeFactory for Unavailable {
    fn info(&self) -> &TypeInfo {
        &self.0
    }
    fn validate(&self, _arguments: &FieldTable) -> Result<(), String> {
        Err(format!("exchange type '{}' is not available (its plugin is not enabled)", self.0.name))
    }
    fn create(&self, _exchange: &str, _arguments: &FieldTable) -> Result<Box<dyn ExchangeRouter>, TypeFailure> {
        Ok(Box::new(RoutesNothing(self.0.name.clone())))
    }
    fn available(&self) -> bool {
        false
    }
}

/// The router of an exchange whose type is unavailable: routes nothing, keeps no state (the core
/// holds the bindings), and refuses new bindings, which no type could check (406).
struct RoutesNothing(String);

impl ExchangeRouter for RoutesNothing {
    fn validate_binding(&mut self, _b: &BindingView<'_>) -> Result<Result<(), String>, TypeFailure> {
        Ok(Err(format!("exchange type '{}' is not available (its plugin is not enabled)", self.0)))
    }
    fn add_binding(&mut self, _b: &BindingView<'_>) -> Result<(), TypeFailure> {
        Ok(())
    }
    fn remove_binding(&mut self, _b: &BindingView<'_>) -> Result<(), TypeFailure> {
        Ok(())
    }
    fn route(&mut self, _msg: &MessageView<'_>, _out: &mut Vec<DestinationId>) -> Result<(), TypeFailure> {
        Ok(())
    }
}
