//! Wasm plugin host: plugins as WebAssembly components (the `wit/` package `warren:plugin`;
//! exchange types: world `exchange-type`), run by wasmtime. The core never imports this module:
//! `server.rs` wires it in (exchange types registered with the broker, [`manager::PluginManager`]
//! as the admin API's `PluginControl`).
//!
//! - [`PluginEngine`]: one wasmtime `Engine` (epoch interruption, a ticker thread), one `Linker`
//!   with the `host` interface (no WASI), and an on-disk cache of compiled components keyed by
//!   the component's SHA-256 and the engine's compatibility hash.
//! - [`WasmExchangeType`]: one loaded exchange-type plugin (its `InstancePre`, its `describe()`),
//!   implementing [`ExchangeTypeFactory`](crate::exchange_type::ExchangeTypeFactory).
//! - [`WasmRouter`]: one exchange: its own `Store` and instance (memory cap, per-call time limit),
//!   its own copy of the bindings (replayed into a fresh instance after any trap), and a route
//!   cache for deterministic types that read at most the routing key.
//! - [`WasmAuthBackend`]: one auth-backend plugin (world `auth-backend`) behind the core's
//!   `AuthBackend` trait: a pool of instances, every answer checked, failures are refusals.
//!
//! Built-in types (direct, fanout, topic, headers) are embedded components: see [`builtin`].

pub mod auth;
pub mod authoring;
pub mod builtin;
pub mod catalog;
mod convert;
mod engine;
mod exchange;
pub mod http;
pub mod kind;
mod ticker;
#[cfg(test)]
mod tests;

pub use engine::{CacheOutcome, PluginEngine, PluginLimits};
pub use kind::PluginKind;
pub use auth::WasmAuthBackend;
pub use exchange::{PluginStats, WasmExchangeType, WasmRouter};
pub mod manager;
mod watch;

/// Host bindings generated from `wit/` (world `exchange-type`).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "exchange-type",
        additional_derives: [PartialEq],
    });
}

/// A plugin could not be loaded (not a component, wrong world, trap in `describe`, cache I/O).
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin}: {message}")]
pub struct LoadError {
    pub plugin: String,
    pub message: String,
}

impl LoadError {
    pub(crate) fn new(plugin: &str, message: impl Into<String>) -> Self {
        LoadError { plugin: plugin.to_string(), message: message.into() }
    }
}

/// Text of a wasmtime error on one line: every cause, whole (multi-line messages such as a
/// parser's `expected=[...] actual=[...]` joined with spaces), without the wasm backtrace.
pub(crate) fn error_text(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if s.trim_start().starts_with("error while executing at wasm backtrace") {
            continue;
        }
        let text = s
            .lines()
            .take_while(|l| !l.trim_start().starts_with("wasm backtrace:"))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
    }
    if parts.is_empty() { "unknown error".to_string() } else { parts.join(": ") }
}
