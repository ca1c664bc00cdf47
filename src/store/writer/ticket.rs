//! How a submitter learns that its op is durable: a [`Pending`] future (a oneshot), a callback
//! run on the writer thread, or nothing.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::store::error::StoreError;

/// A pending result: `.await` it, or `.wait()` for it from a non-async thread.
#[must_use = "a ticket tells when the operation is durable"]
pub struct Pending<T> {
    rx: oneshot::Receiver<Result<T, StoreError>>,
}

// Never pin-projected: the receiver is Unpin and results are moved out.
impl<T> Unpin for Pending<T> {}

/// Completion of a message operation.
pub type Ticket = Pending<()>;

impl<T> Pending<T> {
    pub(crate) fn channel() -> (oneshot::Sender<Result<T, StoreError>>, Pending<T>) {
        let (tx, rx) = oneshot::channel();
        (tx, Pending { rx })
    }

    /// Block the current thread until the result is in. Safe to call from
    /// inside a tokio runtime thread (it does not use tokio's blocking_recv),
    /// but it blocks that thread: prefer `.await` in async code.
    ///
    /// The receiver is polled outside tokio's cooperative budget: inside a task that has used
    /// up its budget (a connection handling a few hundred pipelined durable `queue.declare`s
    /// in one poll), tokio's oneshot answers `Pending` and defers its wake-up until the task
    /// yields, which a blocked thread never does: the connection, and every later store
    /// wait on that worker, hung for good.
    ///
    /// On a worker of a multi-thread runtime the wait runs in `block_in_place`, which first
    /// hands the worker's other tasks to another thread: a connection waiting for its commit
    /// (a durable declare, ~0.5–3 ms) then holds up only itself, not every connection that
    /// happened to be scheduled on the same worker (with two workers, half the broker).
    pub fn wait(self) -> Result<T, StoreError> {
        let wait = || futures_lite::future::block_on(tokio::task::unconstrained(self));
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Pending<T> is Unpin: oneshot::Receiver is Unpin.
        match Pin::new(&mut self.get_mut().rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            // The writer dropped the sender without answering: it is gone.
            Poll::Ready(Err(_)) => Poll::Ready(Err(StoreError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A callback completion, run on the writer thread. Must not block.
pub type Callback = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

pub(crate) enum Done {
    Nothing,
    Oneshot(oneshot::Sender<Result<(), StoreError>>),
    Callback(Callback),
}

impl Done {
    pub(super) fn complete(self, r: Result<(), StoreError>) {
        match self {
            Done::Nothing => {}
            Done::Oneshot(tx) => {
                let _ = tx.send(r);
            }
            Done::Callback(f) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(r))).is_err() {
                    tracing::error!("store completion callback panicked");
                }
            }
        }
    }
}

thread_local! {
    /// While the writer thread completes a batch: closures to run once every completion of the
    /// batch has run (`None` outside that phase, and on every other thread).
    static BATCH_END: RefCell<Option<Vec<Box<dyn FnOnce()>>>> = const { RefCell::new(None) };
}

/// Runs `f` once the writer has run every completion of the batch it is completing, when called
/// from such a completion (a callback on the writer thread); anywhere else, runs it now. A
/// callback that makes work per batch rather than per op (e.g. one confirm frame and one wake-up
/// for all the publishes of a channel that the batch made durable) defers it with this.
pub fn at_batch_end(f: impl FnOnce() + 'static) {
    let f: Box<dyn FnOnce()> = Box::new(f);
    let rest = BATCH_END.with(|b| match b.borrow_mut().as_mut() {
        Some(v) => {
            v.push(f);
            None
        }
        None => Some(f),
    });
    if let Some(f) = rest {
        f();
    }
}

/// Completes every op of a batch with `r`, then runs what their callbacks deferred to the end of
/// the batch (see [`at_batch_end`]). A panic in either is caught and logged.
pub(super) fn complete_all(dones: Vec<Done>, r: &Result<(), StoreError>) {
    BATCH_END.with(|b| *b.borrow_mut() = Some(Vec::new()));
    for d in dones {
        d.complete(r.clone());
    }
    // Closures may defer more (run in the same pass): take until none is left.
    loop {
        let fs = BATCH_END.with(|b| b.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default());
        if fs.is_empty() {
            break;
        }
        for f in fs {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                tracing::error!("store batch-end callback panicked");
            }
        }
    }
    BATCH_END.with(|b| *b.borrow_mut() = None);
}
