//! The shared wasmtime engine, linker, host imports and compiled-code cache.

use super::bindings::{ExchangeType, warren};
use super::{LoadError, error_text};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Result};

/// Sandbox limits applied to every plugin instance.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Cap on each linear memory of an instance (default 64 MiB).
    pub memory_bytes: usize,
    /// CPU-time limit of one guest call (default 10 ms): the CPU time of the calling thread,
    /// so a call that is descheduled (CPU contention) is not charged for the time it waits.
    /// Checked by epoch interruption with a granularity of `tick`: a call is stopped once it
    /// has used between `call_timeout` and `call_timeout + 3 * tick` of CPU time, or after
    /// [`WALL_FACTOR`] × `call_timeout` of wall-clock time, whichever comes first.
    pub call_timeout: Duration,
    /// Period of the epoch ticker thread while a guest call runs (default 2 ms; it sleeps while
    /// none does).
    pub tick: Duration,
    /// Entries of the per-exchange route cache, for deterministic types that read at most the
    /// routing key (default 10,000; the cache is emptied when full or when a binding changes).
    pub route_cache_entries: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_millis(10),
            tick: Duration::from_millis(2),
            route_cache_entries: 10_000,
        }
    }
}

/// A call is stopped after this many times `call_timeout` of wall-clock time even if it used
/// less CPU time than that (e.g. blocked in a host import, or never scheduled).
pub const WALL_FACTOR: u32 = 10;

/// CPU time consumed so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`). A system call
/// (about 0.3 µs on bare metal, several µs in some VMs): only taken once a call has run for
/// an epoch tick, never per call.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux and the BSDs.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Time accounting of the current guest call of one store (reset by every call).
#[derive(Debug, Default)]
pub(crate) struct CallClock {
    /// Thread CPU time and wall clock when the first epoch deadline of the call was reached
    /// (at most one tick after the call started): CPU time is counted from there.
    mark: Option<(Duration, Instant)>,
    /// Set when the deadline callback stopped the call: why.
    pub(crate) stopped: Option<Stopped>,
}

/// Why the deadline callback stopped a call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stopped {
    /// Used `call_timeout` of CPU time (the time used).
    Cpu(Duration),
    /// Ran `WALL_FACTOR * call_timeout` of wall-clock time (wall time, CPU time used).
    Wall(Duration, Duration),
}

impl CallClock {
    /// Before each call (and instantiation): nothing measured yet.
    pub(crate) fn reset(&mut self) {
        self.mark = None;
        self.stopped = None;
    }
}

/// The epoch-deadline callback of every store: decides, each time the deadline is reached,
/// whether the call has used up its CPU time (or its wall-clock allowance) or may go on, and
/// for how many ticks. The first deadline comes one tick after the call starts (see
/// [`FIRST_DEADLINE`]); only calls that run that long ever get here.
pub(crate) fn on_deadline(clock: &mut CallClock, limits: &PluginLimits) -> Result<wasmtime::UpdateDeadline> {
    let tick = limits.effective_tick();
    let ticks = |d: Duration| (d.as_nanos().div_ceil(tick.as_nanos()) as u64).max(1);
    let cpu = thread_cpu_time();
    let wall_cap = limits.call_timeout * WALL_FACTOR;
    let Some((cpu0, wall0)) = clock.mark else {
        clock.mark = Some((cpu, Instant::now()));
        return Ok(wasmtime::UpdateDeadline::Continue(ticks(limits.call_timeout)));
    };
    let used = cpu.saturating_sub(cpu0);
    let wall = wall0.elapsed();
    if used >= limits.call_timeout {
        clock.stopped = Some(Stopped::Cpu(used));
        return Err(wasmtime::Trap::Interrupt.into());
    }
    if wall >= wall_cap {
        clock.stopped = Some(Stopped::Wall(wall, used));
        return Err(wasmtime::Trap::Interrupt.into());
    }
    // CPU time cannot advance faster than wall time: nothing can be over before this.
    let next = (limits.call_timeout - used).min(wall_cap - wall);
    Ok(wasmtime::UpdateDeadline::Continue(ticks(next)))
}

/// Why a guest call failed, for logs and errors, with the failure counted in `stats` by cause:
/// the memory cap, the time limit, or any other trap.
pub(crate) fn failure_text(
    e: &wasmtime::Error,
    state: &HostState,
    limits: &PluginLimits,
    memory_bytes: usize,
    stats: &super::PluginStats,
) -> String {
    use wasmtime::Trap;
    let text = error_text(e);
    let limit = limits.call_timeout.as_millis();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let interrupted = matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt));
    let cause = if state.limiter.hit {
        &stats.out_of_memory
    } else if state.clock.stopped.is_some() || interrupted {
        &stats.timeouts
    } else {
        &stats.traps
    };
    cause.fetch_add(1, Ordering::Relaxed);
    if state.limiter.hit {
        format!("memory limit of {} MiB reached ({text})", memory_bytes >> 20)
    } else if let Some(stopped) = state.clock.stopped {
        match stopped {
            Stopped::Cpu(used) => format!("time limit of {limit} ms exceeded (CPU time {:.1} ms; {text})", ms(used)),
            Stopped::Wall(wall, used) => format!(
                "time limit of {limit} ms exceeded (wall-clock cap of {} ms: ran {:.1} ms, CPU time {:.1} ms; {text})",
                limit * WALL_FACTOR as u128,
                ms(wall),
                ms(used)
            ),
        }
    } else if interrupted {
        format!("time limit of {limit} ms exceeded ({text})")
    } else {
        text
    }
}

/// Epoch deadline set at the start of every call: the next tick.
pub(crate) const FIRST_DEADLINE: u64 = 1;

impl PluginLimits {
    pub(crate) fn effective_tick(&self) -> Duration {
        self.tick.max(Duration::from_micros(100))
    }
}

/// Where a compiled component came from (see [`PluginEngine::compile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a `.cwasm` file of the on-disk cache.
    Hit,
    /// Compiled now and written to the cache.
    Compiled,
    /// Compiled now; no cache directory configured.
    Uncached,
}

/// Per-store memory limiter that remembers whether the cap was hit (for the error text).
pub(crate) struct MemLimiter {
    pub(crate) cap: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false); // memory.grow returns -1; a Rust guest then aborts (trap)
        }
        Ok(true)
    }
    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// State of one plugin `Store`: what the `host` imports need.
pub struct HostState {
    pub(crate) limiter: MemLimiter,
    pub(crate) clock: CallClock,
    pub(crate) plugin: Arc<str>,
    pub(crate) config: Arc<HashMap<String, String>>,
    rng: u64,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<str>, config: Arc<HashMap<String, String>>, memory_bytes: usize) -> Self {
        HostState {
            limiter: MemLimiter { cap: memory_bytes, hit: false },
            clock: CallClock::default(),
            plugin,
            config,
            rng: rand::random::<u64>() | 1,
        }
    }
}

impl warren::plugin::types::Host for HostState {}

impl warren::plugin::host::Host for HostState {
    fn log(&mut self, level: warren::plugin::host::LogLevel, message: String) {
        use warren::plugin::host::LogLevel;
        let mut message = message;
        if message.len() > 4096 {
            let mut cut = 4096;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn now_millis(&mut self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn random_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub(crate) struct EngineInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) limits: PluginLimits,
    cache_dir: Option<PathBuf>,
    /// Advances the epoch while guest code runs; every store reports its calls to it
    /// ([`EngineInner::watch`]).
    pub(crate) ticker: Arc<super::ticker::Ticker>,
}

impl EngineInner {
    /// Makes `store`'s guest calls subject to the time limit: the epoch ticker runs while
    /// they do (see `ticker.rs`). Every store of this engine must get it.
    pub(crate) fn watch<T: 'static>(&self, store: &mut wasmtime::Store<T>) {
        let ticker = self.ticker.clone();
        store.call_hook(move |_, h| ticker.hook(h));
    }
}

/// One wasmtime engine for all plugins, its linker (host imports, no WASI) and the on-disk
/// cache of compiled components. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    pub(crate) inner: Arc<EngineInner>,
}

impl PluginEngine {
    /// An engine with the limits of `config`'s `[plugins]` section.
    pub fn from_config(config: &crate::config::Config, cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        let limits = PluginLimits {
            memory_bytes: (config.plugins.memory_limit_mib as usize) << 20,
            call_timeout: Duration::from_millis(config.plugins.call_timeout_ms),
            ..Default::default()
        };
        PluginEngine::new(limits, cache_dir)
    }

    /// `cache_dir` (e.g. `<data-dir>/plugin-cache`) holds compiled components; it is created
    /// if missing. `None` compiles on every load.
    pub fn new(limits: PluginLimits, cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        let err = |e: wasmtime::Error| LoadError::new("(engine)", error_text(&e));
        let mut cfg = Config::new();
        cfg.epoch_interruption(true);
        let engine = Engine::new(&cfg).map_err(err)?;
        let mut linker = Linker::new(&engine);
        ExchangeType::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(err)?;
        // The other worlds import `host` (linked above) and their own types-only interfaces.
        linker.instance("warren:plugin/auth-types@0.1.0").map_err(err)?;

        let ticker = super::ticker::Ticker::start(engine.weak(), limits.effective_tick())
            .map_err(|e| LoadError::new("(engine)", format!("cannot start epoch ticker: {e}")))?;

        if let Some(dir) = &cache_dir {
            create_private_dir(dir).map_err(|e| {
                LoadError::new("(engine)", format!("cannot create plugin cache {}: {e}", dir.display()))
            })?;
        }
        Ok(PluginEngine { inner: Arc::new(EngineInner { engine, linker, limits, cache_dir, ticker }) })
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.inner.limits
    }

    /// Path of the cached compiled form of `wasm` (whether or not it exists yet), if caching.
    pub fn cache_path(&self, wasm: &[u8]) -> Option<PathBuf> {
        let dir = self.inner.cache_dir.as_ref()?;
        let digest = Sha256::digest(wasm);
        let mut hex = String::with_capacity(32);
        for b in &digest[..16] {
            hex.push_str(&format!("{b:02x}"));
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{hex}-{:016x}.cwasm", h.finish())))
    }

    /// Compiles `wasm` once: loads it from the cache when there (mmap via `deserialize_file`),
    /// else compiles it and writes the cache file (temp file + rename).
    pub fn compile(&self, plugin: &str, wasm: &[u8]) -> Result<(Component, CacheOutcome), LoadError> {
        let engine = &self.inner.engine;
        let Some(path) = self.cache_path(wasm) else {
            let c = Component::new(engine, wasm)
                .map_err(|e| LoadError::new(plugin, format!("not a valid component: {}", error_text(&e))))?;
            return Ok((c, CacheOutcome::Uncached));
        };
        if path.exists() {
            // SAFETY: a .cwasm is native code. The cache directory is created owner-only by
            // this broker and only ever holds files written below by `precompile_component`;
            // wasmtime also checks the header and the engine compatibility.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => tracing::warn!(plugin, path = %path.display(), "ignoring unusable cache file: {}", error_text(&e)),
            }
        }
        let compiled = engine
            .precompile_component(wasm)
            .map_err(|e| LoadError::new(plugin, format!("not a valid component: {}", error_text(&e))))?;
        if let Err(e) = write_atomically(&path, &compiled) {
            tracing::warn!(plugin, path = %path.display(), "cannot write plugin cache: {e}");
        }
        // SAFETY: bytes just produced by this engine's `precompile_component`.
        let c = unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| LoadError::new(plugin, error_text(&e)))?;
        Ok((c, CacheOutcome::Compiled))
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!("{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
