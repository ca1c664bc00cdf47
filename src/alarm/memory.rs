//! The memory high watermark, RabbitMQ's `vm_memory_monitor`.
//!
//! Memory in use is the process's resident set size as the kernel counts it (`/proc/self/statm`,
//! resident pages × page size: RabbitMQ's default `rss` strategy). The limit is a fraction of the
//! available memory (`memory.high_watermark = 0.4`, RabbitMQ's `vm_memory_high_watermark.relative`)
//! or an absolute size (`"1GiB"`, `.absolute`). Available memory is the machine's RAM
//! (`MemTotal`), or the cgroup's limit when that is lower (v2 `memory.max` of the process's cgroup
//! and its ancestors; v1 `memory.limit_in_bytes`), as a container sees it.
//!
//! Above the limit the `memory` alarm is set (publishers blocked, see `alarm/mod.rs`), below it
//! cleared. A task started by `server::start` samples every `memory.check_interval_ms` (default
//! 100 ms). One sample is a `pread` of a small procfs file (a few µs), so 10 per second cost
//! nothing measurable, and a publisher filling memory at 300 MB/s (measured on an unbounded queue)
//! overshoots the watermark by at most ~30 MB before it is blocked; RabbitMQ's 2.5 s default would
//! let it overshoot by 750 MB. On a loaded machine the timer can run late (a 128 MB overshoot was
//! measured with the 2 cores at load 14), so every connection reader also samples after each
//! 4 MiB it reads: the overshoot is then bounded by data volume whatever the scheduling.
//!
//! Memory given back: glibc's malloc keeps freed memory in its arenas, so after a large backlog
//! is drained or deleted the RSS stays high (4.5 GB measured) and the alarm would stay set. Once a
//! second, when RSS is above 64 MiB, the monitor asks malloc how much of its heap is free
//! (`mallinfo2`) and, if that is at least a quarter of RSS (and 32 MiB), returns it to the kernel
//! (`malloc_trim(0)`, which also `madvise`s free pages inside the arenas).

use super::{Alarms, Resource, format_gb, parse_information_unit};
use parking_lot::Mutex;
use serde::Deserialize;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// RabbitMQ's default: 0.4 of available memory.
pub const DEFAULT_WATERMARK: Watermark = Watermark::Relative(0.4);

/// The high watermark setting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Watermark {
    /// A fraction of available memory (0.0 ..= 1.0).
    Relative(f64),
    /// Bytes.
    Absolute(u64),
}

impl Watermark {
    /// The limit in bytes for `total` bytes of available memory.
    pub fn limit(self, total: u64) -> u64 {
        match self {
            Watermark::Relative(f) => (total as f64 * f) as u64,
            Watermark::Absolute(n) => n,
        }
    }

    /// Parses `rabbitmqctl set_vm_memory_high_watermark`'s arguments: `<fraction>` or
    /// `absolute <value>`. The error is rabbitmqctl's "Bad argument" text.
    pub fn from_args(args: &[String]) -> Result<Watermark, &'static str> {
        match args {
            [a, v] if a == "absolute" => match parse_information_unit(v) {
                Some(n) => Ok(Watermark::Absolute(n)),
                None if v.parse::<f64>().is_ok() || v.bytes().take_while(u8::is_ascii_digit).count() > 0 && v.contains('.') => {
                    Err("The threshold should be an integer.")
                }
                None => Err(""),
            },
            [f] => match f.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(Watermark::Relative(x)),
                Ok(_) => Err("The threshold should be a fraction between 0.0 and 1.0"),
                Err(_) => Err(""),
            },
            _ => Err(""),
        }
    }

    /// `status`'s JSON form: `{"relative": 0.4}` or `{"absolute": 1073741824}`.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Watermark::Relative(f) => serde_json::json!({ "relative": f }),
            Watermark::Absolute(n) => serde_json::json!({ "absolute": n }),
        }
    }

    /// `status`'s text form, given the limit it computes to.
    pub fn describe(setting: &serde_json::Value, limit: u64) -> String {
        let computed = format_gb(limit);
        if let Some(f) = setting.get("relative").and_then(|v| v.as_f64()) {
            format!("Memory high watermark setting: {f} of available memory, computed to: {computed}")
        } else if let Some(n) = setting.get("absolute").and_then(|v| v.as_u64()) {
            format!("Memory high watermark setting: {}, computed to: {computed}", format_gb(n))
        } else {
            format!("Memory high watermark setting: unknown, computed to: {computed}")
        }
    }
}

/// `memory.high_watermark` in the config file: a fraction (`0.4`) or a size with RabbitMQ's
/// units (`"1GiB"`, `"512MiB"`, `"2GB"`, or bytes as a string).
pub fn deserialize_watermark<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Watermark, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum W {
        Fraction(f64),
        Text(String),
    }
    match W::deserialize(d)? {
        W::Fraction(f) if (0.0..=1.0).contains(&f) => Ok(Watermark::Relative(f)),
        W::Fraction(f) => Err(serde::de::Error::custom(format!(
            "invalid high_watermark {f}: a fraction of available memory must be between 0.0 and 1.0 (or give a size such as \"1GiB\")"
        ))),
        W::Text(s) => parse_information_unit(&s).map(Watermark::Absolute).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid high_watermark {s:?}: expected a fraction such as 0.4 or a size such as \"1GiB\", \"512MiB\", \"2GB\""
            ))
        }),
    }
}

/// Resident bytes from the text of `/proc/self/statm` (second field, in pages).
pub fn parse_statm(text: &str, page_size: u64) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse::<u64>().ok().map(|p| p * page_size)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut it = line.split_ascii_whitespace().skip(1);
    let n: u64 = it.next()?.parse().ok()?;
    Some(match it.next() {
        Some("kB") => n * 1024,
        _ => n,
    })
}

/// The lowest memory limit of the process's cgroup and its ancestors. `proc_cgroup` is the text of
/// `/proc/self/cgroup`, `root` the cgroup filesystem (`/sys/fs/cgroup`). v2 (`0::/path`):
/// `memory.max` ("max" = none); v1 (`N:memory:/path`, or `N:...,memory,...:/path`):
/// `memory/<path>/memory.limit_in_bytes` (a huge value = none). Inside a container the path
/// shown may not exist under `root`; then the root's own files are the container's.
pub fn cgroup_limit(proc_cgroup: &str, root: &Path) -> Option<u64> {
    let read = |p: &Path| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    // Walks `dir` up to `top`, taking the lowest limit found in `file`.
    let walk = |top: &Path, path: &str, file: &str| -> Option<u64> {
        let mut dir = top.join(path.trim_start_matches('/'));
        if !dir.exists() {
            dir = top.to_owned();
        }
        let mut best: Option<u64> = None;
        loop {
            if let Some(n) = read(&dir.join(file)) {
                best = Some(best.map_or(n, |b| b.min(n)));
            }
            if dir == top || !dir.pop() || !dir.starts_with(top) {
                break;
            }
        }
        best
    };
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if id == "0" && ctrl.is_empty() {
            if let Some(n) = walk(root, path, "memory.max") {
                return Some(n);
            }
        } else if ctrl.split(',').any(|c| c == "memory") {
            // v1 reports "no limit" as a page-rounded i64::MAX.
            return walk(&root.join("memory"), path, "memory.limit_in_bytes").filter(|n| *n < (1u64 << 60));
        }
    }
    None
}

/// Memory available to this process: RAM, or the cgroup limit when lower.
pub fn available_memory() -> u64 {
    let ram = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| parse_meminfo_total(&t));
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|t| cgroup_limit(&t, Path::new("/sys/fs/cgroup")));
    match (ram, cg) {
        (Some(r), Some(c)) => r.min(c),
        (Some(r), None) => r,
        (None, Some(c)) => c,
        // Not Linux-like: assume 1 GiB so the default watermark still protects something.
        (None, None) => 1 << 30,
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// The memory alarm of one broker.
pub struct MemoryMonitor {
    alarms: Arc<Alarms>,
    setting: Mutex<Watermark>,
    total: u64,
    limit: AtomicU64,
    used: AtomicU64,
    interval: Duration,
    page_size: u64,
    /// `/proc/self/statm`, kept open: a sample is one `pread`.
    statm: Option<std::fs::File>,
    check_lock: Mutex<()>,
    wake: Notify,
    /// Bytes given back to the kernel by `malloc_trim` (RSS before − after), and how often.
    pub trimmed_bytes: AtomicU64,
    pub trims: AtomicU64,
}

impl MemoryMonitor {
    pub fn new(alarms: Arc<Alarms>, setting: Watermark, interval: Duration) -> Arc<MemoryMonitor> {
        MemoryMonitor::with_total(alarms, setting, interval, available_memory())
    }

    /// With a given amount of available memory (tests).
    pub fn with_total(alarms: Arc<Alarms>, setting: Watermark, interval: Duration, total: u64) -> Arc<MemoryMonitor> {
        let statm = std::fs::File::open("/proc/self/statm").ok();
        Arc::new(MemoryMonitor {
            alarms,
            setting: Mutex::new(setting),
            total,
            limit: AtomicU64::new(setting.limit(total)),
            used: AtomicU64::new(0),
            interval: interval.max(Duration::from_millis(10)),
            page_size: page_size(),
            statm,
            check_lock: Mutex::new(()),
            wake: Notify::new(),
            trimmed_bytes: AtomicU64::new(0),
            trims: AtomicU64::new(0),
        })
    }

    pub fn setting(&self) -> Watermark {
        *self.setting.lock()
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Memory available to the process (RAM or cgroup limit).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Resident bytes at the last sample.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn alarmed(&self) -> bool {
        self.alarms.is_set(Resource::Memory)
    }

    /// Resident bytes now (None where /proc is missing).
    pub fn sample(&self) -> Option<u64> {
        let f = self.statm.as_ref()?;
        let mut buf = [0u8; 128];
        let n = f.read_at(&mut buf, 0).ok()?;
        parse_statm(std::str::from_utf8(&buf[..n]).ok()?, self.page_size)
    }

    /// `rabbitmqctl set_vm_memory_high_watermark`: a new setting, applied at once.
    pub fn set_watermark(&self, w: Watermark) {
        *self.setting.lock() = w;
        let limit = w.limit(self.total);
        self.limit.store(limit, Ordering::Relaxed);
        self.log_limit();
        self.check();
        self.wake.notify_one();
    }

    fn log_limit(&self) {
        let (limit, total) = (self.limit(), self.total);
        info!(
            "Memory high watermark set to {} MiB ({limit} bytes) of {} MiB ({total} bytes) total",
            limit >> 20,
            total >> 20
        );
    }

    /// Samples memory and sets or clears the alarm.
    pub fn check(&self) -> Option<u64> {
        let _serial = self.check_lock.lock();
        let used = self.sample()?;
        self.used.store(used, Ordering::Relaxed);
        let limit = self.limit();
        let alarmed = used > limit;
        if alarmed != self.alarmed() {
            if alarmed {
                info!("vm_memory_high_watermark set. Memory used:{used} allowed:{limit}");
            } else {
                info!("vm_memory_high_watermark clear. Memory used:{used} allowed:{limit}");
            }
            self.alarms.set(Resource::Memory, alarmed);
        }
        Some(used)
    }

    /// Gives free heap memory back to the kernel when malloc holds a lot of it (see the module
    /// doc). Returns the bytes RSS went down by.
    pub fn trim(&self) -> u64 {
        let before = self.used();
        if before < 64 << 20 {
            return 0;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: plain glibc calls without arguments that point anywhere.
            let free = unsafe { libc::mallinfo2() }.fordblks as u64;
            if free < (32 << 20).max(before / 4) {
                return 0;
            }
            let t = std::time::Instant::now();
            unsafe { libc::malloc_trim(0) };
            let after = self.sample().unwrap_or(before);
            let gained = before.saturating_sub(after);
            self.used.store(after, Ordering::Relaxed);
            self.trims.fetch_add(1, Ordering::Relaxed);
            self.trimmed_bytes.fetch_add(gained, Ordering::Relaxed);
            tracing::debug!(
                "malloc_trim: {} MiB free in the heap, RSS {} -> {} MiB in {:?}",
                free >> 20,
                before >> 20,
                after >> 20,
                t.elapsed()
            );
            gained
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        0
    }

    /// Samples every `interval` on the current tokio runtime (ends with it). The first sample is
    /// taken before returning.
    pub fn start(self: &Arc<MemoryMonitor>) {
        self.log_limit();
        if self.check().is_none() {
            warn!("memory monitoring is unavailable: /proc/self/statm cannot be read");
            return;
        }
        let weak = Arc::downgrade(self);
        let interval = self.interval;
        tokio::spawn(async move {
            let mut last_trim = tokio::time::Instant::now();
            loop {
                let Some(m) = weak.upgrade() else { return };
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = m.wake.notified() => {}
                }
                // A procfs read does not block: done on the reactor.
                m.check();
                if last_trim.elapsed() >= Duration::from_secs(1) {
                    last_trim = tokio::time::Instant::now();
                    // malloc_trim can take milliseconds on a large heap: off the reactor.
                    let m2 = m.clone();
                    if tokio::task::spawn_blocking(move || m2.trim()).await.is_ok_and(|g| g > 0) {
                        m.check();
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rabbitmqctl_arguments() {
        assert_eq!(Watermark::from_args(&args(&["0.4"])), Ok(Watermark::Relative(0.4)));
        assert_eq!(Watermark::from_args(&args(&["0.0001"])), Ok(Watermark::Relative(0.0001)));
        assert_eq!(Watermark::from_args(&args(&["absolute", "1GiB"])), Ok(Watermark::Absolute(1 << 30)));
        assert_eq!(Watermark::from_args(&args(&["absolute", "1000000"])), Ok(Watermark::Absolute(1_000_000)));
        assert_eq!(Watermark::from_args(&args(&["1.5"])), Err("The threshold should be a fraction between 0.0 and 1.0"));
        assert_eq!(Watermark::from_args(&args(&["absolute", "1.5GB"])), Err("The threshold should be an integer."));
        assert_eq!(Watermark::from_args(&args(&["absolute", "lots"])), Err(""));
        assert_eq!(Watermark::from_args(&args(&["abc"])), Err(""));
    }

    #[test]
    fn config_values() {
        #[derive(serde::Deserialize)]
        struct C {
            #[serde(deserialize_with = "deserialize_watermark")]
            w: Watermark,
        }
        let p = |s: &str| toml::from_str::<C>(s).map(|c| c.w);
        assert_eq!(p("w = 0.4").unwrap(), Watermark::Relative(0.4));
        assert_eq!(p("w = 1").unwrap(), Watermark::Relative(1.0));
        assert_eq!(p("w = \"1GiB\"").unwrap(), Watermark::Absolute(1 << 30));
        assert_eq!(p("w = \"512MiB\"").unwrap(), Watermark::Absolute(512 << 20));
        assert_eq!(p("w = \"2GB\"").unwrap(), Watermark::Absolute(2_000_000_000));
        assert!(p("w = 1.5").unwrap_err().to_string().contains("between 0.0 and 1.0"));
        assert!(p("w = \"lots\"").unwrap_err().to_string().contains("invalid high_watermark"));
    }

    #[test]
    fn limits_and_status_text() {
        assert_eq!(Watermark::Relative(0.4).limit(1000), 400);
        assert_eq!(Watermark::Absolute(7).limit(1000), 7);
        let total = 25_276_000_000u64;
        let w = Watermark::Relative(0.4);
        assert_eq!(
            Watermark::describe(&w.to_json(), w.limit(total)),
            "Memory high watermark setting: 0.4 of available memory, computed to: 10.1104 gb"
        );
        let w = Watermark::Absolute(1 << 30);
        assert_eq!(Watermark::describe(&w.to_json(), w.limit(total)), "Memory high watermark setting: 1.0737 gb, computed to: 1.0737 gb");
    }

    #[test]
    fn procfs_parsing() {
        assert_eq!(parse_statm("1000 250 100 10 0 300 0\n", 4096), Some(250 * 4096));
        assert_eq!(parse_statm("", 4096), None);
        assert_eq!(parse_meminfo_total("MemTotal:       24683268 kB\nMemFree: 1 kB\n"), Some(24683268 * 1024));
        assert!(available_memory() > 0);
    }

    #[test]
    fn cgroup_limits_v2_and_v1() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // v2: the lowest of the cgroup and its ancestors; "max" is no limit.
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/memory.max"), "2000000\n").unwrap();
        std::fs::write(r.join("a/b/memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit("0::/a/b\n", r), Some(2_000_000));
        std::fs::write(r.join("a/memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit("0::/a/b\n", r), None);
        // A namespaced path that does not exist under root: the root's own file.
        std::fs::write(r.join("memory.max"), "3000000\n").unwrap();
        assert_eq!(cgroup_limit("0::/elsewhere\n", r), Some(3_000_000));
        // v1: memory controller; an unlimited value is ignored.
        std::fs::create_dir_all(r.join("memory/docker/x")).unwrap();
        std::fs::write(r.join("memory/docker/x/memory.limit_in_bytes"), "536870912\n").unwrap();
        assert_eq!(cgroup_limit("4:cpu,cpuacct:/docker/x\n5:memory:/docker/x\n", r), Some(512 << 20));
        std::fs::write(r.join("memory/docker/x/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_limit("5:memory:/docker/x\n", r), None);
    }

    /// A freed backlog of small allocations is given back to the kernel.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_gives_a_freed_backlog_back() {
        let m = MemoryMonitor::with_total(Alarms::new(), Watermark::Relative(0.4), Duration::from_millis(100), 1 << 40);
        let base = m.check().unwrap();
        // 200 MiB in 1 KiB messages, touched, then freed (a drained queue).
        let backlog: Vec<Vec<u8>> = (0..200 * 1024).map(|i| vec![i as u8; 1024]).collect();
        let peak = m.check().unwrap();
        assert!(peak > base + (150 << 20), "{base} -> {peak}");
        drop(backlog);
        let freed = m.check().unwrap();
        let gained = m.trim();
        let after = m.check().unwrap();
        eprintln!("RSS base {} MiB, with backlog {} MiB, freed {} MiB, after trim {} MiB", base >> 20, peak >> 20, freed >> 20, after >> 20);
        // (Other tests run in this process meanwhile: compare with the RSS just before the trim.)
        assert!(freed.saturating_sub(after) > 100 << 20, "RSS {} MiB before the trim, {} MiB after (gained {gained})", freed >> 20, after >> 20);
    }

    #[test]
    fn check_sets_and_clears_the_memory_alarm() {
        let alarms = Alarms::new();
        let m = MemoryMonitor::with_total(alarms.clone(), Watermark::Relative(0.4), Duration::from_millis(100), 1 << 40);
        let used = m.check().expect("/proc/self/statm");
        assert!(used > 1 << 20, "{used}");
        assert!(!m.alarmed());
        m.set_watermark(Watermark::Absolute(1 << 20));
        assert!(m.alarmed() && alarms.is_set(Resource::Memory));
        assert_eq!(alarms.blocked_reason(), "low on memory");
        m.set_watermark(Watermark::Relative(1.0));
        assert!(!m.alarmed() && !alarms.any());
    }
}
