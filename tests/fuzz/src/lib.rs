//! The project's `src/protocol` module, compiled on its own for fuzzing.
#![allow(dead_code)]
#[path = "../../../src/protocol/mod.rs"]
pub mod protocol;
