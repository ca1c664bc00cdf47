//! Mutated frame streams against a live broker over real sockets: the whole reader path
//! (frame splitting, guard, decoding, channel state, content assembly, routing, queues) on
//! inputs no client sends. A seeded generator mutates the fuzz corpus (tests/fuzz/corpus/frames,
//! encoded by pika), each case on a freshly opened connection; the broker must answer or close
//! each one and keep serving a bystander connection throughout.
//!
//! `WARREN_WIRE_FUZZ_CASES` (default 2,000) and `WARREN_WIRE_FUZZ_SEED` (default: from the clock,
//! printed so a failure can be replayed) tune it; the coverage-guided targets are in tests/fuzz.
use crate::common;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/frames");
    let mut frames = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/fuzz/corpus/frames") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        // Each file: one byte choosing frame_max, then whole frames; split them.
        let mut rest = &data[1..];
        while rest.len() >= 8 {
            let size = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
            if rest.len() < size + 8 {
                break;
            }
            frames.push(rest[..size + 8].to_vec());
            rest = &rest[size + 8..];
        }
    }
    assert!(frames.len() > 30, "the corpus has {} frames", frames.len());
    frames
}

fn mutate(rng: &mut StdRng, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    // channel.open on 1 first most of the time, so channel methods get past the state check.
    if rng.random_bool(0.8) {
        out.extend_from_slice(&[1, 0, 1, 0, 0, 0, 5, 0, 20, 0, 10, 0, 0xCE]);
    }
    for _ in 0..rng.random_range(1..8) {
        out.extend_from_slice(&frames[rng.random_range(0..frames.len())]);
    }
    for _ in 0..rng.random_range(0..6) {
        if out.is_empty() {
            break;
        }
        let at = rng.random_range(0..out.len());
        match rng.random_range(0..7) {
            0 => out[at] ^= 1 << rng.random_range(0..8),
            1 => out[at] = *[0u8, 1, 0x7f, 0x80, 0xff, 0xCE, b'F', b'A', b'S'].get(rng.random_range(0..9)).unwrap(),
            2 => {
                let n = rng.random_range(1..16).min(out.len() - at);
                out.drain(at..at + n);
            }
            3 => {
                let b: u8 = rng.random();
                out.insert(at, b);
            }
            4 => {
                let n = rng.random_range(1..64).min(out.len() - at);
                let chunk = out[at..at + n].to_vec();
                out.splice(at..at, chunk);
            }
            5 => out.truncate(at),
            _ => {
                // A 4-byte length somewhere set to something large or small.
                if at + 4 <= out.len() {
                    let v: u32 = *[0u32, 1, 255, 65_535, 131_064, 1 << 30, u32::MAX].get(rng.random_range(0..7)).unwrap();
                    out[at..at + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn mutated_frame_streams_never_stop_the_broker() {
    let cases: usize = std::env::var("WARREN_WIRE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let seed: u64 = std::env::var("WARREN_WIRE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("wire fuzz: {cases} cases, WARREN_WIRE_FUZZ_SEED={seed}");
    let frames = corpus();
    let mut rng = StdRng::seed_from_u64(seed);
    let b = TestBroker::start().await;
    let (_bc, bystander) = b.channel().await;
    let (mut answered, mut closed) = (0, 0);
    for case in 0..cases {
        let input = mutate(&mut rng, &frames);
        let mut raw = b.raw_open().await;
        let stream = &mut raw.stream;
        // The broker may close the socket before reading everything: a failed write is fine.
        let _ = stream.write_all(&input).await;
        let _ = stream.shutdown().await;
        let mut got = Vec::new();
        let mut tmp = [0u8; 4096];
        let done = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&tmp[..n]),
                }
            }
        })
        .await;
        assert!(done.is_ok(), "case {case} (seed {seed}): the broker neither answered nor closed within 5 s");
        answered += usize::from(!got.is_empty());
        closed += 1;
        if case % 50 == 49 {
            assert_channel_ok(&bystander).await;
        }
    }
    assert_channel_ok(&bystander).await;
    let (_c, ch) = b.channel().await;
    assert_channel_ok(&ch).await;
    eprintln!("wire fuzz: {cases} cases, {answered} answered with frames, {closed} closed; broker up");
    b.stop().await;
}
