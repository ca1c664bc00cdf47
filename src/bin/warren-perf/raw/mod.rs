//! The raw client (`--client raw`, the default): one OS thread per producer or consumer, each
//! driving one non-blocking socket with `poll(2)`; frames are written and read in batches by
//! hand-written code (wire.rs) so that the load generator costs far less per message than the
//! broker it measures. The lapin client stays available as `--client lapin`.

pub mod conn;
pub mod consumer;
pub mod producer;
pub mod wire;

use std::time::Duration;

/// The longest a loop sleeps before it looks at the stop flag again.
pub const TICK: Duration = Duration::from_millis(100);
/// How long closing may take at the end of a run.
pub const CLOSE_WITHIN: Duration = Duration::from_secs(1);
