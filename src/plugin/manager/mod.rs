//! Plugin management, as `rabbitmq-plugins` does it: which plugins exist and which are enabled
//! (see [`catalog`](super::catalog)), applying a new enabled set to the running broker, and hot
//! reload when an enabled plugin's file changes (see [`watch`](super::watch)).
//!
//! Kind-aware: a plugin's kind is the world it implements ([`PluginKind`]), read from the
//! component when it loads; enabling, disabling, hot reload, the sandbox and the failure
//! counters are the same for every kind. This broker serves `exchange-type` plugins (registered
//! with the broker), `http-handler` plugins (each with an HTTP listener, opened on enable and
//! closed on disable) and `auth-backend` plugins (named in `[auth] backends`, loaded by
//! `auth_backends` at start and hot-reloaded like the others); a component of another world is
//! refused at load with that reason, shown by `warren-plugins list`.
//!
//! A plugin's name is its shipped name or its file's stem (`x-random.wasm` → `x-random`); the
//! exchange type it provides is whatever its `describe()` says. Exchanges of a type whose plugin
//! is disabled (with `--force`) or missing at start stay declared with their bindings but route
//! nothing, and refuse new bindings, until the plugin is enabled again; then their bindings are
//! replayed into the plugin, and a binding the plugin refuses makes `enable` fail, naming it.

use super::catalog::{Origin, catalog, canonical, read_enabled, resolve, write_enabled};
use super::http::WasmHttpHandler;
use super::{PluginEngine, PluginKind, PluginStats, WasmAuthBackend, WasmExchangeType};
use crate::auth_backend::AuthBackend;
use crate::config::HttpListenerConfig;
use crate::http::HttpListener;
use crate::admin::plugins::{PluginControl, PluginDetails, PluginEntry, PluginState, SetError, SetReport};
use crate::broker::Broker;
use crate::config::Config;
use crate::exchange_type::{ExchangeTypeFactory, Unavailable};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use tracing::{error, info};

pub use super::catalog::ENABLED_FILE;

mod listing;
mod reload;

/// A plugin that is loaded and serving.
struct Loaded {
    hash: String,
    kind: PluginKind,
    origin: Origin,
    serving: Serving,
}

/// What a loaded plugin provides, by kind.
enum Serving {
    /// An exchange type, registered with the broker.
    Exchange(Arc<WasmExchangeType>),
    /// An HTTP handler and, while enabled, its listener (`None` when only probed for `list`).
    Http { handler: Arc<WasmHttpHandler>, listener: Option<HttpListener> },
}

impl Loaded {
    fn exchange(&self) -> Option<&Arc<WasmExchangeType>> {
        match &self.serving {
            Serving::Exchange(f) => Some(f),
            Serving::Http { .. } => None,
        }
    }
    fn description(&self) -> String {
        match &self.serving {
            Serving::Exchange(f) => f.info().description.clone(),
            Serving::Http { handler, listener } => match listener {
                Some(l) => format!("{} (http://{})", handler.description(), l.addr),
                None => handler.description().to_string(),
            },
        }
    }
    fn stats(&self) -> &Arc<PluginStats> {
        match &self.serving {
            Serving::Exchange(f) => f.stats(),
            Serving::Http { handler, .. } => handler.stats(),
        }
    }
}

pub struct PluginManager {
    engine: PluginEngine,
    dir: PathBuf,
    enabled_file: PathBuf,
    settings: HashMap<String, HashMap<String, String>>,
    builtins: Vec<Arc<WasmExchangeType>>,
    loaded: Mutex<HashMap<String, Loaded>>,
    /// Failure/rebuild/reload counters per plugin name, kept across reloads and disable/enable.
    stats: Mutex<HashMap<String, Arc<PluginStats>>>,
    /// Auth-backend plugins named in `[auth] backends`, loaded at start (see `auth_backends`).
    auth: Mutex<HashMap<String, Arc<WasmAuthBackend>>>,
    /// Hash of the file each auth-backend plugin of the plugins folder was loaded from.
    auth_hashes: Mutex<HashMap<String, String>>,
    /// Why the latest version of a running plugin's file was refused (the old one serves on).
    rejected: Mutex<HashMap<String, String>>,
    broker: Mutex<Weak<Broker>>,
    /// Keeps the folder watcher alive.
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// Where HTTP-serving plugins listen, by plugin name (`[management]`, `[prometheus]`);
    /// other http-handler plugins take `bind`/`port` from their `[plugins.settings.NAME]`.
    http_listeners: HashMap<String, HttpListenerConfig>,
    /// The runtime HTTP listeners are served on (captured at start).
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    /// The ports of the HTTP listeners `close_http_listeners` closed, by plugin: `start_app`
    /// binds the same ones again (matters for a configured port 0).
    closed_ports: Mutex<HashMap<String, u16>>,
}

fn hash_of(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl PluginManager {
    /// The plugin layer of a broker with `config`: its engine (limits from `[plugins]`, compiled
    /// components cached in `<data-dir>/plugin-cache`), folder and enabled file.
    pub fn from_config(config: &Config) -> Result<PluginManager, super::LoadError> {
        let data_dir = &config.storage.data_dir;
        let engine = PluginEngine::from_config(config, Some(data_dir.join("plugin-cache")))?;
        let mut m = PluginManager::new(engine, config.plugins_dir(), data_dir, config.plugins.settings.clone())?;
        m.http_listeners.insert("warren_management".into(), config.management.clone());
        m.http_listeners.insert("warren_prometheus".into(), config.prometheus.clone());
        Ok(m)
    }

    pub fn new(
        engine: PluginEngine,
        dir: PathBuf,
        data_dir: &Path,
        settings: HashMap<String, HashMap<String, String>>,
    ) -> Result<PluginManager, super::LoadError> {
        let builtins = engine.load_builtins()?.into_iter().map(Arc::new).collect();
        Ok(PluginManager {
            engine,
            dir,
            enabled_file: data_dir.join(ENABLED_FILE),
            settings,
            builtins,
            loaded: Mutex::default(),
            stats: Mutex::default(),
            auth: Mutex::default(),
            auth_hashes: Mutex::default(),
            rejected: Mutex::default(),
            broker: Mutex::new(Weak::new()),
            watcher: Mutex::default(),
            http_listeners: HashMap::new(),
            runtime: Mutex::default(),
            closed_ports: Mutex::default(),
        })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn keep_watcher(&self, w: notify::RecommendedWatcher) {
        *self.watcher.lock() = Some(w);
    }

    /// The built-in types (direct, fanout, topic, headers): always enabled.
    pub fn builtin_types(&self) -> Vec<Arc<dyn ExchangeTypeFactory>> {
        self.builtins.iter().map(|b| b.clone() as Arc<dyn ExchangeTypeFactory>).collect()
    }

    /// Loads the plugins named in `[auth] backends` (every name but `internal`): shipped plugins
    /// (by Warren's or RabbitMQ's name) and `.wasm` files of the plugins folder, which must be
    /// auth-backend components whose `init` accepts their configuration. They serve as long as the
    /// broker runs (the config file enables them, as RabbitMQ's `auth_backends`). The map is keyed
    /// by the names as the config gives them.
    pub fn auth_backends(&self, names: &[String], internal: &[&str]) -> Result<HashMap<String, Arc<dyn AuthBackend>>, String> {
        let mut out: HashMap<String, Arc<dyn AuthBackend>> = HashMap::new();
        for n in names.iter().filter(|n| !internal.contains(&n.as_str())) {
            let Some((name, origin)) = resolve(&self.dir, n) else {
                let mut known: Vec<String> = vec!["internal".into()];
                known.extend(catalog(&self.dir).into_iter().filter_map(|(name, o)| {
                    let o = o.ok()?;
                    let bytes = o.bytes().ok()?;
                    (self.engine.kind_of(&name, &bytes).ok()? == PluginKind::AuthBackend).then_some(name)
                }));
                return Err(format!("[auth] backends: unknown backend '{n}' (available: {})", known.join(", ")));
            };
            if let Some(b) = self.auth.lock().get(&name) {
                out.insert(n.clone(), b.clone());
                continue;
            }
            let place = origin.place();
            let bytes = origin.bytes().map_err(|e| format!("[auth] backends: {n}: {e}"))?;
            let kind = self.engine.kind_of(&name, &bytes).map_err(|e| format!("[auth] backends: {n} ({place}): {}", e.message))?;
            if kind != PluginKind::AuthBackend {
                return Err(format!("[auth] backends: {n} ({place}) is a {kind} plugin, not an auth-backend"));
            }
            let settings = self.settings.get(&name).cloned().unwrap_or_default();
            let stats = self.stats.lock().entry(name.clone()).or_default().clone();
            let b = self
                .engine
                .load_auth_backend(&name, &bytes, settings, stats)
                .map_err(|e| format!("[auth] backends: {n} ({place}): {}", e.message))?;
            info!(plugin = %name, kind = %kind, "auth backend plugin loaded");
            let b = Arc::new(b);
            self.auth_hashes.lock().insert(name.clone(), hash_of(&bytes));
            self.auth.lock().insert(name, b.clone());
            out.insert(n.clone(), b);
        }
        Ok(out)
    }

    /// The running auth-backend plugin called `name` (Warren's name), if `[auth] backends` loaded it.
    pub fn auth_plugin(&self, name: &str) -> Option<Arc<WasmAuthBackend>> {
        self.auth.lock().get(name).cloned()
    }

    /// Loads plugin `name` from `origin`: its kind first, then the world's loader.
    fn load(&self, name: &str, origin: &Origin) -> Result<Loaded, String> {
        let place = origin.place();
        let bytes = origin.bytes()?;
        let kind = self.engine.kind_of(name, &bytes).map_err(|e| format!("{place}: {}", e.message))?;
        if kind == PluginKind::AuthBackend {
            return Err(format!(
                "{place}: an auth-backend plugin: name it in [auth] backends of the config file (it is loaded at start)"
            ));
        }
        let settings = self.settings.get(name).cloned().unwrap_or_default();
        let stats = self.stats.lock().entry(name.to_string()).or_default().clone();
        let serving = match kind {
            PluginKind::ExchangeType => Serving::Exchange(Arc::new(
                self.engine
                    .load_exchange_type_counted(name, &bytes, settings, stats)
                    .map_err(|e| format!("{place}: {}", e.message))?,
            )),
            PluginKind::HttpHandler => {
                let broker = self.broker.lock().clone();
                let h = self.engine.load_http_handler(name, &bytes, settings, stats, broker).map_err(|e| format!("{place}: {}", e.message))?;
                Serving::Http { handler: Arc::new(h), listener: None }
            }
            other => return Err(format!("{place}: a {other} plugin; this broker does not run {other} plugins yet")),
        };
        Ok(Loaded { hash: hash_of(&bytes), kind, origin: origin.clone(), serving })
    }

    /// Where http-handler plugin `name` listens: `[management]`/`[prometheus]` for the shipped
    /// ones, else `bind` (default 127.0.0.1) and `port` of its `[plugins.settings.NAME]`.
    fn http_listener_config(&self, name: &str) -> Result<HttpListenerConfig, String> {
        if let Some(c) = self.http_listeners.get(name) {
            return Ok(c.clone());
        }
        let s = self.settings.get(name);
        let port = s.and_then(|s| s.get("port")).ok_or_else(|| format!("an http-handler plugin needs a port: set [plugins.settings.{name}] port"))?;
        let port = port.parse::<u16>().map_err(|_| format!("[plugins.settings.{name}] port = {port:?} is not a port number"))?;
        let bind = s.and_then(|s| s.get("bind")).cloned().unwrap_or_else(|| "127.0.0.1".into());
        Ok(HttpListenerConfig { bind, port })
    }

    /// Opens the HTTP listener of a just-loaded http-handler plugin.
    fn open_listener(&self, broker: &Arc<Broker>, name: &str, l: &mut Loaded) -> Result<(), String> {
        let Serving::Http { handler, listener } = &mut l.serving else { return Ok(()) };
        if !broker.app_running.load(std::sync::atomic::Ordering::Acquire) {
            // Enabled while the app is stopped (`stop_app`): `start_app` opens it.
            return Ok(());
        }
        let mut c = self.http_listener_config(name)?;
        if c.port == 0
            && let Some(p) = self.closed_ports.lock().get(name)
        {
            c.port = *p;
        }
        let rt = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.lock().clone())
            .ok_or_else(|| "no runtime to serve HTTP on".to_string())?;
        let h: Arc<dyn crate::http::HttpHandler> = handler.clone();
        *listener = Some(HttpListener::open(&rt, &c.bind, c.port, Arc::downgrade(broker), h).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// Closes every HTTP listener (`stop_app`, broker shutdown); the plugins stay enabled in the
    /// file.
    pub fn close_http_listeners(&self) {
        for (name, l) in self.loaded.lock().iter_mut() {
            if let Serving::Http { listener, .. } = &mut l.serving
                && let Some(l) = listener.take()
            {
                self.closed_ports.lock().insert(name.clone(), l.addr.port());
            }
        }
    }

    /// Opens again the HTTP listeners of the enabled http-handler plugins (`start_app` after
    /// `stop_app`), on the ports of their configuration; the reasons of those that could not be
    /// opened (the others are open).
    pub fn open_http_listeners(&self) -> Vec<String> {
        let Some(broker) = self.broker.lock().upgrade() else { return vec!["the broker is stopping".into()] };
        let mut errors = Vec::new();
        for (name, l) in self.loaded.lock().iter_mut() {
            if matches!(l.serving, Serving::Http { listener: None, .. })
                && let Err(e) = self.open_listener(&broker, name, l)
            {
                error!(plugin = %name, "cannot open the HTTP listener: {e}");
                errors.push(format!("plugin {name}: {e}"));
            }
        }
        errors
    }

    /// The address the HTTP listener of enabled plugin `name` is bound to.
    pub fn http_addr(&self, name: &str) -> Option<std::net::SocketAddr> {
        match &self.loaded.lock().get(name)?.serving {
            Serving::Http { listener: Some(l), .. } => Some(l.addr),
            _ => None,
        }
    }

    /// Registers the built-in types and loads the plugins named in the enabled file (at start,
    /// before definitions are recovered). Failures are logged (and shown by `list`); the broker
    /// starts anyway and the enabled file is left as it is.
    pub fn start(self: &Arc<Self>, broker: &Arc<Broker>) {
        *self.broker.lock() = Arc::downgrade(broker);
        *self.runtime.lock() = tokio::runtime::Handle::try_current().ok();
        for t in self.builtin_types() {
            broker.register_type(t);
        }
        let wanted = match read_enabled(&self.enabled_file) {
            Ok(w) => w,
            Err(e) => {
                error!("{e}; starting without plugins");
                Vec::new()
            }
        };
        if let Err(e) = self.change(broker, &wanted, true, false) {
            for e in e.errors {
                error!("enabling plugins at start: {e}");
            }
        }
        self.watch();
    }

    /// Makes `wanted` (names or aliases) the enabled set on the running broker and writes the
    /// enabled file. Without `force`, disabling a plugin whose exchange type is used by
    /// exchanges is refused (naming them).
    pub fn apply(&self, broker: &Arc<Broker>, wanted: &[String], force: bool) -> Result<SetReport, SetError> {
        self.change(broker, wanted, force, true)
    }

    fn change(&self, broker: &Arc<Broker>, wanted: &[String], force: bool, write: bool) -> Result<SetReport, SetError> {
        let mut origins: HashMap<String, Origin> = HashMap::new();
        let mut missing = Vec::new();
        for n in wanted {
            if super::builtin::is_builtin(n) {
                continue;
            }
            match resolve(&self.dir, n) {
                Some((name, origin)) => {
                    origins.insert(name, origin);
                }
                None => missing.push(n.clone()),
            }
        }
        if !missing.is_empty() && write {
            return Err(SetError::refused(format!(
                "{{:plugins_not_found, [{}]}} (no such plugin inside the binary or .wasm in {})",
                missing.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", "),
                self.dir.display()
            )));
        }
        let mut errors: Vec<String> = missing.iter().map(|n| format!("plugin {n}: not found in {}", self.dir.display())).collect();
        let mut loaded = self.loaded.lock();
        // Refuse before changing anything.
        let to_disable: Vec<String> = loaded.keys().filter(|n| !origins.contains_key(*n)).cloned().collect();
        if !force {
            let mut users = Vec::new();
            for n in &to_disable {
                let Some(f) = loaded[n].exchange() else { continue };
                let ty = &f.info().name;
                users.extend(exchanges_of_type(broker, ty).into_iter().map(|(v, x)| format!("'{v}':'{x}'")));
            }
            if !users.is_empty() {
                return Err(SetError::refused(format!(
                    "plugin(s) {} in use by exchanges {}; use --force to disable anyway (those exchanges then route nothing until re-enabled)",
                    to_disable.join(", "),
                    users.join(", ")
                )));
            }
        }
        let mut enabled = Vec::new();
        // Auth backends named in [auth] backends are running already: enabling them is recorded
        // (as rabbitmq-plugins enable rabbitmq_auth_backend_oauth2 is), nothing to load.
        let auth_running: BTreeSet<String> = self.auth.lock().keys().filter(|n| origins.contains_key(*n)).cloned().collect();
        let mut to_enable: Vec<(&String, &Origin)> =
            origins.iter().filter(|(n, _)| !loaded.contains_key(*n) && !auth_running.contains(*n)).collect();
        to_enable.sort_by_key(|(n, _)| n.as_str());
        for (n, origin) in to_enable {
            match self.load(n, origin) {
                Ok(mut l) => {
                    if let Some(f) = l.exchange() {
                        let ty = f.info().name.clone();
                        if broker.exchange_type(&ty).is_some() {
                            errors.push(format!("plugin {n}: exchange type '{ty}' is already provided by another plugin"));
                            continue;
                        }
                        errors.extend(install(broker, f).into_iter().map(|e| format!("plugin {n}: {e}")));
                        info!(plugin = %n, kind = %l.kind, exchange_type = %ty, "plugin enabled");
                    } else {
                        if let Err(e) = self.open_listener(broker, n, &mut l) {
                            error!(plugin = %n, "cannot enable plugin: {e}");
                            errors.push(format!("plugin {n}: {e}"));
                            continue;
                        }
                        info!(plugin = %n, kind = %l.kind, "plugin enabled");
                    }
                    enabled.push(n.clone());
                    loaded.insert(n.clone(), l);
                }
                Err(e) => {
                    error!(plugin = %n, "cannot enable plugin: {e}");
                    errors.push(format!("plugin {n}: {e}"));
                }
            }
        }
        let mut disabled = Vec::new();
        for n in &to_disable {
            let l = loaded.remove(n).expect("present");
            if let Some(f) = l.exchange() {
                let info = f.info().clone();
                broker.unregister_type(&info.name);
                let stand_in: Arc<dyn ExchangeTypeFactory> = Arc::new(Unavailable(info.clone()));
                for x in all_exchanges_of_type(broker, &info.name) {
                    let _ = x.swap_type(stand_in.clone());
                }
            }
            // An HTTP listener closes as `l` is dropped.
            drop(l);
            self.rejected.lock().remove(n);
            info!(plugin = %n, "plugin disabled");
            disabled.push(n.clone());
        }
        let names: Vec<String> = loaded.keys().cloned().chain(auth_running).collect::<BTreeSet<_>>().into_iter().collect();
        drop(loaded);
        let report = SetReport { enabled, disabled };
        if write && let Err(e) = write_enabled(&self.enabled_file, &names) {
            errors.push(format!("cannot write {}: {e}", self.enabled_file.display()));
        }
        if !errors.is_empty() {
            return Err(SetError { report, errors });
        }
        Ok(report)
    }
}

/// Registers a loaded type with the broker and moves its exchanges (e.g. ones recovered while the
/// plugin was unavailable) onto it, their bindings replayed. Returns, for each exchange that
/// could not move (a binding the plugin refuses), why: that exchange keeps routing nothing.
fn install(broker: &Arc<Broker>, factory: &Arc<WasmExchangeType>) -> Vec<String> {
    let f: Arc<dyn ExchangeTypeFactory> = factory.clone();
    broker.register_type(f.clone());
    let mut failed = Vec::new();
    for x in all_exchanges_of_type(broker, &f.info().name) {
        if let Err(e) = x.swap_type(f.clone()) {
            error!(exchange = %x.name, vhost = %x.vhost, "cannot move exchange onto plugin: {}", e.0);
            failed.push(format!("exchange '{}' in vhost '{}' routes nothing: {}", x.name, x.vhost, e.0));
        }
    }
    failed
}

fn all_exchanges_of_type(broker: &Broker, ty: &str) -> Vec<Arc<crate::broker::exchange::Exchange>> {
    broker.vhosts().iter().flat_map(|v| v.exchanges.read().values().filter(|x| x.kind == ty).cloned().collect::<Vec<_>>()).collect()
}

fn exchanges_of_type(broker: &Broker, ty: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = all_exchanges_of_type(broker, ty).iter().map(|x| (x.vhost.clone(), x.name.clone())).collect();
    v.sort();
    v
}

impl PluginControl for PluginManager {
    fn list(&self, verbose: bool) -> Vec<PluginEntry> {
        // Not in the match: the guard would be held while plugins load (and lock it again).
        let broker = self.broker.lock().upgrade();
        match broker {
            Some(b) => self.entries(&b, verbose),
            None => Vec::new(),
        }
    }

    fn set(&self, enabled: &[String], force: bool) -> Result<SetReport, SetError> {
        let Some(broker) = self.broker.lock().upgrade() else {
            return Err(SetError::refused("the broker is stopping"));
        };
        self.apply(&broker, enabled, force)
    }
}
