//! Shared counters, the process clock and latency histograms.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// The instant every timestamp in a message body is relative to.
static CLOCK: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since the process clock started.
#[inline]
pub fn now_ns() -> u64 {
    CLOCK.elapsed().as_nanos() as u64
}

pub fn init_clock() {
    LazyLock::force(&CLOCK);
}

/// Set when the measured run is over; checked in hot loops.
pub static STOP: AtomicBool = AtomicBool::new(false);

pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub sent: u64,
    pub received: u64,
    pub confirmed: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
        }
    }
}

pub static COUNTERS: LazyLock<Counters> = LazyLock::new(Counters::default);

/// Publish-to-confirm latencies in µs of every producer, for the whole run.
pub static CONFIRM_LATENCY: LazyLock<Mutex<Histogram<u64>>> = LazyLock::new(|| Mutex::new(new_histogram()));

/// Latencies in microseconds, 1 µs .. 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// One per consumer: the consumer records into `interval`; the reporter
/// drains it once a second into the run total.
pub type SharedHistogram = Arc<Mutex<Histogram<u64>>>;

pub fn new_shared_histogram() -> SharedHistogram {
    Arc::new(Mutex::new(new_histogram()))
}

/// Latency percentiles in µs of a histogram (zeros when empty).
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}
