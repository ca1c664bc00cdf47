//! A consumer: its own connection and channel, one basic.consume, latency
//! from the timestamp in the first 8 bytes of each body.

use crate::stats::{COUNTERS, SharedHistogram, now_ns};
use crate::topology::BoxError;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::{
    Channel, Connection, ConnectionProperties, Consumer,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use std::sync::atomic::Ordering;
use tokio::sync::watch;

pub struct ConsumerConfig {
    pub id: usize,
    pub uri: String,
    pub queue: String,
    pub autoack: bool,
    pub multi_ack: u32,
    pub prefetch: u16,
    /// Stop after this many deliveries (0 = run until stopped).
    pub messages: u64,
}

/// Connects and starts consuming; returns once the broker has acknowledged
/// basic.consume, so producers can start after every consumer is ready.
pub async fn start(cfg: &ConsumerConfig) -> Result<(Connection, Channel, Consumer), BoxError> {
    let props = ConnectionProperties::default().with_connection_name(format!("warren-perf-consumer-{}", cfg.id).into());
    let conn = Connection::connect(&cfg.uri, props).await?;
    let ch = conn.create_channel().await?;
    if cfg.prefetch > 0 {
        ch.basic_qos(cfg.prefetch, BasicQosOptions::default()).await?;
    }
    let opts = BasicConsumeOptions { no_ack: cfg.autoack, ..Default::default() };
    let consumer = ch
        .basic_consume(cfg.queue.as_str().into(), format!("warren-perf-{}", cfg.id).into(), opts, FieldTable::default())
        .await?;
    Ok((conn, ch, consumer))
}

pub async fn run(
    cfg: ConsumerConfig,
    conn: Connection,
    ch: Channel,
    mut consumer: Consumer,
    hist: SharedHistogram,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let multiple = cfg.multi_ack > 1;
    let mut unacked: u32 = 0;
    // Acks are pipelined like publishes: lapin's ack future resolves when the
    // frame is written; first polls happen in push order, so multiple=true
    // acks reach the broker in increasing tag order.
    let mut acks = FuturesUnordered::new();
    let mut received: u64 = 0;
    let result: Result<(), BoxError> = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            Some(r) = acks.next(), if !acks.is_empty() => {
                if let Err(e) = r { break Err(Box::new(e) as BoxError); }
            }
            d = consumer.next() => {
                let d = match d {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => break Err(Box::new(e) as BoxError),
                    None => break Ok(()),
                };
                let now = now_ns();
                if d.data.len() >= 8 {
                    let sent = u64::from_le_bytes(d.data[..8].try_into().expect("8 bytes"));
                    let us = now.saturating_sub(sent) / 1000;
                    hist.lock().saturating_record(us.max(1));
                }
                COUNTERS.received.fetch_add(1, Ordering::Relaxed);
                received += 1;
                let last = cfg.messages > 0 && received >= cfg.messages;
                if !cfg.autoack {
                    unacked += 1;
                    if unacked >= cfg.multi_ack || last {
                        unacked = 0;
                        let tag = d.delivery_tag;
                        acks.push(ch.basic_ack(tag, BasicAckOptions { multiple }));
                        if acks.len() >= 4096 {
                            if let Some(Err(e)) = acks.next().await { break Err(Box::new(e) as BoxError); }
                        }
                    }
                }
                if last {
                    break Ok(());
                }
            }
        }
    };
    // Let the last acks reach the socket before closing.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while acks.next().await.is_some() {}
    })
    .await;
    drop(consumer);
    // A broker still flooding deliveries (or holding writes under flow
    // control) answers close late; don't wait for it for long.
    crate::close_quickly(&conn, &ch).await;
    result
}
