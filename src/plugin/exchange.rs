//! Exchange types backed by Wasm components: the factory (one per loaded plugin) and the router
//! (one per exchange).

use super::bindings::warren::plugin::types::{FieldValue, RoutingInputs as WitReads};
use super::bindings::{Binding, ExchangeType, ExchangeTypePre, MessageView as WitMessage};
use super::engine::{CacheOutcome, EngineInner, FIRST_DEADLINE, HostState, PluginEngine, on_deadline};
use super::{LoadError, convert, error_text};
use crate::exchange_type::{
    BindingView, DestinationId, ExchangeRouter, ExchangeTypeFactory, MessageView, RoutingInputs, TypeFailure,
    TypeInfo,
};
use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Store;

type WitTable = Vec<(String, FieldValue)>;

/// What every router of one plugin shares.
struct Shared {
    plugin: Arc<str>,
    engine: Arc<EngineInner>,
    pre: ExchangeTypePre<HostState>,
    config: Arc<HashMap<String, String>>,
    /// Memory cap of one instance: the engine's, or the plugin's `memory_limit_mib` setting.
    memory_bytes: usize,
    info: TypeInfo,
    /// Failure and rebuild counters of the plugin (shared by its versions across reloads).
    stats: Arc<PluginStats>,
    /// Cache `routing key -> destinations` (deterministic, reads neither headers, body nor
    /// properties): the default of a router until `create-exchange` narrows its reads.
    cacheable: bool,
}

/// One live instance in its own store.
struct Live {
    store: Store<HostState>,
    guest: ExchangeType,
}

impl Shared {
    fn instantiate(&self) -> wasmtime::Result<Live> {
        let state = HostState::new(self.plugin.clone(), self.config.clone(), self.memory_bytes);
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        self.engine.watch(&mut store);
        let limits = self.engine.limits.clone();
        store.epoch_deadline_callback(move |mut ctx| on_deadline(&mut ctx.data_mut().clock, &limits));
        store.set_epoch_deadline(FIRST_DEADLINE);
        let guest = self.pre.instantiate(&mut store)?;
        Ok(Live { store, guest })
    }

    /// Runs one guest call under the deadline; the error text names what went wrong.
    fn call<R>(
        &self,
        live: &mut Live,
        f: impl FnOnce(&ExchangeType, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        let data = live.store.data_mut();
        data.limiter.hit = false;
        data.clock.reset();
        live.store.set_epoch_deadline(FIRST_DEADLINE);
        f(&live.guest, &mut live.store)
            .map_err(|e| super::engine::failure_text(&e, live.store.data(), &self.engine.limits, self.memory_bytes, &self.stats))
    }
}

/// Counters of one plugin, over all its exchanges and (kept by the plugin manager) across
/// reloads. Failures of guest calls are counted by cause; a refusal (`err(text)`) is not a
/// failure.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls that trapped (other than by the time or memory limit).
    pub traps: AtomicU64,
    /// Calls stopped by the time limit.
    pub timeouts: AtomicU64,
    /// Calls that failed at the memory cap.
    pub out_of_memory: AtomicU64,
    /// Instances rebuilt (bindings replayed) after a failure.
    pub rebuilds: AtomicU64,
    /// Successful hot reloads of the plugin's file.
    pub reloads: AtomicU64,
}

fn reads_of(flags: WitReads) -> RoutingInputs {
    RoutingInputs {
        routing_key: flags.contains(WitReads::ROUTING_KEY),
        headers: flags.contains(WitReads::HEADERS),
        body: flags.contains(WitReads::BODY),
        properties: flags.contains(WitReads::PROPERTIES),
    }
}

/// Routes may be cached by routing key: deterministic, and reading nothing but the key.
fn cacheable(deterministic: bool, reads: RoutingInputs) -> bool {
    deterministic && !reads.headers && !reads.body && !reads.properties
}

/// A loaded exchange-type plugin. Implements [`ExchangeTypeFactory`]: `create` makes one
/// [`WasmRouter`] (one instance) per exchange.
pub struct WasmExchangeType {
    shared: Arc<Shared>,
    /// Instance used for `validate` (stateless calls), created on first use.
    scratch: Mutex<Option<Live>>,
    cache: CacheOutcome,
}

impl PluginEngine {
    /// Loads an exchange-type component: compile (or cache hit), link against the host,
    /// type-check against world `warren:plugin/exchange-type@0.1.0`, then `describe()` it.
    pub fn load_exchange_type(
        &self,
        plugin: &str,
        wasm: &[u8],
        config: HashMap<String, String>,
    ) -> Result<WasmExchangeType, LoadError> {
        self.load_exchange_type_counted(plugin, wasm, config, Arc::default())
    }

    /// [`load_exchange_type`](Self::load_exchange_type), counting failures into `stats` (the
    /// plugin manager passes the same counters to every version of a plugin).
    pub fn load_exchange_type_counted(
        &self,
        plugin: &str,
        wasm: &[u8],
        config: HashMap<String, String>,
        stats: Arc<PluginStats>,
    ) -> Result<WasmExchangeType, LoadError> {
        let (component, cache) = self.compile(plugin, wasm)?;
        let wrong_world = |e: wasmtime::Error| {
            LoadError::new(
                plugin,
                format!("not an exchange type (world warren:plugin/exchange-type@0.1.0): {}", error_text(&e)),
            )
        };
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = ExchangeTypePre::new(instance_pre).map_err(wrong_world)?;
        let memory_bytes = config
            .get("memory_limit_mib")
            .and_then(|m| m.parse::<usize>().ok())
            .map(|m| m << 20)
            .unwrap_or(self.inner.limits.memory_bytes);
        let mut shared = Shared {
            plugin: Arc::from(plugin),
            engine: self.inner.clone(),
            pre,
            memory_bytes,
            config: Arc::new(config),
            info: TypeInfo { name: String::new(), description: String::new(), reads: RoutingInputs::default(), deterministic: false },
            stats,
            cacheable: false,
        };
        let mut live = shared
            .instantiate()
            .map_err(|e| LoadError::new(plugin, format!("instantiation failed: {}", error_text(&e))))?;
        let info = shared
            .call(&mut live, |g, s| g.call_describe(s))
            .map_err(|e| LoadError::new(plugin, format!("describe failed: {e}")))?;
        if info.name.is_empty() {
            return Err(LoadError::new(plugin, "describe returned an empty type name"));
        }
        let reads = reads_of(info.reads);
        shared.cacheable = cacheable(info.deterministic, reads);
        shared.info = TypeInfo { name: info.name, description: info.description, reads, deterministic: info.deterministic };
        Ok(WasmExchangeType { shared: Arc::new(shared), scratch: Mutex::new(Some(live)), cache })
    }

    /// Loads the four built-in exchange types (direct, fanout, topic, headers).
    pub fn load_builtins(&self) -> Result<Vec<WasmExchangeType>, LoadError> {
        super::builtin::BUILTINS
            .iter()
            .map(|(name, wasm)| self.load_exchange_type(name, wasm, HashMap::new()))
            .collect()
    }
}

impl WasmExchangeType {
    /// Name of the plugin this type came from (file stem or built-in name).
    pub fn plugin(&self) -> &str {
        &self.shared.plugin
    }

    /// The plugin's failure and rebuild counters.
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.shared.stats
    }

    /// Whether the compiled code came from the on-disk cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Makes a router (concrete type; `create` boxes it).
    pub fn create_router(&self, exchange: &str, arguments: &FieldTable) -> Result<WasmRouter, TypeFailure> {
        let mut r = WasmRouter {
            shared: self.shared.clone(),
            exchange: exchange.to_string(),
            arguments: convert::table(arguments),
            live: None,
            bindings: Vec::new(),
            cache: HashMap::new(),
            failures: 0,
            discarded: false,
            reads: self.shared.info.reads,
            cacheable: self.shared.cacheable,
        };
        r.ensure_live()?;
        Ok(r)
    }
}

impl ExchangeTypeFactory for WasmExchangeType {
    fn info(&self) -> &TypeInfo {
        &self.shared.info
    }

    fn validate(&self, arguments: &FieldTable) -> Result<(), String> {
        let args = convert::table(arguments);
        let mut scratch = self.scratch.lock();
        if scratch.is_none() {
            *scratch = Some(self.shared.instantiate().map_err(|e| {
                format!("plugin {}: instantiation failed: {}", self.shared.plugin, error_text(&e))
            })?);
        }
        let live = scratch.as_mut().expect("just set");
        match self.shared.call(live, |g, s| g.call_validate(s, &args)) {
            Ok(r) => r,
            Err(e) => {
                *scratch = None;
                Err(format!("plugin {} validate failed: {e}", self.shared.plugin))
            }
        }
    }

    fn create(&self, exchange: &str, arguments: &FieldTable) -> Result<Box<dyn ExchangeRouter>, TypeFailure> {
        Ok(Box::new(self.create_router(exchange, arguments)?))
    }
}

/// Routing state of one exchange of a Wasm type: one instance in its own store, plus the
/// host's copy of the bindings so that a poisoned instance (trap, time-out, memory cap) can be
/// discarded and rebuilt with its bindings replayed.
pub struct WasmRouter {
    shared: Arc<Shared>,
    exchange: String,
    arguments: WitTable,
    /// `None` after a failure: the next call instantiates again and replays `bindings`.
    live: Option<Live>,
    bindings: Vec<Binding>,
    /// routing key (or "" for types that read nothing) -> destinations
    cache: HashMap<String, Vec<DestinationId>>,
    failures: u64,
    /// The instance was discarded after a failure (the next one counts as a rebuild).
    discarded: bool,
    /// What `route` reads for this exchange: `describe().reads`, narrowed by `create-exchange`.
    reads: RoutingInputs,
    /// This exchange's routes may be cached by routing key.
    cacheable: bool,
}

impl WasmRouter {
    /// Failures (traps, time-outs, memory cap) seen so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Bindings currently held (the host's copy).
    pub fn binding_count(&self) -> usize {
        self.bindings.len()
    }

    /// Drops the instance as a failure would (tests, benchmarks).
    #[cfg(test)]
    pub(super) fn discard_instance(&mut self) {
        self.live = None;
    }

    /// What `route` reads for this exchange (`describe().reads` narrowed by `create-exchange`).
    pub fn reads(&self) -> RoutingInputs {
        self.reads
    }

    /// Entries in the route cache.
    pub fn cached_routes(&self) -> usize {
        self.cache.len()
    }

    fn failure(&mut self, op: &str, text: String) -> TypeFailure {
        self.live = None;
        self.discarded = true;
        self.cache.clear();
        self.failures += 1;
        let msg = format!("plugin {} exchange '{}' {op} failed: {text}", self.shared.plugin, self.exchange);
        tracing::warn!(plugin = %self.shared.plugin, exchange = %self.exchange, "{msg}; instance discarded");
        TypeFailure(msg)
    }

    /// Makes sure an instance exists: instantiate, `create-exchange`, replay the bindings.
    fn ensure_live(&mut self) -> Result<(), TypeFailure> {
        if self.live.is_some() {
            return Ok(());
        }
        let mut live = match self.shared.instantiate() {
            Ok(l) => l,
            Err(e) => return Err(self.failure("instantiate", error_text(&e))),
        };
        let exchange = self.exchange.clone();
        match self.shared.call(&mut live, |g, s| g.call_create_exchange(s, &exchange, &self.arguments)) {
            Ok(Ok(narrowed)) => {
                let all = self.shared.info.reads;
                let reads = match narrowed.map(reads_of) {
                    Some(r) => RoutingInputs {
                        routing_key: all.routing_key && r.routing_key,
                        headers: all.headers && r.headers,
                        body: all.body && r.body,
                        properties: all.properties && r.properties,
                    },
                    None => all,
                };
                if reads != self.reads {
                    self.cache.clear();
                }
                self.reads = reads;
                self.cacheable = cacheable(self.shared.info.deterministic, reads);
            }
            Ok(Err(refused)) => return Err(self.failure("create-exchange", format!("refused: {refused}"))),
            Err(e) => return Err(self.failure("create-exchange", e)),
        }
        for i in 0..self.bindings.len() {
            let b = &self.bindings[i];
            match self.shared.call(&mut live, |g, s| g.call_add_binding(s, b)) {
                Ok(_) => {}
                Err(e) => return Err(self.failure("replay add-binding", e)),
            }
        }
        if !self.bindings.is_empty() {
            tracing::debug!(exchange = %self.exchange, n = self.bindings.len(), "bindings replayed into a new instance");
        }
        if std::mem::take(&mut self.discarded) {
            self.shared.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
        }
        self.live = Some(live);
        Ok(())
    }

    fn wit_binding(b: &BindingView<'_>) -> Binding {
        Binding {
            destination: b.destination,
            binding_key: b.binding_key.to_string(),
            arguments: convert::table(b.arguments),
        }
    }

    fn message(&self, msg: &MessageView<'_>) -> WitMessage {
        let reads = self.reads;
        WitMessage {
            routing_key: if reads.routing_key { msg.routing_key.to_string() } else { String::new() },
            headers: match (reads.headers, msg.headers) {
                (true, Some(h)) => convert::table(h),
                _ => Vec::new(),
            },
            body: if reads.body { msg.body.map(|b| b.to_vec()) } else { None },
            properties: if reads.properties { msg.properties.map(convert::properties) } else { None },
        }
    }

    fn cache_key<'m>(&self, msg: &MessageView<'m>) -> &'m str {
        if self.reads.routing_key { msg.routing_key } else { "" }
    }

    fn remember(&mut self, key: &str, dests: &[DestinationId]) {
        if self.shared.engine.limits.route_cache_entries == 0 {
            return;
        }
        if self.cache.len() >= self.shared.engine.limits.route_cache_entries {
            self.cache.clear();
        }
        self.cache.insert(key.to_string(), dests.to_vec());
    }

    /// Routes several messages with one guest call (`route-batch`), using the route cache
    /// where it applies. `out[i]` receives the destinations of `msgs[i]`.
    pub fn route_batch(&mut self, msgs: &[MessageView<'_>], out: &mut Vec<Vec<DestinationId>>) -> Result<(), TypeFailure> {
        out.clear();
        out.resize(msgs.len(), Vec::new());
        let mut todo: Vec<usize> = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            match self.cacheable.then(|| self.cache.get(self.cache_key(m))).flatten() {
                Some(d) => out[i].extend_from_slice(d),
                None => todo.push(i),
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let views: Vec<WitMessage> = todo.iter().map(|&i| self.message(&msgs[i])).collect();
        self.ensure_live()?;
        let live = self.live.as_mut().expect("ensured");
        let res = self.shared.call(live, |g, s| g.call_route_batch(s, &views));
        let res = res.map_err(|e| self.failure("route-batch", e))?;
        if res.len() != todo.len() {
            return Err(self.failure("route-batch", format!("returned {} results for {} messages", res.len(), todo.len())));
        }
        for (&i, dests) in todo.iter().zip(res) {
            if self.cacheable {
                let key = self.cache_key(&msgs[i]);
                self.remember(key, &dests);
            }
            out[i] = dests;
        }
        Ok(())
    }
}

impl ExchangeRouter for WasmRouter {
    fn validate_binding(&mut self, binding: &BindingView<'_>) -> Result<Result<(), String>, TypeFailure> {
        let b = Self::wit_binding(binding);
        self.ensure_live()?;
        let live = self.live.as_mut().expect("ensured");
        let res = self.shared.call(live, |g, s| g.call_validate_binding(s, &b));
        res.map_err(|e| self.failure("validate-binding", e))
    }

    fn add_binding(&mut self, binding: &BindingView<'_>) -> Result<(), TypeFailure> {
        let b = Self::wit_binding(binding);
        self.ensure_live()?;
        self.cache.clear();
        let live = self.live.as_mut().expect("ensured");
        let res = self.shared.call(live, |g, s| g.call_add_binding(s, &b));
        match res {
            Ok(Ok(())) => {
                self.bindings.push(b);
                Ok(())
            }
            // A refusal is not a crash: the instance stays, the binding is not added.
            Ok(Err(refused)) => Err(TypeFailure(format!(
                "plugin {} exchange '{}' refused binding: {refused}",
                self.shared.plugin, self.exchange
            ))),
            Err(e) => Err(self.failure("add-binding", e)),
        }
    }

    fn remove_binding(&mut self, binding: &BindingView<'_>) -> Result<(), TypeFailure> {
        let b = Self::wit_binding(binding);
        // The host's copy changes first: should the call fail, the replay leaves it out.
        if let Some(i) = self.bindings.iter().position(|x| *x == b) {
            self.bindings.remove(i);
        }
        self.cache.clear();
        self.ensure_live()?;
        let live = self.live.as_mut().expect("ensured");
        let res = self.shared.call(live, |g, s| g.call_remove_binding(s, &b));
        res.map(|_| ()).map_err(|e| self.failure("remove-binding", e))
    }

    /// The host's copy loses the bindings in one pass (a destination with 10,000 bindings out of
    /// 100,000 is not 10,000 scans), then the guest is told one by one. Should a call fail, the
    /// instance is discarded and the next one gets the copy, which no longer holds any of them.
    fn remove_bindings(&mut self, bindings: &[BindingView<'_>]) -> Result<(), TypeFailure> {
        if bindings.is_empty() {
            return Ok(());
        }
        let wit: Vec<Binding> = bindings.iter().map(Self::wit_binding).collect();
        {
            // destination -> key -> the batch's bindings with them not yet matched
            let mut todo: HashMap<u32, HashMap<&str, Vec<&Binding>>> = HashMap::new();
            for b in &wit {
                todo.entry(b.destination).or_default().entry(b.binding_key.as_str()).or_default().push(b);
            }
            self.bindings.retain(|x| {
                let Some(group) = todo.get_mut(&x.destination).and_then(|k| k.get_mut(x.binding_key.as_str())) else {
                    return true;
                };
                match group.iter().position(|b| *b == x) {
                    Some(i) => {
                        group.swap_remove(i);
                        false
                    }
                    None => true,
                }
            });
        }
        self.cache.clear();
        self.ensure_live()?;
        for b in &wit {
            let live = self.live.as_mut().expect("ensured");
            let res = self.shared.call(live, |g, s| g.call_remove_binding(s, b));
            res.map_err(|e| self.failure("remove-binding", e))?;
        }
        Ok(())
    }

    fn route(&mut self, msg: &MessageView<'_>, out: &mut Vec<DestinationId>) -> Result<(), TypeFailure> {
        if self.cacheable {
            if let Some(d) = self.cache.get(self.cache_key(msg)) {
                out.extend_from_slice(d);
                return Ok(());
            }
        }
        let view = self.message(msg);
        self.ensure_live()?;
        let live = self.live.as_mut().expect("ensured");
        let res = self.shared.call(live, |g, s| g.call_route(s, &view));
        let dests = res.map_err(|e| self.failure("route", e))?;
        out.extend_from_slice(&dests);
        if self.cacheable {
            let key = self.cache_key(msg);
            self.remember(key, &dests);
        }
        Ok(())
    }

    fn delete(&mut self) {
        if let Some(mut live) = self.live.take() {
            if let Err(e) = self.shared.call(&mut live, |g, s| g.call_delete_exchange(s)) {
                tracing::warn!(plugin = %self.shared.plugin, exchange = %self.exchange, "delete-exchange failed: {e}");
            }
        }
        self.bindings.clear();
        self.cache.clear();
    }
}
