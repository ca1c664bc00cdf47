//! `--idle-connections N`: open N connections with one channel each, hold
//! them, close them. Used to measure a broker's memory per connection.

use crate::topology::BoxError;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::{Channel, Connection, ConnectionProperties};
use std::io::Write;
use std::time::{Duration, Instant};

/// Connections opened concurrently during the ramp-up.
const PARALLEL: usize = 32;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(uri: &str, n: usize, hold: Duration, json: bool) -> Result<(), BoxError> {
    let t0 = Instant::now();
    let mut held: Vec<(Connection, Channel)> = Vec::with_capacity(n);
    let mut pending = FuturesUnordered::new();
    let mut next = 0usize;
    while held.len() < n {
        while next < n && pending.len() < PARALLEL {
            let name = format!("warren-perf-idle-{next}");
            pending.push(async move {
                // A broker out of file descriptors accepts the socket but never
                // answers the handshake: bound each open.
                let open = async {
                    let conn = Connection::connect(uri, ConnectionProperties::default().with_connection_name(name.into())).await?;
                    let ch = conn.create_channel().await?;
                    Ok::<_, BoxError>((conn, ch))
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
                    Ok(r) => r,
                    Err(_) => Err("connection not opened within 30 s (broker file descriptor limit?)".into()),
                }
            });
            next += 1;
        }
        match pending.next().await {
            Some(Ok(pair)) => held.push(pair),
            Some(Err(e)) => {
                // Connections still held are dropped with the process.
                return Err(format!("after {} connections: {e}", held.len()).into());
            }
            None => break,
        }
    }
    let open_s = t0.elapsed().as_secs_f64();
    println!("opened {}", held.len());
    let _ = std::io::stdout().flush();
    eprintln!("opened {} connections in {:.2}s; holding for {:.1}s", held.len(), open_s, hold.as_secs_f64());

    tokio::time::sleep(hold).await;

    let mut closing = FuturesUnordered::new();
    for (conn, ch) in &held {
        closing.push(async move {
            let _ = ch.close(200, "done".into()).await;
            let _ = conn.close(200, "done".into()).await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), async { while closing.next().await.is_some() {} }).await;
    if json {
        println!(
            "{}",
            serde_json::json!({"mode": "idle", "opened": held.len(), "open_seconds": open_s, "held_seconds": hold.as_secs_f64()})
        );
    }
    Ok(())
}
