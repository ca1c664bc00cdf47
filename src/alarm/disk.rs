//! The free disk space monitor, RabbitMQ's `rabbit_disk_monitor`.
//!
//! A task started by `server::start` measures the free space of the data directory's filesystem
//! (`statvfs`: blocks available to unprivileged users × fragment size, what `df -kP` reports and
//! RabbitMQ reads). Below `storage.disk_free_limit` the `disk` alarm of the broker's [`Alarms`] is
//! set: connections become `blocking` and stop reading their socket after their next publish (see
//! `connection/mod.rs`). `warrenctl set_disk_free_limit` changes the limit and checks
//! at once, in the caller's thread.
//!
//! Check interval, as RabbitMQ: assume the disk fills at 250 MB/s and check again before the
//! limit could be crossed, i.e. `2 × (free − limit) / 250 kB/ms`, clamped to
//! [100 ms, `storage.disk_check_interval_ms`]; while the alarm is set, every
//! `disk_check_interval_ms`.

use super::{Alarms, Resource};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// `disk_free_limit` default, RabbitMQ's.
pub const DEFAULT_DISK_FREE_LIMIT: u64 = 50_000_000;

const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// RabbitMQ's FAST_RATE: 250 MB/s, in bytes per millisecond.
const FAST_RATE_BYTES_PER_MS: u64 = 250 * 1000;
/// `free` before the first successful measurement.
const UNKNOWN: u64 = u64::MAX;

/// Free bytes for unprivileged users on the filesystem holding `dir`.
pub fn disk_free(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
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
    /// The broker's alarm set; this monitor owns its `disk` member.
    alarms: Arc<Alarms>,
    /// Asks the monitor task to check now (and recompute its interval).
    wake: Notify,
}

impl DiskMonitor {
    pub fn new(alarms: Arc<Alarms>, dir: PathBuf, limit: u64, max_interval: Duration) -> Arc<DiskMonitor> {
        Arc::new(DiskMonitor {
            dir,
            limit: AtomicU64::new(limit),
            free: AtomicU64::new(UNKNOWN),
            max_interval: max_interval.max(MIN_CHECK_INTERVAL),
            check_lock: Mutex::new(()),
            alarms,
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

    /// The disk alarm is set.
    pub fn alarmed(&self) -> bool {
        self.alarms.is_set(Resource::Disk)
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
            } else {
                info!("Free disk space is sufficient. Free bytes: {free}. Limit: {limit}");
            }
            self.alarms.set(Resource::Disk, alarmed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_sets_and_clears_the_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let alarms = Alarms::new();
        let m = DiskMonitor::new(alarms.clone(), dir.path().to_owned(), DEFAULT_DISK_FREE_LIMIT, Duration::from_secs(1));
        let mut rx = alarms.subscribe();
        let free = m.check().expect("statvfs works on a temp dir");
        assert!(free > 0);
        assert!(!m.alarmed(), "a test machine has more than 50 MB free");
        m.set_limit(u64::MAX);
        assert!(m.alarmed() && *rx.borrow_and_update() != 0 && alarms.any());
        m.set_limit(0);
        assert!(!m.alarmed() && *rx.borrow_and_update() == 0 && !alarms.any());
        // While alarmed the interval is the maximum; far from the limit it is the maximum too;
        // close to the limit it shrinks towards 100 ms.
        assert_eq!(m.interval(), Duration::from_secs(1));
        // (The free space of the last check: other processes write to this disk meanwhile.)
        let free = m.free().unwrap();
        m.limit.store(free - 25_000_000, Ordering::Relaxed); // 25 MB away: 200 ms at 250 MB/s
        assert_eq!(m.interval(), Duration::from_millis(200));
    }

    #[test]
    fn missing_directory_leaves_the_alarm_alone() {
        let m = DiskMonitor::new(Alarms::new(), PathBuf::from("/nonexistent/warren/dir"), u64::MAX, Duration::from_secs(1));
        assert_eq!(m.check(), None);
        assert!(!m.alarmed());
        assert_eq!(m.free(), None);
    }
}
