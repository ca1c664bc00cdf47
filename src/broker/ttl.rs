//! Message TTL (`x-message-ttl`, the `expiration` property): expiry times and the per-queue
//! expiry timer; queue expiry (`x-expires`): a task per queue that has it.
//!
//! As in RabbitMQ, a message expires only at the head of its queue: one behind an unexpired head
//! waits (and is counted) until it gets there. So a queue needs one deadline, its head's, and one
//! timer. Nothing here runs for a queue that never held a message with a TTL: the expiry is
//! computed at enqueue only when the queue or the message has a TTL, and the timer task is
//! started by the first such message.

use super::message::Message;
use super::Vhost;
use super::queue::Queue;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Wall-clock milliseconds since the Unix epoch (expiry times survive a restart).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// RabbitMQ's check of an `expiration` property (Erlang's `string:to_integer`, then the range):
/// the TTL, or the reason of its 406 (`invalid expiration 'S': REASON`).
pub fn parse_expiration(s: &str) -> Result<u64, String> {
    let b = s.as_bytes();
    let sign = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = b[sign..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err("no_integer".into());
    }
    let end = sign + digits;
    if end < b.len() {
        return Err(format!("{{leftover_string,\"{}\"}}", &s[end..]));
    }
    let n: i128 = s[..end].parse().map_err(|_| "no_integer".to_string())?;
    if n < 0 {
        return Err(format!("{{value_negative,{n}}}"));
    }
    if n > super::queue_args::MAX_EXPIRY_MS as i128 {
        return Err(format!("{{value_too_large,{n}}}"));
    }
    Ok(n as u64)
}

/// The per-message TTL of `msg` (its `expiration` property, validated at publish).
pub fn message_ttl(msg: &Message) -> Option<u64> {
    msg.properties.expiration().as_ref().and_then(|e| parse_expiration(e.as_str()).ok())
}

/// The TTL that applies to `msg` on a queue with `queue_ttl`: the smaller of the two.
pub fn ttl_of(queue_ttl: Option<u64>, msg: &Message) -> Option<u64> {
    match (queue_ttl, message_ttl(msg)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When a message enqueued now expires: the smaller of the queue's and the message's TTL
/// (0: never).
pub fn expiry(queue_ttl: Option<u64>, msg: &Message) -> u64 {
    let Some(ttl) = ttl_of(queue_ttl, msg) else { return 0 };
    now_ms().saturating_add(ttl).max(1)
}

/// A queue's expiry timer: a tokio task that sleeps until the head's expiry, drops what has
/// expired and sleeps again.
pub struct Timer {
    notify: Arc<Notify>,
    /// The deadline the task sleeps until (u64::MAX: none). Read and written under the queue
    /// lock.
    armed: AtomicU64,
    started: AtomicBool,
}

impl Default for Timer {
    fn default() -> Timer {
        Timer { notify: Arc::new(Notify::new()), armed: AtomicU64::new(u64::MAX), started: AtomicBool::new(false) }
    }
}

impl Timer {
    /// Starts the task of `q` if it is not running (outside a tokio runtime, e.g. in unit
    /// tests, there is none: messages then expire only when taken).
    pub fn start(&self, q: &Arc<Queue>) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        rt.spawn(run(Arc::downgrade(q), self.notify.clone()));
    }

    /// The head now expires at `at`: wake the task if it sleeps longer than that. Called under
    /// the queue lock.
    pub fn wake_by(&self, at: u64) {
        if at < self.armed.load(Ordering::Relaxed) {
            self.armed.store(at, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }

    /// Records the deadline the task is about to sleep until. Called under the queue lock.
    pub fn arm(&self, at: Option<u64>) {
        self.armed.store(at.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The queue is gone: let the task end.
    pub fn stop(&self) {
        self.notify.notify_one();
    }
}

async fn run(q: Weak<Queue>, notify: Arc<Notify>) {
    loop {
        let next = match q.upgrade() {
            Some(q) if !q.is_deleted() => q.expire_due(),
            _ => return,
        };
        match next {
            // More already due (a batch was cut short): let other tasks run first.
            Some(at) if at <= now_ms() => tokio::task::yield_now().await,
            Some(at) => {
                let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = notify.notified() => {}
                }
            }
            None => notify.notified().await,
        }
    }
}

/// x-expires: deletes `q` from `vhost` once it has gone unused (no consumers, no basic.get, no
/// redeclare) for its expiry period. One task per such queue (a policy may give a queue its
/// expiry later, or take it away: the task then ends); it sleeps until the queue could expire,
/// looks again, and ends with the queue.
pub fn watch_queue_expiry(vhost: Weak<Vhost>, q: &Arc<Queue>) {
    if q.args().expires.is_none() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    if !q.claim_expiry_watch() {
        return;
    }
    let changed = q.expiry_changed.clone();
    let q = Arc::downgrade(q);
    rt.spawn(async move {
        loop {
            let wait = {
                let (Some(q), Some(vhost)) = (q.upgrade(), vhost.upgrade()) else { return };
                if q.is_deleted() {
                    return;
                }
                let Some(ms) = q.args().expires else {
                    if q.release_expiry_watch() {
                        continue;
                    }
                    return;
                };
                let wait = match q.expires_at() {
                    Some(at) if at <= now_ms() => {
                        tracing::debug!(queue = %q.name, vhost = %q.vhost, "queue expired (x-expires)");
                        vhost.remove_queue(&q);
                        return;
                    }
                    Some(at) => (at - now_ms()).min(ms),
                    // In use: look again after one period.
                    None => ms,
                };
                wait
            };
            // A policy change of `expires` wakes it (notify_one keeps a permit if it is not
            // waiting yet).
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = changed.notified() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::parse_expiration;

    /// Reasons as a RabbitMQ 3.10 node gives them.
    #[test]
    fn expiration_like_rabbitmq() {
        assert_eq!(parse_expiration("60000"), Ok(60000));
        assert_eq!(parse_expiration("+5"), Ok(5));
        assert_eq!(parse_expiration("abc"), Err("no_integer".into()));
        assert_eq!(parse_expiration(" 5"), Err("no_integer".into()));
        assert_eq!(parse_expiration(""), Err("no_integer".into()));
        assert_eq!(parse_expiration("-1"), Err("{value_negative,-1}".into()));
        assert_eq!(parse_expiration("1.5"), Err("{leftover_string,\".5\"}".into()));
        assert_eq!(parse_expiration("99999999999999"), Err("{value_too_large,99999999999999}".into()));
    }
}
