//! How a submitter learns that its op is durable: a [`Pending`] future (a oneshot), a callback
//! run on the writer thread, or nothing.

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
    pub fn wait(self) -> Result<T, StoreError> {
        futures_lite::future::block_on(tokio::task::unconstrained(self))
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
