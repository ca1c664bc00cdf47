//! Resource alarms (RabbitMQ's `rabbit_alarm`): a set of resources that are short — `disk`
//! (`disk.rs`, the free disk space monitor) and `memory` (`memory.rs`, the memory high
//! watermark). While any is set, every connection that publishes is blocked (see
//! `connection/mod.rs`): it is sent `connection.blocked` once with the reason of the alarms in
//! effect ("low on memory", "low on disk", both: "low on disk & memory") and its socket is no
//! longer read; it is unblocked when the last alarm clears.

pub mod disk;
pub mod memory;

pub use disk::{DEFAULT_DISK_FREE_LIMIT, DiskMonitor, disk_free};
pub use memory::{MemoryMonitor, Watermark};

use parking_lot::Mutex;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::watch;
use tracing::warn;

/// The node name shown in alarms and `status` (also `cluster_name` in connection.start).
pub const NODE_NAME: &str = "warren@localhost";

/// A resource that can run short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Disk,
    Memory,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Disk, Resource::Memory];

    fn bit(self) -> u8 {
        match self {
            Resource::Disk => 1,
            Resource::Memory => 2,
        }
    }

    /// RabbitMQ's resource name (`status` JSON, the log lines, connection.blocked reasons).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Disk => "disk",
            Resource::Memory => "memory",
        }
    }
}

/// The alarms in effect: a bit set published on a `watch` channel (connections wait on it for the
/// last clear) and mirrored in an atomic (the publish path reads it with one load, no lock).
pub struct Alarms {
    bits: AtomicU8,
    tx: watch::Sender<u8>,
    /// Serialises changes so set/clear are logged and published once, in order.
    change: Mutex<()>,
}

impl Alarms {
    pub fn new() -> Arc<Alarms> {
        Arc::new(Alarms { bits: AtomicU8::new(0), tx: watch::channel(0).0, change: Mutex::new(()) })
    }

    /// Some alarm is set.
    pub fn any(&self) -> bool {
        self.bits.load(Ordering::Acquire) != 0
    }

    pub fn is_set(&self, r: Resource) -> bool {
        self.bits.load(Ordering::Acquire) & r.bit() != 0
    }

    /// The resources alarmed now, in RabbitMQ's order (sorted by name).
    pub fn resources(&self) -> Vec<Resource> {
        let bits = self.bits.load(Ordering::Acquire);
        Resource::ALL.into_iter().filter(|r| bits & r.bit() != 0).collect()
    }

    /// The connection.blocked reason for the alarms in effect (RabbitMQ's `blocked_by_message`:
    /// "low on " and the resources sorted, joined by " & ").
    pub fn blocked_reason(&self) -> String {
        let names: Vec<&str> = self.resources().into_iter().map(Resource::name).collect();
        if names.is_empty() {
            return format!("low on {}", Resource::Disk.name());
        }
        format!("low on {}", names.join(" & "))
    }

    /// A receiver of the alarm bits (0 = none); connections wait on it for the last clear.
    pub fn subscribe(&self) -> watch::Receiver<u8> {
        self.tx.subscribe()
    }

    /// Sets or clears one alarm, logging the change as RabbitMQ does.
    pub fn set(&self, r: Resource, on: bool) {
        let _serial = self.change.lock();
        let old = self.bits.load(Ordering::Acquire);
        let new = if on { old | r.bit() } else { old & !r.bit() };
        if new == old {
            return;
        }
        if on {
            warn!(
                "{} resource limit alarm set on node {NODE_NAME}.\n\n\
                 **********************************************************\n\
                 *** Publishers will be blocked until this alarm clears ***\n\
                 **********************************************************",
                r.name()
            );
            // A reader that saw the atomic set (Acquire) also sees the watch set, so it never
            // waits for a clear that already happened.
            self.tx.send_replace(new);
            self.bits.store(new, Ordering::Release);
        } else {
            warn!("{} resource limit alarm cleared on node {NODE_NAME}", r.name());
            self.bits.store(new, Ordering::Release);
            self.tx.send_replace(new);
        }
    }
}

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


/// Bytes as RabbitMQ's `status` prints them: gigabytes (10^9), at most 4 decimals.
pub fn format_gb(bytes: u64) -> String {
    let gb = (bytes as f64 / 1e9 * 1e4).round() / 1e4;
    format!("{gb} gb")
}


/// A size in the config file (`disk_free_limit`, `store_cache`): an integer (bytes) or a string
/// with a unit ("50MB").
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
            .ok_or_else(|| serde::de::Error::custom(format!("invalid size {s:?}: expected bytes or e.g. \"50MB\", \"1GB\", \"500MiB\""))),
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
    fn alarm_set_and_reason() {
        let a = Alarms::new();
        let mut rx = a.subscribe();
        assert!(!a.any());
        a.set(Resource::Memory, true);
        assert!(a.any() && a.is_set(Resource::Memory) && !a.is_set(Resource::Disk));
        assert_eq!(a.blocked_reason(), "low on memory");
        a.set(Resource::Disk, true);
        assert_eq!(a.blocked_reason(), "low on disk & memory");
        assert_eq!(*rx.borrow_and_update(), 3);
        a.set(Resource::Memory, false);
        assert!(a.any());
        assert_eq!(a.blocked_reason(), "low on disk");
        a.set(Resource::Disk, false);
        assert!(!a.any());
        assert_eq!(*rx.borrow_and_update(), 0);
    }
}
