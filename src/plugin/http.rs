//! Host side of the `http-handler` world: a loaded component serving HTTP
//! ([`WasmHttpHandler`], the core's [`HttpHandler`]) and the `admin` import, which runs the
//! broker's typed admin operations ([`crate::admin::api`]) as the request's user.
//!
//! Each request runs in a fresh instance (instantiation from the pre-linked component costs
//! tens of microseconds), so a guest that traps or runs out of time only fails that request
//! (500) and leaves nothing behind.

use super::engine::{FIRST_DEADLINE, HostState, PluginEngine, PluginLimits, on_deadline};
use super::{LoadError, PluginStats, error_text};
use crate::admin::api::{self, Caller};
use crate::broker::Broker;
use crate::http::{HttpHandler, HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};

/// Host bindings of world `http-handler`; the `host` interface is the exchange-type world's.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "http-handler",
        with: { "warren:plugin/host": crate::plugin::bindings::warren::plugin::host },
    });
}

use bindings::HttpHandlerPre;
use bindings::warren::plugin::{admin, http_types};

/// CPU-time limit of one request (listing thousands of queues takes a while); the
/// `[plugins.settings.NAME] call_timeout_ms` setting overrides it.
pub const HTTP_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Memory cap of one request's instance; `memory_limit_mib` overrides it.
pub const HTTP_MEMORY: usize = 256 << 20;

/// State of one request's store.
pub struct HttpState {
    host: HostState,
    broker: Weak<Broker>,
    caller: Option<Caller>,
}

use crate::plugin::bindings::warren::plugin::host::{Host as HostIface, LogLevel};

impl HostIface for HttpState {
    fn log(&mut self, level: LogLevel, message: String) {
        HostIface::log(&mut self.host, level, message)
    }
    fn config(&mut self, key: String) -> Option<String> {
        HostIface::config(&mut self.host, key)
    }
    fn now_millis(&mut self) -> u64 {
        HostIface::now_millis(&mut self.host)
    }
    fn random_u64(&mut self) -> u64 {
        HostIface::random_u64(&mut self.host)
    }
}

impl http_types::Host for HttpState {}

impl admin::Host for HttpState {
    fn call(&mut self, op: String, args: String) -> Result<String, admin::Failure> {
        let fail = |e: api::ApiError| admin::Failure { status: e.status, error: e.error, reason: e.reason };
        let Some(broker) = self.broker.upgrade() else {
            return Err(fail(api::ApiError::new(503, "unavailable", "the broker is stopping")));
        };
        let a: serde_json::Value = if args.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(&args).map_err(|e| fail(api::ApiError::bad_request(format!("invalid arguments: {e}"))))?
        };
        // Without a logged-in user (an unprotected path) only the read-only metric operations
        // run; everything else is refused as "Login required".
        let r = match &self.caller {
            Some(caller) => api::call(&broker, caller, &op, &a),
            None => api::call_public(&broker, &op, &a),
        };
        r.map(|v| v.to_string()).map_err(fail)
    }
}

/// One loaded http-handler plugin.
pub struct WasmHttpHandler {
    plugin: Arc<str>,
    engine: PluginEngine,
    pre: HttpHandlerPre<HttpState>,
    config: Arc<HashMap<String, String>>,
    limits: PluginLimits,
    description: String,
    protected: Vec<String>,
    broker: Weak<Broker>,
    stats: Arc<PluginStats>,
}

impl WasmHttpHandler {
    pub fn description(&self) -> &str {
        &self.description
    }
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.stats
    }

    fn store(&self, caller: Option<Caller>) -> Store<HttpState> {
        let host = HostState::new(self.plugin.clone(), self.config.clone(), self.limits.memory_bytes);
        let mut store = Store::new(&self.engine.inner.engine, HttpState { host, broker: self.broker.clone(), caller });
        store.limiter(|s| &mut s.host.limiter);
        self.engine.inner.watch(&mut store);
        let limits = self.limits.clone();
        store.epoch_deadline_callback(move |mut ctx| on_deadline(&mut ctx.data_mut().host.clock, &limits));
        store.set_epoch_deadline(FIRST_DEADLINE);
        store
    }

    fn failure(&self, store: &Store<HttpState>, e: &wasmtime::Error) -> String {
        let text = error_text(e);
        let st = &self.stats;
        if store.data().host.limiter.hit {
            st.out_of_memory.fetch_add(1, Ordering::Relaxed);
            format!("memory limit of {} MiB reached ({text})", self.limits.memory_bytes >> 20)
        } else if store.data().host.clock.stopped.is_some() {
            st.timeouts.fetch_add(1, Ordering::Relaxed);
            format!("time limit of {} ms exceeded ({text})", self.limits.call_timeout.as_millis())
        } else {
            st.traps.fetch_add(1, Ordering::Relaxed);
            text
        }
    }
}

impl HttpHandler for WasmHttpHandler {
    fn name(&self) -> &str {
        &self.plugin
    }

    fn protected(&self) -> &[String] {
        &self.protected
    }

    fn handle(&self, req: HttpRequest) -> HttpResponse {
        let caller = req.user.clone().map(|user| Caller { user });
        let mut store = self.store(caller);
        let wit_req = http_types::Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
            peer: req.peer,
            user: req.user.map(|u| http_types::Principal { username: u.username, tags: u.tags }),
        };
        let r = self.pre.instantiate(&mut store).and_then(|g| g.call_handle(&mut store, &wit_req));
        match r {
            Ok(resp) => HttpResponse { status: resp.status, headers: resp.headers, body: resp.body },
            Err(e) => {
                let why = self.failure(&store, &e);
                tracing::error!(plugin = %self.plugin, method = %wit_req.method, path = %wit_req.path, "request failed: {why}");
                HttpResponse::error(500, "internal_error", &format!("plugin {} failed: {why}", self.plugin))
            }
        }
    }
}

impl PluginEngine {
    /// Loads an http-handler component: type-checks it against the world, calls `describe` and
    /// `protected-prefixes` once. `broker` is what its `admin` calls reach.
    pub fn load_http_handler(
        &self,
        plugin: &str,
        wasm: &[u8],
        config: HashMap<String, String>,
        stats: Arc<PluginStats>,
        broker: Weak<Broker>,
    ) -> Result<WasmHttpHandler, LoadError> {
        let (component, _) = self.compile(plugin, wasm)?;
        let err = |e: wasmtime::Error| LoadError::new(plugin, error_text(&e));
        let mut linker: Linker<HttpState> = Linker::new(&self.inner.engine);
        bindings::HttpHandler::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(err)?;
        let wrong_world = |e: wasmtime::Error| {
            LoadError::new(plugin, format!("not an http handler (world warren:plugin/http-handler@0.1.0): {}", error_text(&e)))
        };
        let pre = HttpHandlerPre::new(linker.instantiate_pre(&component).map_err(wrong_world)?).map_err(wrong_world)?;
        let setting = |k: &str| config.get(k).and_then(|m| m.parse::<u64>().ok());
        let limits = PluginLimits {
            memory_bytes: setting("memory_limit_mib").map_or(HTTP_MEMORY, |m| (m as usize) << 20),
            call_timeout: setting("call_timeout_ms").map_or(HTTP_CALL_TIMEOUT, Duration::from_millis),
            ..self.inner.limits.clone()
        };
        let mut h = WasmHttpHandler {
            plugin: Arc::from(plugin),
            engine: self.clone(),
            pre,
            config: Arc::new(config),
            limits,
            description: String::new(),
            protected: Vec::new(),
            broker,
            stats,
        };
        let mut store = h.store(None);
        let g = h.pre.instantiate(&mut store).map_err(|e| LoadError::new(plugin, format!("instantiation failed: {}", error_text(&e))))?;
        h.description = g.call_describe(&mut store).map_err(|e| LoadError::new(plugin, format!("describe failed: {}", error_text(&e))))?;
        h.protected = g
            .call_protected_prefixes(&mut store)
            .map_err(|e| LoadError::new(plugin, format!("protected-prefixes failed: {}", error_text(&e))))?;
        Ok(h)
    }
}
