//! The floor of goal 7's "10,000 queues at 1 msg/s each" on this machine: what a server that does
//! nothing but spread each read over many consumer connections costs, with no AMQP, no queue, no
//! routing.
//!
//! The shape is `scripts/bench_scale.py slow-queues`: one publisher writes, every 10 ms, one batch
//! of the period's messages (10,000 msg/s in all, so 100 per batch); message k goes to consumer
//! connection k mod C, and a read's messages for one connection leave in one write (as Warren's
//! reader batch does: one `send` per consuming connection per read). With C = 100 that is one
//! 16-byte `send` to each of 100 connections per batch, 10,000 sends a second; with C = 10, ten
//! messages per connection per batch, 1,000 sends a second. The consumers are read by one client
//! thread (a tokio current-thread runtime: one epoll loop, as the Python script's select loop).
//!
//! A child process (this binary with `server`) is the server, on tokio's multi-thread runtime
//! with 2 workers (as warren-server; the reader writes with `try_write`, as Warren's direct send)
//! or on one blocking OS thread (read, then one `write` per connection: the least any server can
//! do). The parent prints the child's CPU time (utime + stime from /proc/PID/stat) as a
//! percentage of one core and per send. Compare with
//! `python3 scripts/bench_scale.py ... slow-queues --queues 10000 --conns C` (goal 7: ≤ 5 %).
//!
//!     cargo bench --bench fanout_floor            # C = 10 and 100, 10 s each
use std::io::{Read, Write};
use std::net::TcpStream;
mod floor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const SECONDS: u64 = 10;
const RATE: u64 = 10_000;
const TICK: Duration = Duration::from_millis(10);
const MSG: usize = 16;

/// Splits the whole messages of `n` new bytes (after `carry` bytes of a partial one) over the
/// consumers, round robin from `next`: how many messages each consumer gets from this read.
fn spread(carry: &mut usize, n: usize, next: &mut usize, counts: &mut [usize]) {
    let total = *carry + n;
    *carry = total % MSG;
    for _ in 0..total / MSG {
        counts[*next] += 1;
        *next = (*next + 1) % counts.len();
    }
}

fn blocking_server(conns: usize, port_file: &str) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std::fs::write(port_file, l.local_addr().expect("addr").port().to_string()).expect("port file");
    let (mut publisher, _) = l.accept().expect("accept");
    let mut consumers: Vec<_> = (0..conns).map(|_| l.accept().expect("accept").0).collect();
    for c in &consumers {
        c.set_nodelay(true).expect("nodelay");
    }
    let out = vec![7u8; 65536];
    let mut buf = vec![0u8; 65536];
    let (mut carry, mut next, mut counts) = (0, 0, vec![0usize; conns]);
    loop {
        let n = publisher.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        spread(&mut carry, n, &mut next, &mut counts);
        for (c, k) in consumers.iter_mut().zip(counts.iter_mut()) {
            if *k > 0 {
                c.write_all(&out[..*k * MSG]).expect("write");
                *k = 0;
            }
        }
    }
}

fn tokio_server(conns: usize, port_file: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let port_file = port_file.to_string();
    let relay = async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        std::fs::write(&port_file, l.local_addr().expect("addr").port().to_string()).expect("port file");
        let (mut publisher, _) = l.accept().await.expect("accept");
        let mut consumers = Vec::with_capacity(conns);
        for _ in 0..conns {
            let c = l.accept().await.expect("accept").0;
            c.set_nodelay(true).expect("nodelay");
            consumers.push(c);
        }
        let out = vec![7u8; 65536];
        let mut buf = vec![0u8; 65536];
        let (mut carry, mut next, mut counts) = (0, 0, vec![0usize; conns]);
        loop {
            let n = publisher.read(&mut buf).await.expect("read");
            if n == 0 {
                return;
            }
            spread(&mut carry, n, &mut next, &mut counts);
            for (c, k) in consumers.iter_mut().zip(counts.iter_mut()) {
                if *k > 0 {
                    // 16-byte writes to an idle socket: the send buffer always takes them whole.
                    let w = c.try_write(&out[..*k * MSG]).expect("the consumer's socket takes a small write");
                    assert_eq!(w, *k * MSG, "a short write to an idle socket");
                    *k = 0;
                }
            }
        }
    };
    rt.block_on(async move { tokio::spawn(relay).await.expect("relay task") });
}

/// The consumers' side: one thread, one epoll loop, a task per connection counting bytes.
fn read_consumers(consumers: Vec<TcpStream>, received: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("client runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for c in consumers {
                c.set_nonblocking(true).expect("nonblocking");
                let mut c = tokio::net::TcpStream::from_std(c).expect("tokio stream");
                let received = received.clone();
                tasks.push(tokio::spawn(async move {
                    let mut b = vec![0u8; 65536];
                    while let Ok(n) = c.read(&mut b).await {
                        if n == 0 {
                            break;
                        }
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }));
            }
            for t in tasks {
                t.await.expect("reader task");
            }
        });
    })
}

fn run(mode: &str, conns: usize) {
    let (mut child, port) = floor::spawn_server(&format!("fanout-floor-{mode}-{conns}"), &[mode, &conns.to_string()]);
    let mut publisher = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    publisher.set_nodelay(true).expect("nodelay");
    // The server accepts the publisher first: let it, before the consumers queue up behind it.
    std::thread::sleep(Duration::from_millis(50));
    let consumers: Vec<_> = (0..conns).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
    let received = Arc::new(AtomicU64::new(0));
    let reader = read_consumers(consumers, received.clone());
    let per_tick = (RATE * TICK.as_millis() as u64 / 1000) as usize;
    let batch = vec![7u8; per_tick * MSG];
    let ticks = SECONDS * 1000 / TICK.as_millis() as u64;
    // One second of warm-up at the same rate, then the measured window.
    let mut measure = |ticks: u64| {
        let start = Instant::now();
        for i in 0..ticks {
            let due = start + TICK * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            publisher.write_all(&batch).expect("send");
        }
    };
    measure(100);
    std::thread::sleep(Duration::from_millis(50));
    let r0 = received.load(Ordering::Relaxed);
    let t0 = floor::cpu_ticks(child.id());
    let start = Instant::now();
    measure(ticks);
    std::thread::sleep(TICK);
    let t1 = floor::cpu_ticks(child.id());
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = (received.load(Ordering::Relaxed) - r0) / MSG as u64;
    drop(publisher);
    child.wait().expect("server exit");
    reader.join().expect("reader");
    let cpu = (t1 - t0) as f64 / floor::clock_ticks_per_second();
    let sends = ticks as f64 * conns.min(per_tick) as f64;
    let runtime = if mode == "blocking" { "none (blocking thread)" } else { "tokio multi-thread, 2 workers" };
    println!(
        "fan-out floor: {conns:>3} connections, {runtime:<30} delivered {delivered} in {elapsed:.1} s, server CPU {:.2} % of a core, {:.2} µs per send",
        cpu / elapsed * 100.0,
        cpu * 1e6 / sends
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("server") {
        let conns = args[3].parse().expect("connections");
        match args[2].as_str() {
            "blocking" => blocking_server(conns, &args[4]),
            _ => tokio_server(conns, &args[4]),
        }
        return;
    }
    for conns in [10, 100] {
        for mode in ["tokio", "blocking"] {
            run(mode, conns);
        }
    }
}
