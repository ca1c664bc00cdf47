//! A raw consumer: reads deliveries in batches of up to 256 KiB, counts them, records latencies
//! (one histogram lock per batch) and acks every `multi_ack` deliveries (one write per batch).

use super::conn::RawConn;
use super::wire::{Event, put_ack};
use super::{CLOSE_WITHIN, TICK};
use crate::consumer::ConsumerConfig;
use crate::stats::{COUNTERS, SharedHistogram, now_ns, stopped};
use crate::topology::BoxError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use warren::protocol::{AMQPClass, FieldTable, basic};

/// Connects and starts consuming; returns once the broker has answered basic.consume.
pub fn start(cfg: &ConsumerConfig) -> Result<RawConn, BoxError> {
    let mut c = RawConn::open(&cfg.uri, &format!("warren-perf-consumer-{}", cfg.id))?;
    if cfg.prefetch > 0 {
        c.call(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: cfg.prefetch, global: false })))?;
    }
    match c.call(AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: cfg.queue.as_str().into(),
        consumer_tag: format!("warren-perf-{}", cfg.id).into(),
        no_local: false,
        no_ack: cfg.autoack,
        exclusive: false,
        nowait: false,
        arguments: FieldTable::default(),
    })))? {
        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)) => {}
        other => return Err(format!("expected basic.consume-ok, got {other:?}").into()),
    }
    c.go_nonblocking()?;
    Ok(c)
}

pub fn run(cfg: ConsumerConfig, mut c: RawConn, hist: SharedHistogram) -> Result<(), BoxError> {
    let result = consume(&cfg, &mut c, &hist);
    // Let the last acks reach the socket before closing.
    let end = Instant::now() + Duration::from_secs(2);
    while !c.wbuf.is_empty() && Instant::now() < end {
        if matches!(c.flush(), Ok(false)) {
            c.wait(TICK);
        }
        let _ = c.fill();
        c.rbuf.clear();
    }
    c.close(CLOSE_WITHIN);
    result
}

fn consume(cfg: &ConsumerConfig, c: &mut RawConn, hist: &SharedHistogram) -> Result<(), BoxError> {
    let multiple = cfg.multi_ack > 1;
    let mut unacked: u32 = 0;
    let mut received: u64 = 0;
    let mut tag: u64 = 0;
    // Body bytes still expected for the current delivery (None: between deliveries).
    let mut remaining: Option<u64> = None;
    let mut stamp: Option<u64> = None;
    let mut latencies: Vec<u64> = Vec::new();
    let mut first = true;
    loop {
        if stopped() {
            return Ok(());
        }
        if !c.wbuf.is_empty() {
            c.flush()?;
        }
        // The first round looks at the buffer as it is: deliveries may have been read together
        // with consume-ok.
        if c.fill()? == 0 && !first {
            c.wait(TICK);
            continue;
        }
        first = false;
        let now = now_ns();
        let mut delivered: u64 = 0;
        let mut last = false;
        while let Some(ev) = c.next()? {
            let complete = match ev {
                Event::Deliver { delivery_tag } => {
                    tag = delivery_tag;
                    stamp = None;
                    remaining = None;
                    false
                }
                Event::Header { body_size } => {
                    remaining = Some(body_size);
                    body_size == 0
                }
                Event::Body { len, stamp: s } => match remaining {
                    Some(r) => {
                        if stamp.is_none() {
                            stamp = s;
                        }
                        let left = r.saturating_sub(len as u64);
                        remaining = Some(left);
                        left == 0
                    }
                    None => return Err("body frame outside a delivery".into()),
                },
                _ => false,
            };
            if !complete {
                continue;
            }
            remaining = None;
            if let Some(s) = stamp.take() {
                latencies.push((now.saturating_sub(s) / 1000).max(1));
            }
            delivered += 1;
            received += 1;
            last = cfg.messages > 0 && received >= cfg.messages;
            if !cfg.autoack {
                unacked += 1;
                if unacked >= cfg.multi_ack || last {
                    unacked = 0;
                    put_ack(&mut c.wbuf, super::conn::CHANNEL, tag, multiple);
                }
            }
            if last {
                break;
            }
        }
        COUNTERS.received.fetch_add(delivered, Ordering::Relaxed);
        if !latencies.is_empty() {
            let mut h = hist.lock();
            for l in &latencies {
                h.saturating_record(*l);
            }
            drop(h);
            latencies.clear();
        }
        if !c.wbuf.is_empty() {
            c.flush()?;
        }
        if last {
            return Ok(());
        }
    }
}
