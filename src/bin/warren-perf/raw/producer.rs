//! A raw producer: writes batches of prepared publishes (at most `batch` messages per write, and
//! with confirms at most `confirm` unconfirmed), reads confirms in whatever batches they arrive.

use super::conn::{CHANNEL, RawConn};
use super::wire::{Event, Template};
use super::{CLOSE_WITHIN, TICK};
use crate::producer::ProducerConfig;
use crate::stats::{CONFIRM_LATENCY, COUNTERS, now_ns, stopped};
use crate::topology::BoxError;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use warren::protocol::{AMQPClass, confirm};

/// Connects and, with confirms, enables them on the channel.
pub fn connect(cfg: &ProducerConfig) -> Result<RawConn, BoxError> {
    let mut c = RawConn::open(&cfg.uri, &format!("warren-perf-producer-{}", cfg.id))?;
    if cfg.confirm > 0 {
        c.call(AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })))?;
    }
    c.go_nonblocking()?;
    Ok(c)
}

/// Publisher confirms outstanding: send times by delivery tag (tags count from 1).
#[derive(Default)]
struct Unconfirmed {
    /// Send time of tags settled_upto+1, settled_upto+2, ...
    sent: VecDeque<u64>,
    /// Every tag <= this is settled.
    settled_upto: u64,
    /// Tags above settled_upto already settled by a single ack/nack out of order.
    early: BTreeSet<u64>,
    /// Confirm latencies (µs) to record.
    latencies: Vec<u64>,
}

impl Unconfirmed {
    fn outstanding(&self) -> usize {
        self.sent.len() - self.early.len()
    }

    /// Settles `tag` (and, if `multiple`, all below it). Returns how many were settled.
    fn settle(&mut self, tag: u64, multiple: bool, now: u64) -> u64 {
        let mut n = 0;
        if multiple {
            while self.settled_upto < tag {
                let Some(sent) = self.sent.pop_front() else { break };
                self.settled_upto += 1;
                if !self.early.remove(&self.settled_upto) {
                    self.latencies.push(((now - sent) / 1000).max(1));
                    n += 1;
                }
            }
        } else if tag > self.settled_upto {
            let i = (tag - self.settled_upto - 1) as usize;
            if let Some(&sent) = self.sent.get(i) {
                if self.early.insert(tag) {
                    self.latencies.push(((now - sent) / 1000).max(1));
                    n = 1;
                }
            }
        }
        // Single acks in order move the watermark too.
        while self.early.remove(&(self.settled_upto + 1)) {
            self.sent.pop_front();
            self.settled_upto += 1;
        }
        n
    }
}

/// Reads and handles what the broker sent (confirms; blocked/unblocked and closes inside `next`).
fn drain_incoming(c: &mut RawConn, u: &mut Unconfirmed) -> Result<(), BoxError> {
    if c.fill()? == 0 && c.rbuf.is_empty() {
        return Ok(());
    }
    let now = now_ns();
    let (mut acked, mut nacked) = (0, 0);
    while let Some(ev) = c.next()? {
        match ev {
            Event::Ack { delivery_tag, multiple } => acked += u.settle(delivery_tag, multiple, now),
            Event::Nack { delivery_tag, multiple } => nacked += u.settle(delivery_tag, multiple, now),
            _ => {}
        }
    }
    if acked > 0 {
        COUNTERS.confirmed.fetch_add(acked, Ordering::Relaxed);
    }
    if nacked > 0 {
        COUNTERS.nacked.fetch_add(nacked, Ordering::Relaxed);
    }
    if !u.latencies.is_empty() {
        if !stopped() {
            let mut h = CONFIRM_LATENCY.lock();
            for l in &u.latencies {
                h.saturating_record(*l);
            }
        }
        u.latencies.clear();
    }
    Ok(())
}

/// Publishes until the stop flag (or `cfg.messages`), then waits (bounded) for the outstanding confirms.
/// `paced_batch`: with a rate, write only when `batch` messages are due, all of them at once.
pub fn run(cfg: ProducerConfig, mut c: RawConn, start: Instant, batch: usize, paced_batch: bool) -> Result<(), BoxError> {
    let result = publish(&cfg, &mut c, start, batch, paced_batch);
    c.close(CLOSE_WITHIN);
    result
}

fn publish(cfg: &ProducerConfig, c: &mut RawConn, start: Instant, batch: usize, paced_batch: bool) -> Result<(), BoxError> {
    let templates: Vec<Template> = cfg
        .targets
        .iter()
        .map(|t| Template::new(CHANNEL, cfg.exchange.as_str(), t.routing_key.as_str(), &t.properties, cfg.size, c.frame_max))
        .collect();
    let confirm = cfg.confirm > 0;
    let interval = (cfg.rate > 0.0).then(|| 1.0 / cfg.rate);
    let mut next_target = cfg.id % templates.len();
    let mut u = Unconfirmed::default();
    let mut published: u64 = 0;
    // Messages in `wbuf` not yet fully written (counted as sent once they are).
    let mut unwritten: u64 = 0;
    let mut rounds: u32 = 0;
    let batch = batch.max(1) as u64;

    while !stopped() && (cfg.messages == 0 || published < cfg.messages) {
        rounds = rounds.wrapping_add(1);
        // Without confirms nothing needs reading per message; look now and then (blocked, errors).
        if confirm || c.blocked || unwritten > 0 || rounds % 64 == 0 {
            drain_incoming(c, &mut u)?;
        }
        if unwritten > 0 {
            if !c.flush()? {
                c.wait(TICK);
                continue;
            }
            COUNTERS.sent.fetch_add(unwritten, Ordering::Relaxed);
            unwritten = 0;
        }
        let mut n = batch;
        if cfg.messages > 0 {
            n = n.min(cfg.messages - published);
        }
        if confirm {
            n = n.min(cfg.confirm.saturating_sub(u.outstanding()) as u64);
        }
        let mut sleep = TICK;
        if let Some(iv) = interval {
            // Message k is due at start + k/rate: send what is due now, else sleep until the next
            // (paced batches: until all `n` that may go now are due).
            let need = if paced_batch { n.max(1) } else { 1 };
            let elapsed = start.elapsed().as_secs_f64();
            let due = (elapsed / iv) as u64 + 1;
            n = n.min(due.saturating_sub(published));
            if n < need {
                n = 0;
                sleep = Duration::from_secs_f64(((published + need - 1) as f64 * iv - elapsed).max(0.0)).min(TICK);
            }
        }
        if c.blocked {
            // The broker stopped reading (connection.blocked): wait for unblocked.
            n = 0;
        }
        if n == 0 {
            c.wait(sleep);
            continue;
        }
        let now = now_ns();
        for _ in 0..n {
            templates[next_target].put(&mut c.wbuf, now);
            next_target += 1;
            if next_target == templates.len() {
                next_target = 0;
            }
        }
        if confirm {
            u.sent.extend(std::iter::repeat_n(now, n as usize));
        }
        published += n;
        if c.flush()? {
            COUNTERS.sent.fetch_add(n, Ordering::Relaxed);
        } else {
            unwritten = n;
        }
    }

    // A counted run writes everything it published and (with confirms) waits for every confirm;
    // a timed one gives what is outstanding 2 s.
    let counted = cfg.messages > 0 && !stopped();
    let end = Instant::now() + if counted { Duration::from_secs(600) } else { Duration::from_secs(2) };
    while Instant::now() < end && (unwritten > 0 || (confirm && u.outstanding() > 0)) {
        if unwritten > 0 && c.flush()? {
            COUNTERS.sent.fetch_add(unwritten, Ordering::Relaxed);
            unwritten = 0;
        }
        drain_incoming(c, &mut u)?;
        if unwritten > 0 || (confirm && u.outstanding() > 0) {
            c.wait(TICK);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Unconfirmed;

    #[test]
    fn confirms_settle_singly_multiply_and_out_of_order() {
        let mut u = Unconfirmed::default();
        u.sent.extend([1000u64; 6]); // tags 1..=6
        assert_eq!(u.settle(2, false, 5000), 1);
        assert_eq!(u.outstanding(), 5);
        assert_eq!(u.settle(1, false, 5000), 1);
        assert_eq!((u.settled_upto, u.sent.len()), (2, 4));
        assert_eq!(u.settle(4, true, 5000), 2);
        assert_eq!(u.settle(6, false, 5000), 1);
        assert_eq!(u.settle(6, false, 5000), 0, "a second ack of a tag counts once");
        assert_eq!(u.outstanding(), 1);
        assert_eq!(u.settle(6, true, 5000), 1);
        assert_eq!((u.settled_upto, u.outstanding()), (6, 0));
        assert_eq!(u.latencies, vec![4; 6]);
    }
}
