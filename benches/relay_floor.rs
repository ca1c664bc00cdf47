//! The floor of "one message alone" on this machine: what a tokio server that does nothing but
//! relay costs per message when each message arrives on its own.
//!
//! A child process (this binary with `server`) accepts two TCP connections on 127.0.0.1, reads
//! 16-byte messages from the first and hands each read to a writer task that writes it to the
//! second — the shape of publish → queue → deliver with no AMQP, no routing, no queue. The parent
//! sends at a fixed rate, one write per message (TCP_NODELAY), reads them back on another
//! thread, and prints the child's CPU time (utime + stime from /proc/PID/stat) per message, for
//! tokio's multi-thread runtime with 2 workers (as warren-server), its current-thread runtime,
//! and no runtime at all: one OS thread in blocking `read` then `write` (the least any server can
//! do per message: one wake-up, one read, one send). Compare with `scripts/bench-cpu.sh rate10k`
//! (Warren's broker CPU per message alone).
//!
//!     cargo bench --bench relay_floor            # rates 2,000 and 10,000 msg/s, 5 s each; then
//!                                                # 10,000 msg/s four to a write (lapin's shape)
use std::io::{Read, Write};
use std::net::TcpStream;
mod floor;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECONDS: u64 = 5;

/// `workers`: 0 = tokio current-thread, N = tokio multi-thread with N workers, BLOCKING = no
/// runtime.
const BLOCKING: usize = usize::MAX;

fn blocking_server(port_file: &str) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std::fs::write(port_file, l.local_addr().expect("addr").port().to_string()).expect("port file");
    let (mut publisher, _) = l.accept().expect("accept");
    let (mut consumer, _) = l.accept().expect("accept");
    publisher.set_nodelay(true).expect("nodelay");
    consumer.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 65536];
    loop {
        let n = publisher.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        consumer.write_all(&buf[..n]).expect("write");
    }
}

fn server(workers: usize, inline: bool, port_file: &str) {
    if workers == BLOCKING {
        return blocking_server(port_file);
    }
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    }
    .expect("runtime");
    let port_file = port_file.to_string();
    // The relay runs as a spawned task, as warren-server's connections do: `block_on`'s own future
    // runs on the calling thread, not on a worker, and every wake-up of it would cost a hand-off.
    let relay = async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        std::fs::write(&port_file, l.local_addr().expect("addr").port().to_string()).expect("port file");
        let (mut publisher, _) = l.accept().await.expect("accept");
        let (mut consumer, _) = l.accept().await.expect("accept");
        publisher.set_nodelay(true).expect("nodelay");
        consumer.set_nodelay(true).expect("nodelay");
        if inline {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = publisher.read(&mut buf).await.expect("read");
                if n == 0 {
                    return;
                }
                consumer.write_all(&buf[..n]).await.expect("write");
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                consumer.write_all(&m).await.expect("write");
            }
        });
        let mut buf = vec![0u8; 65536];
        loop {
            let n = publisher.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            tx.send(buf[..n].to_vec()).expect("writer alive");
        }
        drop(tx);
        writer.await.expect("writer");
    };
    rt.block_on(async move { tokio::spawn(relay).await.expect("relay task") });
}

/// `batch`: messages per client write (1: each message alone; 4: about what lapin's publisher
/// writes at a time at 10,000 msg/s when the application awaits each publish).
fn run(workers: usize, inline: bool, rate: u64, batch: u64) {
    let (mut child, port) =
        floor::spawn_server(&format!("relay-floor-{workers}-{rate}-{batch}"), &[&workers.to_string(), if inline { "inline" } else { "task" }]);
    let mut publisher = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::thread::sleep(Duration::from_millis(50));
    let mut consumer = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    publisher.set_nodelay(true).expect("nodelay");
    let reader = std::thread::spawn(move || {
        let mut b = [0u8; 65536];
        let mut total = 0usize;
        while let Ok(n) = consumer.read(&mut b) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total / 16
    });
    std::thread::sleep(Duration::from_millis(200));
    let t0 = floor::cpu_ticks(child.id());
    let start = Instant::now();
    let n = rate * SECONDS / batch * batch;
    let write = vec![7u8; 16 * batch as usize];
    for i in 0..n / batch {
        let due = start + Duration::from_nanos(i * batch * 1_000_000_000 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        publisher.write_all(&write).expect("send");
    }
    std::thread::sleep(Duration::from_millis(200));
    let t1 = floor::cpu_ticks(child.id());
    drop(publisher);
    let relayed = reader.join().expect("reader");
    child.wait().expect("server exit");
    let runtime = match workers {
        BLOCKING => "none (blocking thread)".to_string(),
        0 => "tokio current-thread".to_string(),
        n => format!("tokio multi-thread, {n} workers"),
    } + if inline && workers != BLOCKING { ", inline write" } else { "" };
    let us = (t1 - t0) as f64 / floor::clock_ticks_per_second() * 1e6 / n as f64;
    println!(
        "relay floor: {rate:>6} msg/s, {batch} per write, {runtime:<44} sent {n}, relayed {relayed}, server CPU {us:.1} µs/msg, {:.1} µs per write",
        us * batch as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("server") {
        server(args[2].parse().expect("workers"), args[3] == "inline", &args[4]);
        return;
    }
    for rate in [2_000, 10_000] {
        for (workers, inline) in [(2, false), (2, true), (0, false), (0, true), (BLOCKING, true)] {
            run(workers, inline, rate, 1);
        }
    }
    // Goal 3 alone as lapin feeds it: 10,000 msg/s arriving about 4 to a write.
    for (workers, inline) in [(2, true), (BLOCKING, true)] {
        run(workers, inline, 10_000, 4);
    }
}
