//! Store benchmark: `cargo bench --bench store_bench`.
//!
//! Prints
//! * fsync-bound commits/s: one producer, one 1 KiB append at a time, each
//!   waited for before the next (every commit holds one message);
//! * group commit with 1 and with 10 producer threads, each keeping up to
//!   `WINDOW` appends outstanding (like publisher confirms with 256 in
//!   flight): messages/s, average ops per batch, and p50/p99 completion
//!   latency (append call -> completion callback).
//!
//! Data goes to `$WARREN_BENCH_DIR` or a temporary directory under the
//! system temp dir (make sure that is a real disk, not tmpfs). Set
//! `WARREN_BENCH_QUICK_REPAIR=1` to measure with redb's quick repair on.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warren::store::{QueueDef, StatsSnapshot, Store, StoreOptions, StoredMessage};

const WINDOW: usize = 256;
const RECORD_BODY: usize = 1024;

fn record(i: u64) -> Bytes {
    StoredMessage {
        exchange: "bench".into(),
        routing_key: "bench.key".into(),
        properties: Bytes::from_static(&[0x10, 0x00, 2]),
        body: Bytes::from(vec![(i % 251) as u8; RECORD_BODY]),
        delivered: false,
    }
    .encode()
    .unwrap()
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn diff(a: &StatsSnapshot, b: &StatsSnapshot) -> (u64, u64, u64) {
    (b.batches - a.batches, b.ops - a.ops, b.commits - a.commits)
}

fn fsync_bound(store: &Store, q: u64, dur: Duration) {
    let log = store.message_log();
    let rec = record(0);
    let before = store.stats();
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        log.append(q, n, rec.clone()).wait().unwrap();
        n += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = store.stats();
    let (_, _, commits) = diff(&before, &after);
    println!(
        "fsync-bound: {n} sequential appends in {secs:.2}s = {:.0} commits/s ({commits} commits, avg commit {:.0} us)",
        commits as f64 / secs,
        (after.total_commit_us - before.total_commit_us) as f64 / commits.max(1) as f64,
    );
    log.purge_queue(q).wait().unwrap();
}

fn group_commit(store: &Store, queues: &[u64], producers: usize, per_producer: u64) {
    let before = store.stats();
    let t0 = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let log = store.message_log();
            let q = queues[p % queues.len()];
            std::thread::spawn(move || {
                let (tx, rx) = mpsc::channel::<u64>();
                let mut lat = Vec::with_capacity(per_producer as usize);
                let mut outstanding = 0usize;
                let base = p as u64 * per_producer;
                for i in 0..per_producer {
                    if outstanding == WINDOW {
                        lat.push(rx.recv().unwrap());
                        outstanding -= 1;
                    }
                    let tx = tx.clone();
                    let start = Instant::now();
                    log.append_then(q, base + i, record(i), move |r| {
                        r.unwrap();
                        let _ = tx.send(start.elapsed().as_micros() as u64);
                    });
                    outstanding += 1;
                }
                while outstanding > 0 {
                    lat.push(rx.recv().unwrap());
                    outstanding -= 1;
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = t0.elapsed().as_secs_f64();
    let after = store.stats();
    let (batches, ops, commits) = diff(&before, &after);
    lat.sort_unstable();
    let total = producers as u64 * per_producer;
    println!(
        "group commit, {producers:>2} producer(s), window {WINDOW}: {total} x 1 KiB in {secs:.2}s = {:.0} msg/s, \
         {:.1} MiB/s; {batches} batches / {commits} commits, avg {:.1} msgs/batch (max {}); \
         avg commit {:.0} us; latency p50 {} us, p99 {} us, max {} us",
        total as f64 / secs,
        total as f64 * RECORD_BODY as f64 / secs / (1 << 20) as f64,
        ops as f64 / batches.max(1) as f64,
        after.max_batch,
        (after.total_commit_us - before.total_commit_us) as f64 / commits.max(1) as f64,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
    );
    for &q in queues {
        store.message_log().purge_queue(q).wait().unwrap();
    }
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let tmp;
    let dir = match std::env::var_os("WARREN_BENCH_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    let opts = StoreOptions {
        quick_repair: std::env::var_os("WARREN_BENCH_QUICK_REPAIR").is_some(),
        ..StoreOptions::default()
    };
    println!("quick_repair: {}", opts.quick_repair);
    let store = Store::open_with(&dir, opts).unwrap();
    let queues: Vec<u64> = (0..10)
        .map(|i| {
            store
                .put_queue(&QueueDef {
                    vhost: "/".into(),
                    name: format!("bench-{i}"),
                    durable: true,
                    auto_delete: false,
                    arguments: vec![],
                })
                .unwrap()
        })
        .collect();
    println!("store file: {}", store.path().display());
    fsync_bound(&store, queues[0], Duration::from_secs(3));
    group_commit(&store, &queues[..1], 1, 200_000);
    group_commit(&store, &queues, 10, 40_000);
    let s = store.stats();
    println!(
        "batch size histogram (ops per batch, bucket = [2^i, 2^(i+1))): {:?}",
        s.batch_size_hist
    );
    recovery(store, &dir, queues[0]);
}

/// Fill one queue, close, reopen, and time reading it back.
fn recovery(store: Store, dir: &std::path::Path, q: u64) {
    let n: u64 = std::env::var("WARREN_BENCH_RECOVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let log = store.message_log();
    let t0 = Instant::now();
    for i in 0..n {
        log.append_detached(q, i, record(i));
        if i % 50_000 == 49_999 {
            log.flush().wait().unwrap();
        }
    }
    log.flush().wait().unwrap();
    let fill = t0.elapsed().as_secs_f64();
    store.close().unwrap();
    let size = std::fs::metadata(dir.join(warren::store::FILE_NAME))
        .unwrap()
        .len();

    let t0 = Instant::now();
    let store = Store::open(dir).unwrap();
    let open = t0.elapsed();
    let t1 = Instant::now();
    let (mut from, mut count) = (0u64, 0u64);
    loop {
        let page = store.load_index(q, from, 10_000).unwrap();
        let Some(&(last, _)) = page.last() else { break };
        count += page.len() as u64;
        from = last + 1;
    }
    let index = t1.elapsed();
    assert_eq!(count, n);
    let t2 = Instant::now();
    let (mut from, mut bytes) = (0u64, 0usize);
    loop {
        let page = store.load_range(q, from, 10_000).unwrap();
        let Some((last, _)) = page.last() else { break };
        from = last + 1;
        bytes += page.iter().map(|(_, m)| m.body.len()).sum::<usize>();
    }
    let full = t2.elapsed();
    println!(
        "recovery of {n} x 1 KiB (file {:.0} MiB, filled in {fill:.1}s): open {:.0} ms, \
         index scan (seq+len) {:.0} ms = {:.2} M msg/s, full decode {:.0} ms = {:.2} M msg/s ({} MiB of bodies)",
        size as f64 / (1 << 20) as f64,
        open.as_secs_f64() * 1e3,
        index.as_secs_f64() * 1e3,
        n as f64 / index.as_secs_f64() / 1e6,
        full.as_secs_f64() * 1e3,
        n as f64 / full.as_secs_f64() / 1e6,
        bytes >> 20,
    );
    store.close().unwrap();
}
