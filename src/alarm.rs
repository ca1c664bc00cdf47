//! Resource alarms: the free disk space monitor, RabbitMQ's `rabbit_disk_monitor` plus the disk
//! half of `rabbit_alarm` (there is no memory alarm).
//!
//! A task started by `server::start` measures the free space of the data directory's filesystem
//! (`statvfs`: blocks available to unprivileged users × fragment size, what `df -kP` reports and
//! RabbitMQ reads). Below `storage.disk_free_limit` the alarm is set: connections subscribed to
//! [`DiskMonitor::subscribe`] become `blocking` and stop reading their socket after their next
//! publish (see `connection/mod.rs`). `warrenctl set_disk_free_limit` changes the limit and checks
//! at once, in the caller's thread.
//!
//! Check interval, as RabbitMQ: assume the disk fills at 250 MB/s and check again before the
//! limit could be crossed, i.e. `2 × (free − limit) / 250 kB/ms`, clamped to
//! [100 ms, `storage.disk_check_interval_ms`]; while the alarm is set, every
//! `disk_check_interval_ms`.

use parking_lot::Mutex;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

/// The node name shown in alarms and `status` (also `cluster_name` in connection.start).
pub const NODE_NAME: &str = "warren@localhost";
/// `disk_free_limit` default, RabbitMQ's.
pub const DEFAULT_DISK_FREE_LIMIT: u64 = 50_000_000;
/// The reason sent in connection.blocked.
pub const DISK_BLOCKED_REASON: &str = "low on disk";

const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// RabbitMQ's FAST_RATE: 250 MB/s, in bytes per millisecond.
const FAST_RATE_BYTES_PER_MS: u64 = 250 * 1000;
/// `free` before the first successful measurement.
const UNKNOWN: u64 = u64::MAX;

/// Parses a limit the way RabbitMQ parses `disk_free_limit.absolute` and `rabbitmqctl
/// set_disk_free_limit` (`rabbit_resource_monitor_misc:parse_information_unit`, 3.10): digits, then
/// an optional unit. `kB KB kb Kb` = 1000, `MB mb Mb` = 10^6, `GB gb Gb` = 10^9; `k K kiB KiB KIB kib`
/// = 1024, `m M MiB MIB mib` = 2^20, `g G GiB GIB gib` = 2^30. No spaces, signs or fractions.
pub fn parse_information_unit(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "kB" | "KB" | "kb" | "Kb" => 1000,
        "MB" | "mb" | "Mb" => 1_000_000,
        "GB" | "gb" | "Gb" => 1_000_000_000,
        "k" | "K" | "kiB" | "KiB" | "KIB" | "kib" => 1 << 10,
        "m" | "M" | "MiB" | "MIB" | "mib" => 1 << 20,
        "g" | "G" | "GiB" | "GIB" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Free bytes for unprivileged users on the filesystem holding `dir`.
pub fn disk_free(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Bytes as RabbitMQ's `status` prints them: gigabytes (10^9), at most 4 decimals.
pub fn format_gb(bytes: u64) -> String {
    let gb = (bytes as f64 / 1e9 * 1e4).round() / 1e4;
    format!("{gb} gb")
}

/// The disk alarm of one broker.
pub struct DiskMonitor {
    dir: PathBuf,
    limit: AtomicU64,
    free: AtomicU64,
    max_interval: Duration,
    /// Serialises checks (the monitor task and `set_disk_free_limit`) so set/clear are logged and
    /// published once, in order.
    check_lock: Mutex<()>,
    /// true while the alarm is set; every connection holds a receiver to wait for the clear.
    alarm: watch::Sender<bool>,
    /// The same, for the publish path (one atomic load, no lock).
    alarmed: AtomicBool,
    /// Asks the monitor task to check now (and recompute its interval).
    wake: Notify,
}

impl DiskMonitor {
    pub fn new(dir: PathBuf, limit: u64, max_interval: Duration) -> Arc<DiskMonitor> {
        Arc::new(DiskMonitor {
            dir,
            limit: AtomicU64::new(limit),
            free: AtomicU64::new(UNKNOWN),
            max_interval: max_interval.max(MIN_CHECK_INTERVAL),
            check_lock: Mutex::new(()),
            alarm: watch::channel(false).0,
            alarmed: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Free bytes at the last check (None before the first successful one).
    pub fn free(&self) -> Option<u64> {
        Some(self.free.load(Ordering::Relaxed)).filter(|f| *f != UNKNOWN)
    }

    pub fn alarmed(&self) -> bool {
        self.alarmed.load(Ordering::Acquire)
    }

    /// A receiver of the alarm state (true = set).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.alarm.subscribe()
    }

    /// Sets a new limit and checks at once (`rabbitmqctl set_disk_free_limit`). Blocking: call it
    /// off the async reactor.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
        info!("Disk free limit set to {}MB", limit / 1_000_000);
        self.check();
        self.wake.notify_one();
    }

    /// Measures free space and sets or clears the alarm. Returns the free bytes (None if the
    /// measurement failed; the alarm then stays as it was).
    pub fn check(&self) -> Option<u64> {
        let _serial = self.check_lock.lock();
        let free = match disk_free(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                if self.free.swap(UNKNOWN, Ordering::Relaxed) != UNKNOWN {
                    error!("could not determine free disk space of {}: {e}", self.dir.display());
                }
                return None;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let limit = self.limit();
        let alarmed = free < limit;
        if alarmed != self.alarmed() {
            if alarmed {
                info!("Free disk space is insufficient. Free bytes: {free}. Limit: {limit}");
                warn!(
                    "disk resource limit alarm set on node {NODE_NAME}.\n\n\
                     **********************************************************\n\
                     *** Publishers will be blocked until this alarm clears ***\n\
                     **********************************************************"
                );
            } else {
                info!("Free disk space is sufficient. Free bytes: {free}. Limit: {limit}");
                warn!("disk resource limit alarm cleared on node {NODE_NAME}");
            }
            // Ordered so that a reader that saw `alarmed` set (Acquire) also sees the watch set,
            // and never waits for a clear that already happened.
            if alarmed {
                self.alarm.send_replace(true);
                self.alarmed.store(true, Ordering::Release);
            } else {
                self.alarmed.store(false, Ordering::Release);
                self.alarm.send_replace(false);
            }
        }
        Some(free)
    }

    /// How long until the next check.
    fn interval(&self) -> Duration {
        let (Some(free), false) = (self.free(), self.alarmed()) else {
            return self.max_interval;
        };
        let ms = 2 * free.saturating_sub(self.limit()) / FAST_RATE_BYTES_PER_MS;
        Duration::from_millis(ms).clamp(MIN_CHECK_INTERVAL, self.max_interval)
    }

    /// Runs the periodic checks on the current tokio runtime (ends with it). The first check is
    /// done before returning, so an alarm is in effect before the listener accepts anyone.
    pub fn start(self: &Arc<DiskMonitor>) {
        match self.check() {
            Some(free) => info!(
                "Enabling free disk space monitoring (data directory {}, free {free} bytes, limit {} bytes)",
                self.dir.display(),
                self.limit()
            ),
            None => warn!("free disk space monitoring of {} failed; retrying every check interval", self.dir.display()),
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(m) = weak.upgrade() else { return };
                let wait = m.interval();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = m.wake.notified() => continue,
                }
                // statvfs can block on a hung network filesystem: keep it off the reactor.
                let m2 = m.clone();
                drop(m);
                if tokio::task::spawn_blocking(move || m2.check()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// `disk_free_limit` in the config file: an integer (bytes) or a string with a unit ("50MB").
pub fn deserialize_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Limit {
        Bytes(u64),
        Text(String),
    }
    match Limit::deserialize(d)? {
        Limit::Bytes(n) => Ok(n),
        Limit::Text(s) => parse_information_unit(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid disk_free_limit {s:?}: expected bytes or e.g. \"50MB\", \"1GB\", \"500MiB\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_units_as_rabbitmq() {
        assert_eq!(parse_information_unit("50000000"), Some(50_000_000));
        assert_eq!(parse_information_unit("50MB"), Some(50_000_000));
        assert_eq!(parse_information_unit("1GB"), Some(1_000_000_000));
        assert_eq!(parse_information_unit("1gb"), Some(1_000_000_000));
        assert_eq!(parse_information_unit("2kB"), Some(2000));
        assert_eq!(parse_information_unit("500MiB"), Some(500 << 20));
        assert_eq!(parse_information_unit("3G"), Some(3 << 30));
        assert_eq!(parse_information_unit("4k"), Some(4096));
        assert_eq!(parse_information_unit("1000000GB"), Some(1_000_000_000_000_000));
        for bad in ["", "MB", "-10", "1.5GB", "10 MB", "sandwich", "10TB", "10mB", "99999999999999999999"] {
            assert_eq!(parse_information_unit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn gb_formatting_as_rabbitmq_status() {
        assert_eq!(format_gb(50_000_000), "0.05 gb");
        assert_eq!(format_gb(10_110_612_345), "10.1106 gb");
        assert_eq!(format_gb(0), "0 gb");
    }

    #[test]
    fn check_sets_and_clears_the_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let m = DiskMonitor::new(dir.path().to_owned(), DEFAULT_DISK_FREE_LIMIT, Duration::from_secs(1));
        let mut rx = m.subscribe();
        let free = m.check().expect("statvfs works on a temp dir");
        assert!(free > 0);
        assert!(!m.alarmed(), "a test machine has more than 50 MB free");
        m.set_limit(u64::MAX);
        assert!(m.alarmed() && *rx.borrow_and_update());
        m.set_limit(0);
        assert!(!m.alarmed() && !*rx.borrow_and_update());
        // While alarmed the interval is the maximum; far from the limit it is the maximum too;
        // close to the limit it shrinks towards 100 ms.
        assert_eq!(m.interval(), Duration::from_secs(1));
        m.limit.store(free - 25_000_000, Ordering::Relaxed); // 25 MB away: 200 ms at 250 MB/s
        assert_eq!(m.interval(), Duration::from_millis(200));
    }

    #[test]
    fn missing_directory_leaves_the_alarm_alone() {
        let m = DiskMonitor::new(PathBuf::from("/nonexistent/warren/dir"), u64::MAX, Duration::from_secs(1));
        assert_eq!(m.check(), None);
        assert!(!m.alarmed());
        assert_eq!(m.free(), None);
    }
}
