//! A producer: its own connection and channel, publishing round-robin over
//! the targets, optionally rate-limited and with bounded publisher confirms.
//!
//! lapin's `basic_publish` future resolves once the frames are written to the
//! socket and yields a second future for the broker's confirm. Awaiting each
//! publish in turn would cost a round trip to lapin's I/O thread per message,
//! so publishes are pipelined in a `FuturesUnordered`: at most `--confirm N`
//! unconfirmed messages with confirms, at most `write_window` unwritten
//! messages without. Futures are first polled in push order, so frames (and
//! confirm sequence numbers) keep the publish order.

use crate::stats::{CONFIRM_LATENCY, COUNTERS, now_ns, stopped};
use crate::topology::{BoxError, Target};
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::{
    Channel, Confirmation, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::ShortString,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::time::{sleep, sleep_until};

pub struct ProducerConfig {
    pub id: usize,
    pub uri: String,
    pub exchange: ShortString,
    pub targets: Arc<Vec<Target>>,
    pub size: usize,
    /// Messages per second for this producer (0 = unlimited).
    pub rate: f64,
    /// Max unconfirmed messages (0 = confirms off).
    pub confirm: usize,
    pub write_window: usize,
    /// Stop after this many messages (0 = run until stopped).
    pub messages: u64,
}

pub async fn connect(cfg: &ProducerConfig) -> Result<(Connection, Channel), BoxError> {
    let props = ConnectionProperties::default().with_connection_name(format!("warren-perf-producer-{}", cfg.id).into());
    let conn = Connection::connect(&cfg.uri, props).await?;
    let ch = conn.create_channel().await?;
    if cfg.confirm > 0 {
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
    }
    Ok((conn, ch))
}

async fn publish_one(
    ch: &Channel,
    exchange: &ShortString,
    target: &Target,
    size: usize,
    confirm: bool,
) -> Result<(), BoxError> {
    let mut body = vec![0u8; size];
    let sent_at = now_ns();
    body[..8].copy_from_slice(&sent_at.to_le_bytes());
    let pending = ch
        .basic_publish(
            exchange.clone(),
            target.routing_key.clone(),
            BasicPublishOptions::default(),
            &body,
            target.properties.clone(),
        )
        .await?;
    COUNTERS.sent.fetch_add(1, Ordering::Relaxed);
    if confirm {
        let confirmation = pending.await?;
        if !stopped() {
            CONFIRM_LATENCY.lock().saturating_record(((now_ns() - sent_at) / 1000).max(1));
        }
        match confirmation {
            Confirmation::Ack(_) => COUNTERS.confirmed.fetch_add(1, Ordering::Relaxed),
            Confirmation::Nack(_) => COUNTERS.nacked.fetch_add(1, Ordering::Relaxed),
            Confirmation::NotRequested => 0,
        };
    }
    Ok(())
}

/// Publishes until the global stop flag is set, then waits (bounded) for the
/// outstanding writes and confirms.
pub async fn run(cfg: ProducerConfig, conn: Connection, ch: Channel, start: Instant) -> Result<(), BoxError> {
    let confirm = cfg.confirm > 0;
    let limit = if confirm { cfg.confirm } else { cfg.write_window.max(1) };
    let interval = if cfg.rate > 0.0 { Some(1.0 / cfg.rate) } else { None };
    let targets = cfg.targets.clone();
    // Spread producers over the targets.
    let mut next_target = cfg.id % targets.len();
    let mut published: u64 = 0;
    let mut inflight = FuturesUnordered::new();
    let tick = Duration::from_millis(100);

    while !stopped() && (cfg.messages == 0 || published < cfg.messages) {
        if let Some(interval) = interval {
            // Interval-based limiter: message k is due at start + k/rate. When
            // behind, send back to back; when ahead, sleep until the next due
            // time (timer granularity 1 ms, so a few messages leave per tick).
            let due = start + Duration::from_secs_f64(published as f64 * interval);
            let now = Instant::now();
            if due > now {
                let until = tokio::time::Instant::from_std(due.min(now + tick));
                if inflight.is_empty() {
                    sleep_until(until).await;
                } else {
                    tokio::select! {
                        _ = sleep_until(until) => {}
                        Some(r) = inflight.next() => { r?; }
                    }
                }
                continue;
            }
        }
        if inflight.len() >= limit {
            tokio::select! {
                Some(r) = inflight.next() => { r?; }
                _ = sleep(tick) => {}
            }
            continue;
        }
        let target = &targets[next_target];
        next_target += 1;
        if next_target == targets.len() {
            next_target = 0;
        }
        inflight.push(publish_one(&ch, &cfg.exchange, target, cfg.size, confirm));
        published += 1;
        // Unlimited rate: keep pushing; the window check above polls the set.
        // Rate-limited: the sleep/select above polls it. Also poll now and
        // then so frames go out in batches of at most 64.
        if published % 64 == 0 {
            while let Some(Some(r)) = futures_util::FutureExt::now_or_never(inflight.next()) {
                r?;
            }
        }
    }

    // With confirms, give outstanding confirms up to 2 s; without, in-flight
    // writes are simply dropped (a broker applying flow control may hold
    // them for a long time, and they no longer count).
    if confirm {
        let drain = async {
            while let Some(r) = inflight.next().await {
                r?;
            }
            Ok::<(), BoxError>(())
        };
        // A counted run waits for every confirm (it ends the run); a timed one gives them 2 s.
        let grace = if cfg.messages > 0 && !stopped() { Duration::from_secs(600) } else { Duration::from_secs(2) };
        let _ = tokio::time::timeout(grace, drain).await;
    }
    drop(inflight);
    // A broker still flooding deliveries (or holding writes under flow
    // control) answers close late; don't wait for it for long.
    crate::close_quickly(&conn, &ch).await;
    Ok(())
}
