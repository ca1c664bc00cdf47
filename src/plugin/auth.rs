//! Authentication/authorization backends backed by Wasm components (world `auth-backend`),
//! exposed to the core as [`AuthBackend`](crate::auth_backend::AuthBackend).
//!
//! One loaded plugin is one [`WasmAuthBackend`]: its pre-linked component and a small pool of
//! instances (each in its own `Store`, under the engine's per-call time limit and the memory cap),
//! so that logins on several connections at once do not wait for each other. Every answer is
//! checked before the broker uses it: a call that traps, runs out of time or memory, or returns a
//! malformed user is a refusal (logged, counted), never an allow; the failed instance is dropped
//! and the next call gets a fresh one. The broker's callers cache allowed checks per connection
//! and channel (see `connection/channel/authz.rs`), so the publish path does not enter Wasm.

use super::engine::{EngineInner, FIRST_DEADLINE, HostState, PluginEngine, on_deadline};
use super::{LoadError, PluginStats, error_text};
use crate::auth_backend::{Access, AuthBackend, AuthUser, Credentials, Decision, ResourceKind};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime::Store;

/// Host bindings generated from `wit/` (world `auth-backend`); the `host` interface is the one of
/// the exchange-type bindings (one implementation, one linker).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "auth-backend",
        with: { "warren:plugin/host": crate::plugin::bindings::warren::plugin::host },
    });
}

use bindings::AuthBackend as Guest;
use bindings::AuthBackendPre as GuestPre;
use bindings::warren::plugin::auth_types as wit;

/// Idle instances kept per plugin.
const POOL: usize = 8;
/// Limits on a user returned by a plugin; beyond them the answer is malformed (a refusal).
const MAX_NAME: usize = 255;
const MAX_TAGS: usize = 64;
const MAX_STATE: usize = 64 << 10;

struct Live {
    store: Store<HostState>,
    guest: Guest,
    /// The `Code::generation` it was made from (instances of replaced code are dropped).
    generation: u64,
}

/// The component a backend runs; replaced as a whole by a hot reload.
struct Code {
    pre: GuestPre<HostState>,
    description: String,
    generation: u64,
}

/// A loaded auth-backend plugin.
pub struct WasmAuthBackend {
    plugin: Arc<str>,
    engine: Arc<EngineInner>,
    code: arc_swap::ArcSwap<Code>,
    config: Arc<HashMap<String, String>>,
    memory_bytes: usize,
    stats: Arc<PluginStats>,
    pool: Mutex<Vec<Live>>,
    /// Guest calls made (the caching tests and benchmarks read it).
    calls: std::sync::atomic::AtomicU64,
}

impl PluginEngine {
    /// Loads an auth-backend component: compile (or cache hit), link, type-check against world
    /// `warren:plugin/auth-backend@0.1.0`, `describe()`, then `init()` (the plugin checks its
    /// configuration; a refusal is a load error with the plugin's reason).
    pub fn load_auth_backend(
        &self,
        plugin: &str,
        wasm: &[u8],
        config: HashMap<String, String>,
        stats: Arc<PluginStats>,
    ) -> Result<WasmAuthBackend, LoadError> {
        let (component, _) = self.compile(plugin, wasm)?;
        let wrong_world = |e: wasmtime::Error| {
            LoadError::new(plugin, format!("not an auth backend (world warren:plugin/auth-backend@0.1.0): {}", error_text(&e)))
        };
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = GuestPre::new(instance_pre).map_err(wrong_world)?;
        let memory_bytes = config
            .get("memory_limit_mib")
            .and_then(|m| m.parse::<usize>().ok())
            .map(|m| m << 20)
            .unwrap_or(self.inner.limits.memory_bytes);
        let b = WasmAuthBackend {
            plugin: Arc::from(plugin),
            engine: self.inner.clone(),
            code: arc_swap::ArcSwap::from_pointee(Code { pre, description: String::new(), generation: 0 }),
            config: Arc::new(config),
            memory_bytes,
            stats,
            pool: Mutex::new(Vec::new()),
            calls: Default::default(),
        };
        let description = b.call("describe", |g, s| g.call_describe(s)).map_err(|e| LoadError::new(plugin, e))?;
        let pre = b.code.load().pre.clone();
        b.code.store(Arc::new(Code { pre, description, generation: 0 }));
        match b.call("init", |g, s| g.call_init(s)) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(LoadError::new(plugin, format!("configuration refused: {why}"))),
            Err(e) => return Err(LoadError::new(plugin, e)),
        }
        Ok(b)
    }
}

impl PluginEngine {
    /// The `describe()` of an auth-backend component, without `init` (for `warren-plugins list`
    /// of a plugin that is not in use, whose configuration may be absent).
    pub fn describe_auth_backend(&self, plugin: &str, wasm: &[u8]) -> Result<String, LoadError> {
        let (component, _) = self.compile(plugin, wasm)?;
        let e = |e: wasmtime::Error| LoadError::new(plugin, error_text(&e));
        let pre = GuestPre::new(self.inner.linker.instantiate_pre(&component).map_err(e)?).map_err(e)?;
        let b = WasmAuthBackend {
            plugin: Arc::from(plugin),
            engine: self.inner.clone(),
            code: arc_swap::ArcSwap::from_pointee(Code { pre, description: String::new(), generation: 0 }),
            config: Arc::default(),
            memory_bytes: self.inner.limits.memory_bytes,
            stats: Arc::default(),
            pool: Mutex::new(Vec::new()),
            calls: Default::default(),
        };
        b.call("describe", |g, s| g.call_describe(s)).map_err(|m| LoadError::new(plugin, m))
    }
}

impl WasmAuthBackend {
    /// Name of the plugin (shipped name or file stem).
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The plugin's one-line description (`describe()`).
    pub fn description(&self) -> String {
        self.code.load().description.clone()
    }

    /// Hot reload: from now on the component of `new` (a fresh load of the plugin's new file,
    /// its `init` passed) answers; instances of the old one are dropped as they come back.
    /// Users logged in before keep their state and are checked by the new code.
    pub fn replace_code(&self, new: WasmAuthBackend) {
        let next = self.code.load().generation + 1;
        let code = new.code.load();
        self.code.store(Arc::new(Code { pre: code.pre.clone(), description: code.description.clone(), generation: next }));
        self.pool.lock().clear();
        self.stats.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The plugin's failure counters.
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.stats
    }

    /// Guest calls made so far (every export, successful or not).
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn instantiate(&self, code: &Code) -> Result<Live, String> {
        let state = HostState::new(self.plugin.clone(), self.config.clone(), self.memory_bytes);
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        self.engine.watch(&mut store);
        let limits = self.engine.limits.clone();
        store.epoch_deadline_callback(move |mut ctx| on_deadline(&mut ctx.data_mut().clock, &limits));
        store.set_epoch_deadline(FIRST_DEADLINE);
        let guest = code.pre.instantiate(&mut store).map_err(|e| format!("instantiation failed: {}", error_text(&e)))?;
        Ok(Live { store, guest, generation: code.generation })
    }

    /// Runs one guest call on a pooled (or fresh) instance under the time limit. A failed
    /// instance is dropped; the error names the operation and the cause.
    fn call<R>(&self, op: &str, f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>) -> Result<R, String> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let code = self.code.load_full();
        let pooled = self.pool.lock().pop().filter(|l| l.generation == code.generation);
        let mut live = match pooled {
            Some(l) => l,
            None => self.instantiate(&code).map_err(|e| format!("plugin {} {op} failed: {e}", self.plugin))?,
        };
        let data = live.store.data_mut();
        data.limiter.hit = false;
        data.clock.reset();
        live.store.set_epoch_deadline(FIRST_DEADLINE);
        match f(&live.guest, &mut live.store) {
            Ok(r) => {
                let mut pool = self.pool.lock();
                if pool.len() < POOL && live.generation == self.code.load().generation {
                    pool.push(live);
                }
                Ok(r)
            }
            Err(e) => {
                let text = super::engine::failure_text(&e, live.store.data(), &self.engine.limits, self.memory_bytes, &self.stats);
                Err(format!("plugin {} {op} failed: {text}; instance discarded", self.plugin))
            }
        }
    }

    /// The WIT user of `u`.
    fn wit_user(u: &AuthUser) -> wit::User {
        wit::User { username: u.username.clone(), tags: u.tags.clone(), state: u.state.to_vec(), expires_at: u.expires_at }
    }

    /// Checks a user returned by the plugin and makes it the broker's.
    fn accept_user(&self, u: wit::User, backend: Arc<dyn AuthBackend>) -> Result<AuthUser, String> {
        let bad = |why: String| format!("plugin {} returned a malformed user: {why}", self.plugin);
        let printable = |s: &str| !s.is_empty() && s.len() <= MAX_NAME && !s.chars().any(char::is_control);
        if !printable(&u.username) {
            return Err(bad(format!("user name {:?} (1 to {MAX_NAME} bytes, no control characters)", cut(&u.username))));
        }
        if u.tags.len() > MAX_TAGS {
            return Err(bad(format!("{} tags (at most {MAX_TAGS})", u.tags.len())));
        }
        if let Some(t) = u.tags.iter().find(|t| !printable(t)) {
            return Err(bad(format!("tag {:?} (1 to {MAX_NAME} bytes, no control characters)", cut(t))));
        }
        if u.state.len() > MAX_STATE {
            return Err(bad(format!("state of {} bytes (at most {MAX_STATE})", u.state.len())));
        }
        Ok(AuthUser { username: u.username, tags: u.tags, backend, state: Arc::from(u.state), expires_at: u.expires_at })
    }

    /// A check's answer: a failed call is a refusal (and a log line), never an allow.
    fn decide(&self, op: &str, r: Result<wit::Decision, String>) -> Decision {
        match r {
            Ok(wit::Decision::Allow) => Decision::Allow,
            Ok(wit::Decision::Deny) => Decision::Deny,
            Ok(wit::Decision::Error(e)) => Decision::Error(e),
            Err(e) => {
                tracing::error!(plugin = %self.plugin, "{e}; {op} refused");
                Decision::Deny
            }
        }
    }
}

/// The first 64 characters of `s`, for messages.
fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

fn wit_access(a: Access) -> wit::Permission {
    match a {
        Access::Configure => wit::Permission::Configure,
        Access::Write => wit::Permission::Write,
        Access::Read => wit::Permission::Read,
    }
}

impl AuthBackend for WasmAuthBackend {
    fn name(&self) -> &str {
        &self.plugin
    }

    fn login(self: Arc<Self>, c: &Credentials<'_>) -> Result<AuthUser, String> {
        let creds = wit::Credentials { username: c.username.to_string(), password: c.password.to_string(), peer: c.peer.to_string() };
        match self.call("login", |g, s| g.call_login(s, &creds)) {
            Ok(Ok(u)) => {
                let me: Arc<dyn AuthBackend> = self.clone();
                self.accept_user(u, me).inspect_err(|e| tracing::error!(plugin = %self.plugin, "{e}; login refused"))
            }
            Ok(Err(why)) => Err(format!("{}: {why}", self.plugin)),
            Err(e) => {
                tracing::error!(plugin = %self.plugin, "{e}; login refused");
                Err(e)
            }
        }
    }

    fn update_secret(&self, user: &AuthUser, secret: &str) -> Result<AuthUser, String> {
        let u = Self::wit_user(user);
        match self.call("update-secret", |g, s| g.call_update_secret(s, &u, secret)) {
            Ok(Ok(u)) => self.accept_user(u, user.backend.clone()),
            Ok(Err(why)) => Err(format!("{}: {why}", self.plugin)),
            Err(e) => Err(e),
        }
    }

    fn check_vhost(&self, user: &AuthUser, vhost: &str, peer: SocketAddr) -> Decision {
        let u = Self::wit_user(user);
        let peer = peer.to_string();
        self.decide("vhost access", self.call("check-vhost", |g, s| g.call_check_vhost(s, &u, vhost, &peer)))
    }

    fn check_resource(&self, user: &AuthUser, vhost: &str, kind: ResourceKind, name: &str, access: Access) -> Decision {
        let u = Self::wit_user(user);
        let kind = match kind {
            ResourceKind::Exchange => wit::ResourceKind::Exchange,
            ResourceKind::Queue => wit::ResourceKind::Queue,
        };
        let r = wit::VhostResource { vhost: vhost.to_string(), kind, name: name.to_string() };
        self.decide("resource access", self.call("check-resource", |g, s| g.call_check_resource(s, &u, &r, wit_access(access))))
    }

    fn check_topic(&self, user: &AuthUser, vhost: &str, exchange: &str, routing_key: &str, access: Access) -> Decision {
        let u = Self::wit_user(user);
        let r = wit::VhostResource { vhost: vhost.to_string(), kind: wit::ResourceKind::Topic, name: exchange.to_string() };
        let vars = vec![("username".to_string(), user.username.clone()), ("vhost".to_string(), vhost.to_string())];
        self.decide(
            "topic access",
            self.call("check-topic", |g, s| g.call_check_topic(s, &u, &r, wit_access(access), routing_key, &vars)),
        )
    }
}
