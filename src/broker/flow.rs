//! Publisher flow control (RabbitMQ's `flow` connection state): a publishing connection whose
//! messages cannot be taken as fast as it sends stops reading its socket until the pressure drops,
//! so TCP pushes back on the client and queues, the store writer's backlog and publish→deliver
//! latency stay bounded.
//!
//! Pressure is detected where it builds up, with one atomic load per publish:
//! - a queue **with consumers** whose ready messages or ready bytes exceed `flow.queue_messages` /
//!   `flow.queue_bytes` (its consumers are slower than its publishers, or their connections'
//!   outbound buffers are full so the queue skips them); the queue raises its flag under its lock
//!   when it appends, and lowers it (waking the paused readers) when dispatching brings it to half
//!   of both limits or its last consumer leaves. A queue without consumers never applies flow:
//!   its growth is bounded by the memory alarm and paging, as in RabbitMQ.
//! - the store writer: bytes handed to it and not yet committed above `flow.store_pending_bytes`;
//!   the reader resumes at half (polled every 2 ms while paused: the writer commits in ~1 ms).
//!
//! The reader checks after each content frame (as it does for the resource alarms): the message
//! that found the pressure is published, the frames after it wait in the socket.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Thresholds (from `[flow]` in the config).
#[derive(Clone, Copy, Debug)]
pub struct FlowLimits {
    pub queue_messages: usize,
    pub queue_bytes: usize,
    pub store_pending_bytes: u64,
}

impl FlowLimits {
    pub fn from_config(c: &crate::config::FlowConfig) -> FlowLimits {
        FlowLimits {
            queue_messages: c.queue_messages as usize,
            queue_bytes: c.queue_bytes as usize,
            store_pending_bytes: c.store_pending_bytes,
        }
    }
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits::from_config(&crate::config::FlowConfig::default())
    }
}

/// The flow state of one queue.
pub struct QueueFlow {
    limits: FlowLimits,
    over: AtomicBool,
    relieved: Notify,
    /// Times the flag was raised (stats, tests).
    pub raised: AtomicU64,
}

impl QueueFlow {
    pub fn new(limits: FlowLimits) -> QueueFlow {
        QueueFlow { limits, over: AtomicBool::new(false), relieved: Notify::new(), raised: AtomicU64::new(0) }
    }

    /// The queue is over its limits: its publishers should pause (one atomic load).
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// After an append (under the queue lock).
    pub fn after_push(&self, ready: usize, ready_bytes: usize, consumers: bool) {
        if consumers && !self.is_over() && (ready > self.limits.queue_messages || ready_bytes > self.limits.queue_bytes) {
            self.over.store(true, Ordering::Release);
            self.raised.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// After messages left or consumers changed (under the queue lock): lowers the flag at half
    /// of both limits, or when no consumer is left.
    pub fn after_drain(&self, ready: usize, ready_bytes: usize, consumers: bool) {
        if self.is_over() && (!consumers || (ready <= self.limits.queue_messages / 2 && ready_bytes <= self.limits.queue_bytes / 2)) {
            self.clear();
        }
    }

    /// Lowers the flag and wakes the paused publishers (queue purged or deleted).
    pub fn clear(&self) {
        self.over.store(false, Ordering::Release);
        self.relieved.notify_waiters();
    }

    /// Waits until the flag is lowered; `recheck` (which takes the queue lock and re-evaluates)
    /// runs every 100 ms in case the queue changed in a way that lowered no flag (basic.get).
    pub async fn relieved(&self, recheck: impl Fn()) {
        loop {
            let n = self.relieved.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if !self.is_over() {
                return;
            }
            tokio::select! {
                _ = n => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => recheck(),
            }
        }
    }
}

/// Waits until the store writer's pending bytes are at half of the limit (or the store is gone).
pub async fn store_relieved(pending: impl Fn() -> u64, limit: u64) {
    while pending() > limit / 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A connection's `flow` state as `list_connections` shows it: set while its reader is paused by
/// flow control and for one second after (RabbitMQ shows `flow` for a connection throttled
/// within the last moments, not only at the instant of the listing).
#[derive(Default)]
pub struct FlowState {
    /// Milliseconds since `epoch()` until which the state reads `flow` (u64::MAX: paused now).
    until_ms: AtomicU64,
    /// Times the reader paused.
    pub pauses: AtomicU64,
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl FlowState {
    pub fn pause(&self) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
        self.until_ms.store(u64::MAX, Ordering::Relaxed);
    }

    pub fn resume(&self) {
        self.until_ms.store(now_ms() + 1000, Ordering::Relaxed);
    }

    pub fn is_flow(&self) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FlowLimits {
        FlowLimits { queue_messages: 100, queue_bytes: 1000, store_pending_bytes: 10 }
    }

    #[test]
    fn queue_flag_raised_over_either_limit_with_consumers_only() {
        let f = QueueFlow::new(limits());
        f.after_push(101, 10, false);
        assert!(!f.is_over(), "no consumers: no flow");
        f.after_push(100, 1000, true);
        assert!(!f.is_over());
        f.after_push(101, 10, true);
        assert!(f.is_over());
        f.after_drain(60, 10, true);
        assert!(f.is_over(), "stays raised above half");
        f.after_drain(50, 10, true);
        assert!(!f.is_over());
        f.after_push(10, 1001, true);
        assert!(f.is_over(), "bytes limit");
        f.after_drain(10, 600, true);
        assert!(f.is_over());
        f.after_drain(10, 600, false);
        assert!(!f.is_over(), "last consumer gone");
        assert_eq!(f.raised.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn paused_publishers_are_woken_when_relieved() {
        let f = std::sync::Arc::new(QueueFlow::new(limits()));
        f.after_push(200, 0, true);
        let f2 = f.clone();
        let waiter = tokio::spawn(async move { f2.relieved(|| {}).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        f.after_drain(0, 0, true);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }

    #[test]
    fn connection_state() {
        let s = FlowState::default();
        assert!(!s.is_flow());
        s.pause();
        assert!(s.is_flow());
        s.resume();
        assert!(s.is_flow(), "shown for a moment after resuming");
    }
}
