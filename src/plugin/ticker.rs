//! The epoch ticker: the thread that advances the wasmtime engine's epoch so that a guest call
//! running too long reaches its deadline (see `engine::on_deadline`), and that sleeps while no
//! guest code runs.
//!
//! Ticking every 2 ms whether or not a plugin runs cost an idle broker 500 thread wake-ups a
//! second (about 1.6 % of a core on a 2-core VM, and one wake-up per message for a broker
//! handling a few thousand messages a second). Instead, every store counts its entries into
//! and returns from Wasm (wasmtime's call hook), and the ticker parks while that count is zero;
//! the call that makes it non-zero unparks it. Guest calls that overlap keep it awake.
//!
//! Why no call can run without ticks: a caller increments `in_flight` and then reads `parked`;
//! the ticker sets `parked` and then reads `in_flight` (all sequentially consistent). One of
//! the two sees the other's write: either the ticker sees a call in flight and does not park,
//! or the caller sees `parked` and unparks it (an unpark before the park makes the park return
//! at once).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;
use wasmtime::{CallHook, EngineWeak};

/// How often a parked ticker looks whether its engine is gone (the thread then ends).
const IDLE_CHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Ticker {
    /// Guest calls running now (entries into Wasm not yet returned, over all stores).
    in_flight: AtomicUsize,
    /// The ticker thread is parked, or about to park.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
    /// Epoch increments so far (tests and diagnostics).
    ticks: AtomicUsize,
}

impl Ticker {
    /// Starts the ticker thread of `engine`, ticking every `tick` while a guest call runs.
    pub(crate) fn start(engine: EngineWeak, tick: Duration) -> std::io::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker::default());
        let t = ticker.clone();
        let handle = std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || t.run(engine, tick))?;
        let _ = ticker.thread.set(handle.thread().clone());
        Ok(ticker)
    }

    fn run(&self, engine: EngineWeak, tick: Duration) {
        loop {
            if self.in_flight.load(SeqCst) == 0 {
                self.parked.store(true, SeqCst);
                if self.in_flight.load(SeqCst) == 0 {
                    std::thread::park_timeout(IDLE_CHECK);
                }
                self.parked.store(false, SeqCst);
                if engine.upgrade().is_none() {
                    return;
                }
                continue;
            }
            std::thread::sleep(tick);
            match engine.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return, // engine dropped with its last store/component
            }
            self.ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The store call hook: counts entries into Wasm and returns from it (host imports called
    /// by the guest are part of the call). Never fails.
    pub(crate) fn hook(&self, h: CallHook) -> wasmtime::Result<()> {
        match h {
            CallHook::CallingWasm => {
                if self.in_flight.fetch_add(1, SeqCst) == 0
                    && self.parked.load(SeqCst)
                    && let Some(t) = self.thread.get()
                {
                    t.unpark();
                }
            }
            CallHook::ReturningFromWasm => {
                self.in_flight.fetch_sub(1, SeqCst);
            }
            CallHook::CallingHost | CallHook::ReturningFromHost => {}
        }
        Ok(())
    }

    /// Epoch increments so far.
    #[cfg(test)]
    pub(crate) fn ticks(&self) -> usize {
        self.ticks.load(std::sync::atomic::Ordering::Relaxed)
    }
}
