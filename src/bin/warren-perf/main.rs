//! warren-perf: an AMQP 0-9-1 load tool in the spirit of RabbitMQ's PerfTest.
//!
//! Examples:
//!   warren-perf --uri amqp://guest:guest@127.0.0.1:5672/%2f --autoack
//!   warren-perf --rate 5000 --autoack --json
//!   warren-perf --persistent --size 1024 --confirm 256 --prefetch 100
//!   warren-perf --topic-bindings 10000 --routing-keys 1000 --queues 2 --consumers 2 --autoack
//!   warren-perf --idle-connections 1000 --duration 20

mod args;
mod consumer;
mod idle;
mod producer;
mod raw;
mod stats;
mod topology;

use args::{Args, Client};
use clap::Parser;
use lapin::{Connection, ConnectionProperties};
use stats::{COUNTERS, Percentiles, STOP, SharedHistogram, Snapshot, new_histogram, new_shared_histogram};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use topology::BoxError;

fn main() {
    let args = Args::parse();
    stats::init_clock();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(run(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("warren-perf: error: {e}");
            1
        }
    };
    // lapin's I/O threads of connections that failed to close must not keep
    // the process alive.
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}

async fn run(args: Args) -> Result<(), BoxError> {
    if args.duration <= 0.0 || !args.duration.is_finite() {
        return Err("--duration must be positive".into());
    }
    let duration = Duration::from_secs_f64(args.duration);
    if let Some(n) = args.idle_connections {
        let uri = if args.idle_frame_max > 0 && !args.uri.contains("frame_max=") {
            let sep = if args.uri.contains('?') { '&' } else { '?' };
            format!("{}{sep}frame_max={}", args.uri, args.idle_frame_max)
        } else {
            args.uri.clone()
        };
        return idle::run(&uri, n, duration, args.json).await;
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        return Err("--rate must be >= 0".into());
    }
    if args.paced_batch && args.rate == 0.0 {
        return Err("--paced-batch needs a --rate".into());
    }
    if args.client == Client::Lapin && args.batch.is_some() {
        return Err("--batch applies to --client raw only".into());
    }

    let setup = Connection::connect(
        &args.uri,
        ConnectionProperties::default().with_connection_name("warren-perf-setup".into()),
    )
    .await
    .map_err(|e| format!("connecting to {}: {e}", args.uri))?;
    let topo = topology::declare(&setup, &args).await?;

    let outcome = measure(&args, &topo, duration).await;

    if !args.persistent && !args.keep_queues {
        if let Err(e) = topology::cleanup(&setup, &topo).await {
            eprintln!("warren-perf: cleanup failed: {e}");
        }
    }
    let _ = setup.close(200, "bye".into()).await;
    outcome
}

async fn measure(args: &Args, topo: &topology::Topology, duration: Duration) -> Result<(), BoxError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Consumers first, so no message is published before they listen.
    let mut hists: Vec<SharedHistogram> = Vec::new();
    let mut consumer_tasks = Vec::new();
    for id in 0..args.consumers {
        let cfg = consumer::ConsumerConfig {
            id,
            uri: args.uri.clone(),
            queue: topo.queues[id % topo.queues.len()].clone(),
            autoack: args.autoack,
            multi_ack: args.multi_ack,
            prefetch: args.prefetch,
            messages: args.cmessages,
        };
        let hist = new_shared_histogram();
        hists.push(hist.clone());
        let task = match args.client {
            Client::Lapin => {
                let (conn, ch, cons) = consumer::start(&cfg).await.map_err(|e| format!("consumer {id}: {e}"))?;
                tokio::spawn(consumer::run(cfg, conn, ch, cons, hist, stop_rx.clone()))
            }
            Client::Raw => {
                // A thread of its own (the blocking pool), started once the broker confirmed the consumer.
                let (cfg, conn) = tokio::task::spawn_blocking(move || raw::consumer::start(&cfg).map(|c| (cfg, c)))
                    .await?
                    .map_err(|e| format!("consumer {id}: {e}"))?;
                tokio::task::spawn_blocking(move || raw::consumer::run(cfg, conn, hist))
            }
        };
        consumer_tasks.push(task);
    }

    let targets = Arc::new(topo.targets.clone());
    let mut producers = Vec::new();
    for id in 0..args.producers {
        let cfg = producer::ProducerConfig {
            id,
            uri: args.uri.clone(),
            exchange: topo.exchange.as_str().into(),
            targets: targets.clone(),
            size: args.size as usize,
            rate: if args.producers > 0 { args.rate / args.producers as f64 } else { 0.0 },
            confirm: args.confirm,
            write_window: args.write_window,
            messages: args.pmessages,
        };
        let conn = match args.client {
            Client::Lapin => ProducerConn::Lapin(producer::connect(&cfg).await.map_err(|e| format!("producer {id}: {e}"))?),
            Client::Raw => {
                let (cfg2, conn) = tokio::task::spawn_blocking(move || raw::producer::connect(&cfg).map(|c| (cfg, c)))
                    .await?
                    .map_err(|e| format!("producer {id}: {e}"))?;
                producers.push((cfg2, ProducerConn::Raw(conn)));
                continue;
            }
        };
        producers.push((cfg, conn));
    }

    let start = Instant::now();
    let batch = args.batch.unwrap_or(256) as usize;
    let paced_batch = args.paced_batch;
    let mut producer_tasks = Vec::new();
    for (cfg, conn) in producers {
        producer_tasks.push(match conn {
            ProducerConn::Lapin((conn, ch)) => tokio::spawn(producer::run(cfg, conn, ch, start)),
            ProducerConn::Raw(conn) => tokio::task::spawn_blocking(move || raw::producer::run(cfg, conn, start, batch, paced_batch)),
        });
    }

    // Progress: one line per second.
    let mut total = new_histogram();
    let mut interval_hist = new_histogram();
    let mut last = Snapshot::default();
    let mut last_t = start;
    let end = start + duration;
    let mut next_tick = start + Duration::from_secs(1);
    let confirms = args.confirm > 0;
    let mut failed: Option<String> = None;
    loop {
        let wake = next_tick.min(end);
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
        let now = Instant::now();
        let snap = COUNTERS.snapshot();
        interval_hist.reset();
        for h in &hists {
            let mut h = h.lock();
            interval_hist.add(&*h).expect("same bounds");
            h.reset();
        }
        total.add(&interval_hist).expect("same bounds");
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
        if !args.quiet && dt > 0.2 {
            let p = Percentiles::of(&interval_hist);
            let mut line = format!(
                "time: {:.1}s, sent: {:.0} msg/s, received: {:.0} msg/s",
                now.duration_since(start).as_secs_f64(),
                (snap.sent - last.sent) as f64 / dt,
                (snap.received - last.received) as f64 / dt,
            );
            if confirms {
                line += &format!(", confirmed: {:.0} msg/s", (snap.confirmed - last.confirmed) as f64 / dt);
            }
            line += &format!(", latency p50/p99: {}/{} µs", p.p50, p.p99);
            println!("{line}");
        }
        last = snap;
        last_t = now;
        next_tick += Duration::from_secs(1);
        if now >= end {
            break;
        }
        let counted = args.pmessages > 0 || args.cmessages > 0;
        if counted && producer_tasks.iter().chain(consumer_tasks.iter()).all(|t| t.is_finished()) {
            // The tasks may have finished after the snapshot: take the final counts now.
            last = COUNTERS.snapshot();
            break;
        }
        if let Some(t) = producer_tasks.iter().chain(consumer_tasks.iter()).find(|t| t.is_finished() && !counted) {
            let _ = t;
            failed = Some("a producer or consumer stopped early".into());
            break;
        }
    }

    // Stop and take the final numbers at the same instant.
    STOP.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let elapsed = last_t.duration_since(start).as_secs_f64();
    let fin = last;
    let nacked = COUNTERS.nacked.load(Ordering::Relaxed);

    let mut errors = Vec::new();
    for t in producer_tasks.into_iter().chain(consumer_tasks) {
        match tokio::time::timeout(Duration::from_secs(10), t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => errors.push(e.to_string()),
            Ok(Err(e)) => errors.push(format!("task panicked: {e}")),
            Err(_) => errors.push("task did not stop within 10 s".into()),
        }
    }
    // Latencies recorded during the shutdown are not part of the run.

    let p = Percentiles::of(&total);
    let sent_rate = fin.sent as f64 / elapsed;
    let recv_rate = fin.received as f64 / elapsed;
    let conf_rate = fin.confirmed as f64 / elapsed;
    println!("--- warren-perf summary ({})", describe(args));
    println!("duration: {elapsed:.2}s, sent: {}, received: {}", fin.sent, fin.received);
    println!("sent: {sent_rate:.0} msg/s, received: {recv_rate:.0} msg/s");
    let cl = Percentiles::of(&stats::CONFIRM_LATENCY.lock());
    if confirms {
        println!("confirmed: {conf_rate:.0} msg/s (nacked: {nacked})");
        println!("confirm latency µs: p50 {} p95 {} p99 {} max {}", cl.p50, cl.p95, cl.p99, cl.max);
    }
    println!("latency µs: p50 {} p95 {} p99 {} max {}", p.p50, p.p95, p.p99, p.max);
    if args.json {
        let v = serde_json::json!({
            "uri": redact(&args.uri),
            "client": if args.client == Client::Raw { "raw" } else { "lapin" },
            "producers": args.producers,
            "consumers": args.consumers,
            "queues": args.queues,
            "size": args.size,
            "rate": args.rate,
            "confirm": args.confirm,
            "persistent": args.persistent,
            "autoack": args.autoack,
            "exchange": topo.exchange,
            "duration_s": elapsed,
            "sent": fin.sent,
            "received": fin.received,
            "confirmed": fin.confirmed,
            "nacked": nacked,
            "sent_rate": sent_rate.round(),
            "received_rate": recv_rate.round(),
            "confirmed_rate": conf_rate.round(),
            "latency_us": {"p50": p.p50, "p95": p.p95, "p99": p.p99, "max": p.max},
            "confirm_latency_us": {"p50": cl.p50, "p95": cl.p95, "p99": cl.p99, "max": cl.max},
            "errors": errors,
        });
        println!("{v}");
    }
    if let Some(f) = failed {
        errors.insert(0, f);
    }
    if !errors.is_empty() {
        return Err(errors.join("; ").into());
    }
    Ok(())
}

enum ProducerConn {
    Lapin((Connection, lapin::Channel)),
    Raw(raw::conn::RawConn),
}

/// Closes a channel and its connection, giving each at most one second.
pub async fn close_quickly(conn: &Connection, ch: &lapin::Channel) {
    let t = Duration::from_secs(1);
    let _ = tokio::time::timeout(t, ch.close(200, "done".into())).await;
    let _ = tokio::time::timeout(t, conn.close(200, "done".into())).await;
}

fn describe(a: &Args) -> String {
    let mut s = format!(
        "{} producer(s), {} consumer(s), {} queue(s), {} B, {} client",
        a.producers,
        a.consumers,
        a.queues,
        a.size,
        if a.client == Client::Raw { "raw" } else { "lapin" }
    );
    if let Some(b) = a.batch {
        s += &format!(", batch {b}");
        if a.paced_batch {
            s += " (paced)";
        }
    }
    if a.rate > 0.0 {
        s += &format!(", rate {}", a.rate);
    }
    if a.confirm > 0 {
        s += &format!(", confirm {}", a.confirm);
    }
    if a.persistent {
        s += ", persistent";
    }
    s += if a.autoack { ", autoack" } else { ", manual ack" };
    if !a.autoack && a.multi_ack > 1 {
        s += &format!(" every {}", a.multi_ack);
    }
    if a.prefetch > 0 {
        s += &format!(", prefetch {}", a.prefetch);
    }
    if a.pmessages > 0 {
        s += &format!(", {} msgs/producer", a.pmessages);
    }
    if a.cmessages > 0 {
        s += &format!(", {} msgs/consumer", a.cmessages);
    }
    if let Some(t) = a.effective_exchange_type() {
        s += &format!(", exchange {} ({t})", a.exchange_name());
    }
    s
}

/// The URI without its password.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &uri[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &uri[..scheme + 3], user, &uri[at..])
        }
        _ => uri.to_string(),
    }
}
