//! Plugin management, as `rabbitmq-plugins` does it: which plugins exist (the `.wasm` files of the
//! plugins folder, plus the built-ins), which are enabled (the `enabled_plugins` file in the data
//! directory, in RabbitMQ's format `[name1,'name-2'].`), applying a new enabled set to the running
//! broker, and hot reload when an enabled plugin's file changes.
//!
//! A plugin's name is its file's stem (`x-random.wasm` → `x-random`); the exchange type it provides
//! is whatever its `describe()` says. Exchanges of a type whose plugin is disabled (with `--force`)
//! or missing at start stay declared with their bindings but route nothing until the plugin is
//! enabled again; then their bindings are replayed into the plugin.

use super::{PluginEngine, PluginStats, WasmExchangeType};
use crate::admin::plugins::{PluginControl, PluginDetails, PluginEntry, PluginState, SetError, SetReport};
use crate::broker::Broker;
use crate::config::Config;
use crate::exchange_type::{ExchangeTypeFactory, Unavailable};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tracing::{error, info, warn};

/// File name of the enabled set inside the data directory.
pub const ENABLED_FILE: &str = "enabled_plugins";

/// A plugin that is loaded and serving.
struct Loaded {
    hash: String,
    factory: Arc<WasmExchangeType>,
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
    broker: Mutex<Weak<Broker>>,
    /// Keeps the folder watcher alive.
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

/// Reads an `enabled_plugins` file: `[a,'b-c'].` (missing file: nothing enabled).
pub fn read_enabled(path: &Path) -> Result<Vec<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let t = text.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix('.'))
        .and_then(|r| r.trim_end().strip_suffix(']'))
        .ok_or_else(|| format!("{} is not a plugin list like [name1,name2].", path.display()))?;
    Ok(inner
        .split(',')
        .map(|n| n.trim().trim_matches('\'').to_string())
        .filter(|n| !n.is_empty())
        .collect())
}

/// Writes an `enabled_plugins` file (temp file + rename).
pub fn write_enabled(path: &Path, names: &[String]) -> std::io::Result<()> {
    let atom = |n: &String| {
        let plain = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain { n.clone() } else { format!("'{n}'") }
    };
    let body = format!("[{}].\n", names.iter().map(atom).collect::<Vec<_>>().join(","));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, path)
}

/// The `.wasm` files of the plugins folder: name → path.
pub fn available(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    out.sort();
    out
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
        PluginManager::new(engine, config.plugins_dir(), data_dir, config.plugins.settings.clone())
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
            broker: Mutex::new(Weak::new()),
            watcher: Mutex::default(),
        })
    }

    /// The built-in types (direct, fanout, topic, headers): always enabled.
    pub fn builtin_types(&self) -> Vec<Arc<dyn ExchangeTypeFactory>> {
        self.builtins.iter().map(|b| b.clone() as Arc<dyn ExchangeTypeFactory>).collect()
    }

    fn is_builtin(&self, name: &str) -> bool {
        self.builtins.iter().any(|b| b.plugin() == name)
    }

    fn load_file(&self, name: &str, path: &Path) -> Result<Loaded, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let settings = self.settings.get(name).cloned().unwrap_or_default();
        let stats = self.stats.lock().entry(name.to_string()).or_default().clone();
        let t = self
            .engine
            .load_exchange_type_counted(name, &bytes, settings, stats)
            .map_err(|e| format!("{}: {}", path.display(), e.message))?;
        Ok(Loaded { hash: hash_of(&bytes), factory: Arc::new(t) })
    }

    /// Registers the built-in types and loads the plugins named in the enabled file (at start,
    /// before definitions are recovered). Failures are logged; the broker starts anyway.
    pub fn start(self: &Arc<Self>, broker: &Arc<Broker>) {
        *self.broker.lock() = Arc::downgrade(broker);
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
        if let Err(e) = self.apply(broker, &wanted, true) {
            error!("enabling plugins at start: {}", e.errors.join("; "));
        }
        self.watch();
    }

    /// Makes `wanted` the enabled set on the running broker. Without `force`, disabling a plugin
    /// whose exchange type is used by exchanges is refused (naming them). Returns a report.
    pub fn apply(&self, broker: &Arc<Broker>, wanted: &[String], force: bool) -> Result<SetReport, SetError> {
        let files: HashMap<String, PathBuf> = available(&self.dir).into_iter().collect();
        let wanted: BTreeSet<String> = wanted.iter().filter(|n| !self.is_builtin(n)).cloned().collect();
        let missing: Vec<&String> = wanted.iter().filter(|n| !files.contains_key(*n)).collect();
        if !missing.is_empty() {
            return Err(SetError::refused(format!(
                "{{:plugins_not_found, [{}]}} (no such .wasm in {})",
                missing.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", "),
                self.dir.display()
            )));
        }
        let mut loaded = self.loaded.lock();
        // Refuse before changing anything.
        let to_disable: Vec<String> = loaded.keys().filter(|n| !wanted.contains(*n)).cloned().collect();
        if !force {
            let mut users = Vec::new();
            for n in &to_disable {
                let ty = &loaded[n].factory.info().name;
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
        let mut errors = Vec::new();
        let to_enable: Vec<&String> = wanted.iter().filter(|n| !loaded.contains_key(*n)).collect();
        for n in to_enable {
            match self.load_file(n, &files[n]) {
                Ok(l) => {
                    let ty = l.factory.info().name.clone();
                    if broker.exchange_type(&ty).is_some() {
                        errors.push(format!("plugin {n}: exchange type '{ty}' is already provided by another plugin"));
                        continue;
                    }
                    install(broker, &l.factory);
                    info!(plugin = %n, exchange_type = %ty, "plugin enabled");
                    enabled.push(n.clone());
                    loaded.insert(n.clone(), l);
                }
                Err(e) => errors.push(e),
            }
        }
        let mut disabled = Vec::new();
        for n in &to_disable {
            let l = loaded.remove(n).expect("present");
            let info = l.factory.info().clone();
            broker.unregister_type(&info.name);
            let stand_in: Arc<dyn ExchangeTypeFactory> = Arc::new(Unavailable(info.clone()));
            for x in all_exchanges_of_type(broker, &info.name) {
                let _ = x.swap_type(stand_in.clone());
            }
            info!(plugin = %n, "plugin disabled");
            disabled.push(n.clone());
        }
        let names: Vec<String> = loaded.keys().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        drop(loaded);
        let report = SetReport { enabled, disabled };
        if let Err(e) = write_enabled(&self.enabled_file, &names) {
            errors.push(format!("cannot write {}: {e}", self.enabled_file.display()));
        }
        if !errors.is_empty() {
            return Err(SetError { report, errors });
        }
        Ok(report)
    }

    /// Reloads enabled plugin `name` from its file if its content changed. The new version must
    /// load, pass its world's type check and describe the same exchange type; then every exchange
    /// of that type gets a new instance with its bindings replayed. Otherwise the old one stays.
    pub fn reload(&self, name: &str) {
        let Some(broker) = self.broker.lock().upgrade() else { return };
        let path = self.dir.join(format!("{name}.wasm"));
        let old_hash = match self.loaded.lock().get(name) {
            Some(l) => l.hash.clone(),
            None => return,
        };
        let Ok(bytes) = std::fs::read(&path) else { return };
        if hash_of(&bytes) == old_hash {
            return;
        }
        let started = std::time::Instant::now();
        let new = match self.load_file(name, &path) {
            Ok(l) => l,
            Err(e) => {
                error!(plugin = %name, file = %path.display(), "new version rejected, the old one keeps serving: {e}");
                return;
            }
        };
        let mut loaded = self.loaded.lock();
        let Some(old) = loaded.get(name) else { return };
        let ty = old.factory.info().name.clone();
        if new.factory.info().name != ty {
            error!(plugin = %name, file = %path.display(), "new version rejected, the old one keeps serving: it provides exchange type '{}' instead of '{ty}'", new.factory.info().name);
            return;
        }
        install(&broker, &new.factory);
        let mut moved = 0;
        for x in all_exchanges_of_type(&broker, &ty) {
            match x.swap_type(new.factory.clone()) {
                Ok(()) => moved += 1,
                Err(e) => error!(plugin = %name, exchange = %x.name, "exchange kept the old version: {}", e.0),
            }
        }
        new.factory.stats().reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        info!(plugin = %name, exchanges = moved, "plugin reloaded in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        loaded.insert(name.to_string(), new);
    }

    /// Watches the plugins folder; changes to enabled plugins' files are reloaded after 250 ms of
    /// quiet (writers should write a temp file and rename it).
    fn watch(self: &Arc<Self>) {
        use notify::{EventKind, RecursiveMode, Watcher};
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = match notify::recommended_watcher(tx) {
            Ok(w) => w,
            Err(e) => return warn!("cannot watch {}: {e}; plugins will not hot-reload", self.dir.display()),
        };
        if let Err(e) = watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            return warn!("cannot watch {}: {e}; plugins will not hot-reload", self.dir.display());
        }
        *self.watcher.lock() = Some(watcher);
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || {
                // Names of .wasm files written, created or renamed into place by an event. Other
                // events (reads of the folder or of files, e.g. by `warren-plugins list`) are
                // ignored, and must not extend the quiet period either.
                let names = |ev: notify::Event, into: &mut BTreeSet<String>| -> bool {
                    let relevant = matches!(
                        ev.kind,
                        EventKind::Create(_)
                            | EventKind::Modify(_)
                            | EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write))
                    );
                    let mut any = false;
                    if relevant {
                        for p in ev.paths {
                            if p.extension().is_some_and(|e| e == "wasm")
                                && let Some(n) = p.file_stem().and_then(|s| s.to_str())
                            {
                                into.insert(n.to_string());
                                any = true;
                            }
                        }
                    }
                    any
                };
                let quiet = Duration::from_millis(250);
                loop {
                    let mut touched = BTreeSet::new();
                    // Wait for a relevant event.
                    loop {
                        match rx.recv() {
                            Ok(Ok(ev)) => {
                                if names(ev, &mut touched) {
                                    break;
                                }
                            }
                            Ok(Err(_)) => {}
                            Err(_) => return,
                        }
                    }
                    // Debounce: 250 ms without relevant events, at most 1 s in all.
                    let hard = std::time::Instant::now() + Duration::from_secs(1);
                    let mut soft = std::time::Instant::now() + quiet;
                    loop {
                        let now = std::time::Instant::now();
                        let until = soft.min(hard);
                        if now >= until {
                            break;
                        }
                        match rx.recv_timeout(until - now) {
                            Ok(Ok(ev)) => {
                                if names(ev, &mut touched) {
                                    soft = std::time::Instant::now() + quiet;
                                }
                            }
                            Ok(Err(_)) => {}
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let Some(m) = me.upgrade() else { return };
                    for n in touched {
                        m.reload(&n);
                    }
                }
            })
            .expect("spawn plugin watcher");
    }

    /// Every plugin for `warren-plugins list`: the built-ins, then the plugins folder; with
    /// `verbose`, for running plugins, the exchanges of its type and its counters (failures by
    /// cause, instance rebuilds, reloads).
    fn entries(&self, broker: &Arc<Broker>, verbose: bool) -> Vec<PluginEntry> {
        let enabled: BTreeSet<String> = read_enabled(&self.enabled_file).unwrap_or_default().into_iter().collect();
        let loaded = self.loaded.lock();
        let details = |t: &WasmExchangeType| {
            use std::sync::atomic::Ordering::Relaxed;
            let st = t.stats();
            PluginDetails {
                exchanges: exchanges_of_type(broker, &t.info().name).into_iter().map(|(v, x)| format!("'{v}':'{x}'")).collect(),
                traps: st.traps.load(Relaxed),
                timeouts: st.timeouts.load(Relaxed),
                out_of_memory: st.out_of_memory.load(Relaxed),
                rebuilds: st.rebuilds.load(Relaxed),
                reloads: st.reloads.load(Relaxed),
            }
        };
        let mut out = Vec::new();
        for b in &self.builtins {
            out.push(PluginEntry {
                name: b.plugin().to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                kind: "exchange-type".into(),
                description: format!("{} (built-in)", b.info().description),
                aliases: Vec::new(),
                error: None,
                state: PluginState::BuiltIn,
                details: verbose.then(|| details(b)),
            });
        }
        for (name, path) in available(&self.dir) {
            let entry = match loaded.get(&name) {
                Some(l) => PluginEntry {
                    name: name.clone(),
                    version: l.hash.clone(),
                    kind: "exchange-type".into(),
                    description: l.factory.info().description.clone(),
                    aliases: Vec::new(),
                    error: None,
                    state: PluginState::Running,
                    details: verbose.then(|| details(&l.factory)),
                },
                None => PluginEntry {
                    version: std::fs::read(&path).map(|b| hash_of(&b)).unwrap_or_default(),
                    kind: "exchange-type".into(),
                    description: String::new(),
                    aliases: Vec::new(),
                    error: None,
                    state: if enabled.contains(&name) { PluginState::EnabledNotRunning } else { PluginState::Available },
                    details: None,
                    name,
                },
            };
            out.push(entry);
        }
        out
    }
}

/// Registers a loaded type with the broker and moves its exchanges (e.g. ones recovered while the
/// plugin was unavailable) onto it.
fn install(broker: &Arc<Broker>, factory: &Arc<WasmExchangeType>) {
    let f: Arc<dyn ExchangeTypeFactory> = factory.clone();
    broker.register_type(f.clone());
    for x in all_exchanges_of_type(broker, &f.info().name) {
        if let Err(e) = x.swap_type(f.clone()) {
            error!(exchange = %x.name, "cannot move exchange onto plugin: {}", e.0);
        }
    }
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
        match self.broker.lock().upgrade() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_file_round_trips_in_rabbitmq_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(ENABLED_FILE);
        assert_eq!(read_enabled(&p).unwrap(), Vec::<String>::new());
        write_enabled(&p, &["x-random".into(), "warren_management".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "['x-random',warren_management].\n");
        assert_eq!(read_enabled(&p).unwrap(), vec!["x-random", "warren_management"]);
        std::fs::write(&p, "[].\n").unwrap();
        assert!(read_enabled(&p).unwrap().is_empty());
        std::fs::write(&p, "garbage").unwrap();
        assert!(read_enabled(&p).is_err());
    }
}
